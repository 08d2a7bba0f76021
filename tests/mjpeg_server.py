"""A multipart MJPEG HTTP server on 127.0.0.1 for the live tests (run as a separate process).

    python tests/mjpeg_server.py VIDEO PORT [--start S] [--frames N] [--fps F] [--once]

Streams frames S .. S+N-1 of VIDEO to each client as ``multipart/x-mixed-replace`` JPEG parts at F
frames per second (0: as fast as the client reads), then closes the connection; ``--once`` exits
after the first client. Prints ``ready PORT`` when listening. A separate process, because OpenCV's
FFmpeg backend opens captures under a process-wide lock (see gaitheat.live_source).
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import cv2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("port", type=int)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--fps", type=float, default=0.0)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    capture = cv2.VideoCapture(args.video)
    jpegs = []
    for i in range(args.start + args.frames):
        ok, bgr = capture.read()
        if not ok:
            break
        if i >= args.start:
            jpegs.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    capture.release()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for jpeg in jpegs:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                 + jpeg + b"\r\n")
                self.wfile.flush()
                if args.fps > 0:
                    time.sleep(1 / args.fps)

        def log_message(self, *a: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", args.port), Handler)
    print(f"ready {server.server_address[1]}", flush=True)
    if args.once:
        server.handle_request()
    else:
        server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
