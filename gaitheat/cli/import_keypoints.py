"""`gaitheat import-keypoints SRC STORE`: keypoint-only data (pose pickles, COCO/AlphaPose, OpenPose JSON) -> store."""

from __future__ import annotations

import argparse
from pathlib import Path

from gaitheat.cli import UserError, report_batch

HELP = ("Import keypoint-only data into a store: OpenGait/FastPoseGait pose-pickle trees, COCO-format or "
        "AlphaPose results JSON (one file per video), OpenPose/OUMVLP-Pose per-frame JSON folders. "
        "Exit status 1 when some inputs failed (the rest are imported).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gaitheat.heatmaps import DEFAULT_SIGMA

    parser.add_argument("src", type=Path, help="a folder (searched recursively) or one file")
    parser.add_argument("store", type=Path, help="store root to write")
    parser.add_argument("--regen", action="store_true",
                        help="also store regenerated heatmaps drawn from the keypoints (heatmap_source=regenerated)")
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA, help="sigma of --regen heatmaps, in cells")
    parser.add_argument("--mapping", type=Path, metavar="CSV",
                        help="CSV with columns source,subject,condition,view (source: path relative to SRC, or "
                             "the file/folder name); default: dataset-style names")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    parser.add_argument("--overwrite", action="store_true", help="replace sequences already in the store")


def run(args: argparse.Namespace) -> int:
    from gaitheat.import_keypoints import import_keypoints

    if not args.src.exists():
        raise UserError(f"{args.src}: no such file or folder")
    if args.mapping is not None and not args.mapping.is_file():
        raise UserError(f"{args.mapping}: no such mapping CSV")
    if not args.sigma > 0:
        raise UserError(f"--sigma must be positive, got {args.sigma}")
    try:
        summary = import_keypoints(args.src, args.store, regen=args.regen, sigma=args.sigma, mapping=args.mapping,
                                   overwrite=args.overwrite, progress=not args.no_progress)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return report_batch(summary, args.store)
