"""Live frame sources for ``gaitheat identify``: cameras, network streams and files still being written.

A source string is

* a camera: ``0``, ``1``, ... (an OpenCV device index) or ``/dev/videoN`` (V4L2);
* a stream URL: ``rtsp://``, ``rtsps://``, ``http://``, ``https://`` (OpenCV's FFmpeg backend: RTSP,
  HTTP(S) MJPEG ``multipart/x-mixed-replace`` streams, HLS, ...), ``udp://``, ``tcp://``, ``rtmp://``;
* a file, read to its end, or with ``follow`` re-opened while it keeps growing (a recording in progress:
  MJPEG-AVI, MKV and MPEG-TS files are readable while written; an MP4 is not until its index is written).

:class:`FrameReader` decodes on its own thread (OpenCV releases the GIL while it decodes) into a
small buffer that the identifying thread takes frames from:

* **drop policy** ``latest`` (default for cameras and streams): the buffer holds one frame; a frame
  that arrives while the previous one is still waiting replaces it, so the identifier always works
  on the newest frame and never falls behind; replaced frames are counted as dropped. ``none``
  (default for files): the reader waits for the identifier, every frame is processed.
* **faults**: a stream that fails to open, errors, or delivers nothing for ``stall_seconds`` is
  re-opened with exponential back-off (``reconnect_initial_s`` doubling up to ``reconnect_max_s``),
  and each attempt is reported through ``on_status``; after ``give_up_s`` without a frame the source
  is over. A plain file ends at its end; a followed file ends when it has not grown for ``stall_seconds``.

Two processes note: OpenCV's FFmpeg backend serialises opening captures process-wide, so a stream
server must not live in the reading process while it opens its own captures (tests start it as a
separate process).
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "tcp", "rtmp")
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def source_kind(spec: str) -> str:
    """``camera`` (``0``, ``/dev/video0``), ``url`` (``rtsp://`` ...) or ``file``."""
    if spec.isdigit() or re.fullmatch(r"/dev/video\d+", spec):
        return "camera"
    match = _URL.match(spec)
    if match and match.group(1).lower() in URL_SCHEMES:
        return "url"
    return "file"


def is_live_source(spec: str) -> bool:
    """True for cameras and stream URLs (a file is live only when followed)."""
    return source_kind(spec) != "file"


@dataclass(frozen=True)
class ReaderConfig:
    """How a :class:`FrameReader` reads (see the module docstring).

    Attributes:
        drop: ``latest`` (keep only the newest unprocessed frame) or ``none`` (process every frame);
            None: ``latest`` for cameras and URLs, ``none`` for files.
        follow: keep reading a file while it grows.
        stall_seconds: no frame for this long means a stalled stream (re-opened) or a finished file.
        open_timeout_s: FFmpeg's timeout to open a stream.
        reconnect_initial_s / reconnect_max_s: back-off between re-open attempts (doubling).
        give_up_s: the source is over after this long without a frame.
    """

    drop: str | None = None
    follow: bool = False
    stall_seconds: float = 5.0
    open_timeout_s: float = 5.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 8.0
    give_up_s: float = 60.0

    def __post_init__(self) -> None:
        if self.drop not in (None, "latest", "none"):
            raise ValueError(f"drop must be 'latest' or 'none', got {self.drop!r}")
        if min(self.stall_seconds, self.open_timeout_s, self.reconnect_initial_s, self.give_up_s) <= 0:
            raise ValueError("stall_seconds, open_timeout_s, reconnect_initial_s and give_up_s must be > 0")


@dataclass(frozen=True)
class Received:
    """One decoded frame: ``index`` counts every frame the source delivered (dropped ones too),
    ``received`` is its ``time.monotonic()`` arrival."""

    index: int
    rgb: np.ndarray
    received: float


def open_capture(spec: str, cfg: ReaderConfig) -> Any:
    """An opened ``cv2.VideoCapture`` for ``spec``, or None when it cannot be opened (yet)."""
    import cv2

    kind = source_kind(spec)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.stall_seconds * 1000)]
    if kind == "camera":
        capture = cv2.VideoCapture(int(spec) if spec.isdigit() else spec)
    elif kind == "url":
        capture = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)
    else:
        capture = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        return None
    return capture


class FrameReader:
    """Decodes a live source on a background thread; :meth:`get` hands frames to the identifier.

    Args:
        spec: the source string (see the module docstring).
        cfg: reading policy.
        on_status: called (on the reader thread) with status dicts: ``{"status": "reconnecting",
            "attempt": n, "retry_in_s": s, "reason": ...}``, ``{"status": "connected", ...}``,
            ``{"status": "ended", "reason": ...}``.
    """

    def __init__(self, spec: str, cfg: ReaderConfig | None = None,
                 on_status: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.spec, self.kind = spec, source_kind(spec)
        self.cfg = cfg or ReaderConfig()
        self.drop = self.cfg.drop or ("none" if self.kind == "file" else "latest")
        self.on_status = on_status or (lambda status: None)
        self.fps = 0.0
        self.delivered = self.dropped = self.reconnects = 0
        self._buffer: collections.deque[Received] = collections.deque()
        self._capacity = 1 if self.drop == "latest" else 4
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self.end_reason = ""
        self._thread = threading.Thread(target=self._run, name="gaitheat-live-read", daemon=True)

    def start(self) -> FrameReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading (the thread exits at its next frame or timeout)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def get(self, timeout: float = 0.5) -> Received | None:
        """The next frame to process; None when none came within ``timeout`` (check :attr:`ended`)."""
        with self._cond:
            if not self._buffer and not self._ended:
                self._cond.wait(timeout)
            if not self._buffer:
                return None
            item = self._buffer.popleft()
            self._cond.notify_all()
            return item

    @property
    def ended(self) -> bool:
        """The source is over and every frame was taken."""
        with self._cond:
            return self._ended and not self._buffer

    # ------------------------------------------------------------------------------- reader thread

    def _put(self, frame: Received) -> None:
        with self._cond:
            if self.drop == "latest":
                self.dropped += len(self._buffer)  # the newest frame wins: never fall behind
                self._buffer.clear()
            else:
                while len(self._buffer) >= self._capacity and not self._stop.is_set():
                    self._cond.wait(0.1)
            self._buffer.append(frame)
            self._cond.notify_all()

    def _end(self, reason: str) -> None:
        with self._cond:
            self._ended, self.end_reason = True, reason
            self._cond.notify_all()
        self.on_status({"status": "ended", "reason": reason})

    def _run(self) -> None:
        try:
            self._read_loop()
        except Exception as exc:  # reported as the end of the source, never lost on a daemon thread
            log.exception("%s: reader failed", self.spec)
            self._end(f"reader error: {type(exc).__name__}: {exc}")

    def _read_loop(self) -> None:
        import cv2

        cfg = self.cfg
        index, delay, attempt = 0, cfg.reconnect_initial_s, 0
        last_frame = grew = time.monotonic()
        last_size = -1
        while not self._stop.is_set():
            capture = open_capture(self.spec, cfg)
            if capture is not None:
                if attempt:
                    self.on_status({"status": "connected", "attempt": attempt, "after_frames": index})
                fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
                self.fps = fps if 0 < fps < 1000 else self.fps
                skip = index if self.kind == "file" else 0  # a followed file re-opens at its start
                got_any = False
                try:
                    while not self._stop.is_set():
                        ok, bgr = capture.read()
                        if not ok or bgr is None:
                            break
                        if skip:
                            skip -= 1
                            continue
                        got_any = True
                        rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                        last_frame = time.monotonic()
                        self._put(Received(index, rgb, last_frame))
                        self.delivered += 1
                        index += 1
                finally:
                    capture.release()
                if got_any:
                    delay, attempt = cfg.reconnect_initial_s, 0
            if self._stop.is_set():
                break
            now = time.monotonic()
            if self.kind == "file":
                if not cfg.follow:
                    if capture is None:
                        self._end("cannot open the file as a video")
                    else:
                        self._end("end of file")
                    return
                size = Path(self.spec).stat().st_size if Path(self.spec).exists() else -1
                if size != last_size:
                    last_size, grew = size, now
                if now - max(last_frame, grew) > cfg.stall_seconds:
                    self._end(f"the file has not grown for {cfg.stall_seconds:g} s")
                    return
                self._stop.wait(0.2)
                continue
            if now - last_frame > cfg.give_up_s:
                self._end(f"no frame for {cfg.give_up_s:g} s")
                return
            attempt += 1
            self.reconnects += 1
            reason = "cannot open" if capture is None else "stream stalled or dropped"
            self.on_status({"status": "reconnecting", "attempt": attempt, "retry_in_s": round(delay, 2),
                            "reason": reason, "after_frames": index})
            self._stop.wait(delay)
            delay = min(delay * 2, cfg.reconnect_max_s)
        self._end("stopped")


class MjpegPreview:
    """The newest annotated frame as an MJPEG stream on ``http://127.0.0.1:PORT/`` (any path).

    Bound to the loopback interface only. Each client gets frames as they are published; a slow
    client skips frames instead of queueing them.
    """

    def __init__(self, port: int = 0, quality: int = 80) -> None:
        import http.server

        self.quality = quality
        self._jpeg: bytes = b""
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False
        preview = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                seen = -1
                try:
                    while True:
                        jpeg, seen = preview._next(seen)
                        if not jpeg:
                            return
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, *args: Any) -> None:  # quiet: the events are the output
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="gaitheat-preview", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def publish(self, bgr: np.ndarray) -> None:
        import cv2

        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._cond:
                self._jpeg, self._seq = data.tobytes(), self._seq + 1
                self._cond.notify_all()

    def _next(self, seen: int) -> tuple[bytes, int]:
        with self._cond:
            while self._seq == seen and not self._closed:
                self._cond.wait(1.0)
            return (b"", seen) if self._closed else (self._jpeg, self._seq)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


class SegmentWriter:
    """Annotated frames into MP4 segments ``OUT-0000.mp4``, ``OUT-0001.mp4``, ... of ``seconds`` each
    (a crash loses at most the open segment)."""

    def __init__(self, out: str | Path, fps: float | Callable[[], float], seconds: float = 60.0) -> None:
        self.out, self.seconds = Path(out), seconds
        self._fps = fps  # a callable: a stream's rate is known only once it is open
        self._writer: Any = None
        self._frames = 0
        self.segments: list[Path] = []

    def write(self, bgr: np.ndarray) -> None:
        import cv2

        fps = self._fps() if callable(self._fps) else self._fps
        fps = fps if fps > 0 else 25.0
        if self._writer is None or self._frames >= self.seconds * fps:
            self.close()
            path = self.out.with_name(f"{self.out.stem}-{len(self.segments):04d}{self.out.suffix or '.mp4'}")
            h, w = bgr.shape[:2]
            self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"{path}: OpenCV cannot write an MP4 here")
            self.segments.append(path)
            self._frames = 0
        self._writer.write(bgr)
        self._frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
