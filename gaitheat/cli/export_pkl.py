"""`gaitheat export-pkl STORE DST`: heatmap store -> OpenGait/FastPoseGait float_/pose_ pickles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaitheat.cli import UserError

HELP = "Export a heatmap store to the OpenGait/FastPoseGait layout (float16 float_*.pkl + pose_*.pkl)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="store root")
    parser.add_argument("dst", type=Path, help="output tree: DST/<subject>/<condition>/<view>/float_<name>.pkl")
    parser.add_argument("--overwrite", action="store_true", help="rewrite pickles that already exist")


def run(args: argparse.Namespace) -> int:
    from gaitheat.interop import export_pkl_tree

    if not args.store.is_dir():
        raise UserError(f"{args.store} is not a folder")
    summary = export_pkl_tree(args.store, args.dst, overwrite=args.overwrite)
    for path, reason in summary.failed.items():
        print(f"failed {path}: {reason}", file=sys.stderr)
    counts = f"exported {len(summary.written)}, skipped {len(summary.skipped)}, failed {len(summary.failed)}"
    print(f"{counts} -> {args.dst}")
    return 1 if summary.failed else 0
