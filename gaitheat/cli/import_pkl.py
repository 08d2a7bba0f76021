"""`gaitheat import-pkl SRC DST`: OpenGait/FastPoseGait float_/pose_ pickles -> heatmap store."""

from __future__ import annotations

import argparse
from pathlib import Path

from gaitheat.cli import UserError, report_batch

HELP = ("Import an OpenGait/FastPoseGait tree of float_*.pkl / pose_*.pkl files into a heatmap store "
        "(pickles are loaded with a restricted unpickler: plain numeric arrays only).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="pickle tree: SRC/<subject>/<condition>/<view>/float_*.pkl")
    parser.add_argument("dst", type=Path, help="store root to write")
    parser.add_argument("--overwrite", action="store_true", help="replace sequences already in the store")


def run(args: argparse.Namespace) -> int:
    from gaitheat.interop import import_pkl_tree

    if not args.src.is_dir():
        raise UserError(f"{args.src} is not a folder")
    summary = import_pkl_tree(args.src, args.dst, overwrite=args.overwrite)
    return report_batch(summary, args.dst)
