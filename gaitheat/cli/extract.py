"""`gaitheat extract`: videos / frame folders -> per-person heatmap sequences in a store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "Extract per-person heatmap sequences from videos or frame folders into a store."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="videos, images, frame folders or dataset trees")
    parser.add_argument("--out", required=True, metavar="ROOT", help="store root")
    parser.add_argument("--config", metavar="YAML", help="ExtractConfig YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--pose", choices=["blazepose", "onnx"], help="pose backend (default blazepose)")
    parser.add_argument("--pose-model", metavar="PATH", help="pose model file (required for onnx)")
    parser.add_argument("--boxes", metavar="FILE", help="person boxes per frame (JSON/CSV) instead of a detector")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="processes on this machine (this one plus N-1 spawned), sharing one queue of inputs")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="handle shard I of N of the sorted inputs")
    parser.add_argument("--summary", metavar="JSON", help="summary file (default ROOT/extract-summary[-I-of-N].json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--tracks-out", metavar="DIR",
                        help="also write each input's tracks as MOTChallenge text, DIR/<input name>.txt: the "
                             "tracker's box in every frame of each stored track (score with `gaitheat eval-tracks`)")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    from gaitheat.cli import UserError

    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError as exc:
        raise UserError(f"--shard must look like 0/4, got {text!r}") from exc
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text}: need 0 <= i < n")
    return index, count


def run(args: argparse.Namespace) -> int:
    from gaitheat.atomic import atomic_write_text
    from gaitheat.cli import UserError
    from gaitheat.config import load_config
    from gaitheat.extract import ExtractConfig
    from gaitheat.extract_store import discover_inputs, extract_to_store

    overrides = list(args.set)
    if args.pose:
        overrides.append(f"pose={args.pose}")
    if args.pose_model:
        overrides.append(f"pose_model={args.pose_model}")
    if args.boxes:
        overrides += [f"boxes_file={args.boxes}", "detector=boxes"]
    if args.tracks_out:
        overrides.append(f"tracks_out={args.tracks_out}")
    cfg = load_config(ExtractConfig, args.config, overrides)
    if cfg.pose == "onnx" and not cfg.pose_model:
        raise UserError("--pose onnx needs --pose-model PATH (an HRNet/ViTPose 256x192 ONNX file)")
    if args.workers < 1:
        raise UserError("--workers must be >= 1")
    shard = parse_shard(args.shard)
    if not discover_inputs(args.inputs):
        raise UserError(f"no videos, images or frame folders found in {' '.join(args.inputs)}")
    try:
        summary = extract_to_store(args.inputs, args.out, cfg, workers=args.workers, shard=shard,
                                   progress=not args.no_progress)
    except (FileNotFoundError, KeyError) as exc:
        raise UserError(str(exc)) from exc
    suffix = "" if shard == (0, 1) else f"-{shard[0]}-of-{shard[1]}"
    summary_path = Path(args.summary) if args.summary else Path(args.out) / f"extract-summary{suffix}.json"
    atomic_write_text(summary_path, json.dumps(summary, indent=1))
    print(f"videos {summary['videos']}: done {summary['done']}, skipped {summary['skipped']}, "
          f"failed {summary['failed']}; tracks {summary['tracks']}, frames kept {summary['frames_kept']}, "
          f"dropped {summary['frames_dropped']}; summary {summary_path}")
    for warning in summary["warnings"]:
        print(f"  warning: {warning}", file=sys.stderr)
    for failure in summary["failures"]:
        print(f"  failed: {failure['error']}", file=sys.stderr)
    return 1 if summary["failed"] else 0

