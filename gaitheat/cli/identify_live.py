"""`gaitheat identify SOURCE` on a live source: a camera, a stream URL, or a file still being written.

Used by :mod:`gaitheat.cli.identify` when SOURCE is a camera (``0``, ``/dev/video0``) or a URL
(``rtsp://``, ``http(s)://`` ...), or with ``--follow`` / ``--live``. Events are JSON lines on stdout
(and ``--events FILE``); see :mod:`gaitheat.live` for their fields, :mod:`gaitheat.live_source` for
the drop and reconnection policies. Ctrl-C (or SIGTERM) ends the run cleanly: the final identities
and leave events are written, exit status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from typing import Any


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    live = parser.add_argument_group("live sources (camera index or /dev/videoN, rtsp:// or http(s):// URL, "
                                     "or --follow FILE)")
    live.add_argument("--live", action="store_true", help="treat VIDEO as a live source even if it is a plain file")
    live.add_argument("--follow", action="store_true", help="VIDEO is still being written: keep reading as it grows")
    live.add_argument("--events", metavar="FILE", help="also write the JSON-lines events to FILE")
    live.add_argument("--min-frames", type=int, default=30, metavar="N",
                      help="good frames walked before the first identity event (default 30: one gait cycle at 25 fps)")
    live.add_argument("--window", type=int, default=60, metavar="N", help="frames an embedding uses (default 60)")
    live.add_argument("--refine-every", type=int, default=10, metavar="N",
                      help="new frames between identity updates (default 10)")
    live.add_argument("--max-tracks", type=int, default=8, metavar="N", help="people held at once (default 8)")
    live.add_argument("--embed-every", type=int, default=1, metavar="K",
                      help="run the recognition network on every K-th good frame of a person (default 1: every "
                           "frame; K > 1 for a CPU too slow for the network on every frame)")
    live.add_argument("--drop", choices=["latest", "none"],
                      help="frames arriving faster than processed: keep only the newest (latest; default for "
                           "cameras and URLs) or process all (none; default for files)")
    live.add_argument("--stall-seconds", type=float, default=5.0, metavar="S",
                      help="no frame for S seconds: re-open the stream (default 5)")
    live.add_argument("--reconnect-timeout", type=float, default=60.0, metavar="S",
                      help="give up after S seconds without a frame (default 60)")
    live.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames")
    live.add_argument("--torch-threads", type=int, default=1, metavar="N",
                      help="intra-op threads of each network worker (default 1)")
    live.add_argument("--net-workers", type=int, metavar="N",
                      help="frames in the network at once, each on its own thread (default: one per CPU core; "
                           "1 on a GPU)")
    live.add_argument("--preview", type=int, metavar="PORT",
                      help="annotated MJPEG preview on http://127.0.0.1:PORT/ (0: any free port)")
    live.add_argument("--record", metavar="OUT.mp4", help="annotated video in MP4 segments OUT-0000.mp4, ...")
    live.add_argument("--segment-seconds", type=float, default=60.0, metavar="S", help="MP4 segment length (60)")


def wants_live(args: argparse.Namespace) -> bool:
    from gaitheat.live_source import is_live_source

    return bool(args.live or args.follow or is_live_source(args.video))


def run_live_identify(args: argparse.Namespace) -> int:
    from gaitheat.cli import UserError, check_output_path
    from gaitheat.cli.enrol import load_pipeline
    from gaitheat.gallery.db import GalleryDB, GalleryError
    from gaitheat.gallery.index import open_searcher
    from gaitheat.live import EventSink, LiveConfig, LiveIdentifier, PeopleFinder, frame_net_for, run_live, utc_now
    from gaitheat.live_source import FrameReader, MjpegPreview, ReaderConfig, SegmentWriter, source_kind

    if args.show:
        raise UserError("--show draws a finished video; on a live source use --preview PORT or --record OUT.mp4")
    if args.threshold is not None and not args.threshold >= 0:
        raise UserError(f"--threshold {args.threshold}: a distance threshold is a number >= 0")
    if args.net_workers is not None and args.net_workers < 0:
        raise UserError(f"--net-workers {args.net_workers}: give 0 (network on the identifier's thread) or more")
    for option, out in (("--events", args.events), ("--record", args.record)):
        check_output_path(option, out)  # before any work
    try:
        cfg = LiveConfig(min_frames=args.min_frames, window=args.window, refine_every=args.refine_every,
                         max_tracks=args.max_tracks, top_k=args.top_k, embed_every=args.embed_every)
        reader_cfg = ReaderConfig(drop=args.drop, follow=args.follow, stall_seconds=args.stall_seconds,
                                  give_up_s=args.reconnect_timeout)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if source_kind(args.video) == "file" and not args.follow and not __import__("os").path.isfile(args.video):
        raise UserError(f"{args.video}: no such file (a camera is a number or /dev/videoN, a stream a URL)")
    import torch

    # Measured on 2 shared cores: one frame of the network took 176 ms with 2 intra-op threads beside
    # the pose model and detector threads (OpenMP workers spin against them) and 19 ms with one; the
    # cores are used by several single-threaded network workers instead (live.TorchFrameNet).
    torch.set_num_threads(max(1, args.torch_threads))
    sink = EventSink(sys.stdout, args.events)
    started = time.monotonic()  # the identifier's clock starts with it (LiveIdentifier.started)
    outputs: list[Any] = []
    try:
        with GalleryDB(args.gallery) as db:
            embedder, extract_cfg = load_pipeline(args, db)
            searcher = open_searcher(db, args.search)
            threshold = args.threshold if args.threshold is not None else db.threshold
        if threshold is None:
            print(f"gaitheat identify: {args.gallery} has no calibrated threshold and no --threshold was given: "
                  "people are labelled 'unverified' (nearest names listed, nobody named)", file=sys.stderr)

        def status(info: dict[str, Any]) -> None:
            if info.get("status") != "ended":  # the loop reports the end, with the totals
                sink({"event": "status", "time": utc_now(), "t": round(time.monotonic() - started, 3),
                      "frame": info.get("after_frames", -1), **info})
                print(f"{args.video}: {info['status']} {info.get('reason', '')}".rstrip(), file=sys.stderr)

        reader = FrameReader(args.video, reader_cfg, on_status=status)
        finder = PeopleFinder(extract_cfg, fps=lambda: reader.fps or 25.0)
        try:
            net = frame_net_for(embedder, args.net_workers, max(1, args.torch_threads))
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        identifier = LiveIdentifier(net, searcher, threshold, cfg, sink)
        identifier.started = started
        if args.preview is not None:
            outputs.append(MjpegPreview(args.preview))
            print(f"preview: {outputs[-1].url}", file=sys.stderr)
        if args.record:
            outputs.append(SegmentWriter(args.record, lambda: reader.fps, args.segment_seconds))
        sink({"event": "status", "time": utc_now(), "t": 0.0, "frame": -1, "status": "started", "source": args.video,
              "drop": reader.drop, "min_frames": cfg.min_frames, "window": cfg.window, "threshold": threshold,
              "model_sha256": embedder.sha256, "backend": type(identifier.net).__name__})
        in_main = threading.current_thread() is threading.main_thread()  # signals are only set there
        previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
        try:
            reader.start()
            stats = run_live(reader, finder, identifier, outputs=tuple(outputs), max_frames=args.max_frames)
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
            finder.close()
            reader.join(timeout=2.0)
    except GalleryError as exc:
        raise UserError(str(exc)) from exc
    finally:
        for out in outputs:
            with contextlib.suppress(Exception):
                out.close()
        sink.close()
    print(f"{args.video}: {stats.processed} frames processed at {stats.fps():.1f} fps "
          f"({reader.dropped} dropped, {reader.reconnects} reconnects)", file=sys.stderr)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
