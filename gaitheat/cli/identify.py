"""`gaitheat identify`: who is walking in a video, against a gallery.

Open set: a track is named only within the distance threshold (calibrated with ``gaitheat gallery
calibrate`` or given with ``--threshold``), else ``unknown``; with no threshold at all every track
is ``unverified`` (its nearest names still listed), because a nearest name alone would name every
stranger as someone in the gallery.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Identify the people walking in a video against a gallery."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gaitheat.cli.enrol import add_pipeline_arguments
    from gaitheat.cli.identify_live import add_live_arguments

    parser.add_argument("video", metavar="VIDEO", help="video, frame folder or .ghs heatmap file; or a live "
                        "source: camera index / /dev/videoN, rtsp:// or http(s):// URL (see --follow)")
    parser.add_argument("--gallery", required=True, metavar="G", help="gallery database")
    parser.add_argument("--top-k", type=int, default=5, metavar="K", help="names listed per person (default 5)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON ('-' for stdout)")
    parser.add_argument("--show", metavar="OUT", help="draw boxes and names on the video (.mp4, .avi or .gif)")
    parser.add_argument("--threshold", type=float,
                        help="open-set distance threshold (default: the calibrated one; with neither, "
                             "tracks are labelled 'unverified')")
    parser.add_argument("--search", choices=["auto", "exact", "faiss"], default="auto",
                        help="auto: exact up to 50,000 embeddings, FAISS above")
    add_pipeline_arguments(parser)
    add_live_arguments(parser)


def format_table(results: list) -> str:  # type: ignore[type-arg]
    lines = [f"{'track':>5} {'frames':>13} {'label':<16} {'best':>7}  top matches"]
    for r in results:
        t = r.track
        best = f"{r.matches[0][1]:.3f}" if r.matches else "-"
        top = ", ".join(f"{n} {d:.3f}" for n, d in r.matches)
        span = f"{t.frame_indices[0]}-{t.frame_indices[-1]}"
        lines.append(f"{t.track_id:>5} {span:>13} {r.label:<16} {best:>7}  {top}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from gaitheat.atomic import atomic_write_text
    from gaitheat.cli import UserError, check_output_path
    from gaitheat.cli.enrol import load_pipeline
    from gaitheat.gallery.db import GalleryDB, GalleryError
    from gaitheat.gallery.index import open_searcher
    from gaitheat.gallery.service import extract_tracks, identify_tracks

    if args.top_k < 1:
        raise UserError("--top-k must be >= 1")
    from gaitheat.cli.identify_live import run_live_identify, wants_live

    if wants_live(args):  # camera, stream URL or a file being written: events as people walk
        return run_live_identify(args)
    if args.show and not args.show.lower().endswith((".mp4", ".avi", ".gif")):
        raise UserError(f"--show {args.show}: use a .mp4, .avi or .gif file name")
    if args.show and args.video.endswith(".ghs"):
        raise UserError("--show needs the source video, not a .ghs file")
    if args.threshold is not None and not args.threshold >= 0:
        raise UserError(f"--threshold {args.threshold}: a distance threshold is a number >= 0")
    for option, out in (("--json", args.json), ("--show", args.show)):
        check_output_path(option, out)  # before any work: a bad path must not cost an extraction
    try:
        with GalleryDB(args.gallery) as db:
            embedder, cfg = load_pipeline(args, db)
            searcher = open_searcher(db, args.search)
            threshold = args.threshold if args.threshold is not None else db.threshold
            source = "--threshold" if args.threshold is not None else "calibrated" if threshold is not None else None
            tracks = extract_tracks([args.video], embedder, cfg, progress=not args.no_progress)
            results = identify_tracks(searcher, tracks, args.top_k, threshold)
            report = {"gallery": str(db.path), "video": args.video, "model_sha256": embedder.sha256,
                      "threshold": threshold, "threshold_source": source, "search": searcher.kind,
                      "people": db.people_count(),
                      "tracks": [r.to_json() for r in results]}
    except GalleryError as exc:
        raise UserError(str(exc)) from exc
    if threshold is None:  # after the work, so an error stays the only line
        print(f"gaitheat identify: {args.gallery} has no calibrated threshold and no --threshold was given: "
              "tracks are labelled 'unverified' (nearest names listed, nobody named); "
              "run `gaitheat gallery calibrate` with walkers not in the gallery", file=sys.stderr)
    print(format_table(results) if results else f"{args.video}: nobody walking was found")
    if args.json == "-":
        print(json.dumps(report, indent=1))
    elif args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1))
    if args.show:
        from gaitheat.gallery.show import render_identities

        render_identities(args.video, results, args.show)
    return 0

