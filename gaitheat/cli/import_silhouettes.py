"""`gaitheat import-silhouettes SRC DST`: OpenGait silhouette pickles -> silhouette-only store sequences."""

from __future__ import annotations

import argparse
from pathlib import Path

from gaitheat.cli import UserError, report_batch

HELP = ("Import an OpenGait tree of silhouette pickles (SRC/<subject>/<condition>/<view>/*.pkl, uint8 "
        "[T, 64, 64] or [T, 64, 44]) into a store (restricted unpickler: plain numeric arrays only).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="pickle tree: SRC/<subject>/<condition>/<view>/<name>.pkl")
    parser.add_argument("dst", type=Path, help="store root to write (sequences <name>.ghs)")
    parser.add_argument("--overwrite", action="store_true", help="replace sequences already in the store")


def run(args: argparse.Namespace) -> int:
    from gaitheat.import_silhouettes import import_silhouette_tree, silhouette_pickles

    if not args.src.is_dir():
        raise UserError(f"{args.src} is not a folder")
    if not silhouette_pickles(args.src):
        raise UserError(f"{args.src}: no silhouette pickles at <subject>/<condition>/<view>/*.pkl")
    summary = import_silhouette_tree(args.src, args.dst, overwrite=args.overwrite)
    return report_batch(summary, args.dst)
