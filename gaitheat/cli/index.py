"""`gaitheat index ROOT`: scan a heatmap store into ROOT/manifest.csv."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from gaitheat.cli import UserError

HELP = "Scan a heatmap store into ROOT/manifest.csv (subject, condition, view, frames, path, bytes)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="store root: ROOT/<subject>/<condition>/<view>/<name>.ghs")
    parser.add_argument("--verify", action="store_true", help="also decompress every chunk and check checksums")


def run(args: argparse.Namespace) -> int:
    from gaitheat.manifest import scan_store, write_manifest

    if not args.root.is_dir():
        raise UserError(f"{args.root} is not a folder")
    rows, errors = scan_store(args.root, verify=args.verify)
    path = write_manifest(args.root, rows)
    subjects = len({r.subject for r in rows})
    conditions = Counter(r.condition for r in rows)
    frames = sum(r.frames for r in rows)
    size = sum(r.bytes for r in rows)
    print(f"{len(rows)} sequences, {subjects} subjects, {frames} frames, {size / 1e6:.1f} MB -> {path}")
    if conditions:
        print("conditions: " + ", ".join(f"{c} {n}" for c, n in sorted(conditions.items())))
    for err in errors:
        print(f"skipped {err}", file=sys.stderr)
    return 1 if errors else 0
