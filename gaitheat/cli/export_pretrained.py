"""`gaitheat export-pretrained CKPT`: a training checkpoint -> the package's shipped weights.

Writes ``NAME.safetensors`` (weights only, no pickle, <= 10 MB) and its sidecar ``NAME.json``
(SHA-256, config, provenance) into the package's ``gaitheat/weights/`` (or ``--out``), then loads
them back through the SHA-256-checked path and checks they embed exactly as the checkpoint does.
Afterwards ``enrol``, ``identify`` and ``evaluate`` use this model when no ``--checkpoint`` is given.
See :mod:`gaitheat.pretrained` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gaitheat.cli import UserError

HELP = "Export a checkpoint as the shipped pretrained model (safetensors + SHA-256 sidecar, <= 10 MB)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="training checkpoint (.pt)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder to write into (default: the package's gaitheat/weights, i.e. ship it)")
    parser.add_argument("--name", default=None, help="file stem (default: gaitheat-synth)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="calibrated open-set distance threshold to record (benchmarks/pretrained.py --record "
                             "measures one)")
    parser.add_argument("--recipe", type=Path, metavar="JSON", help="JSON object of provenance to record "
                        "(command, config, data size, training time ...)")
    parser.add_argument("--no-size-limit", action="store_true",
                        help="allow weights over 10 MB (not for the package: the wheel's limit)")


def run(args: argparse.Namespace) -> int:
    from gaitheat.pretrained import DEFAULT_NAME, MAX_SHIPPED_BYTES, WEIGHTS_DIR, export_pretrained

    if not args.checkpoint.is_file():
        raise UserError(f"{args.checkpoint}: no such checkpoint file")
    if args.threshold is not None and not args.threshold >= 0:
        raise UserError(f"--threshold {args.threshold}: a distance threshold is a number >= 0")
    recipe = None
    if args.recipe:
        try:
            recipe = json.loads(args.recipe.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{args.recipe}: not a readable JSON file ({exc})") from exc
        if not isinstance(recipe, dict):
            raise UserError(f"{args.recipe}: expected a JSON object")
    try:
        info = export_pretrained(args.checkpoint, args.out or WEIGHTS_DIR, args.name or DEFAULT_NAME,
                                 recipe=recipe, threshold=args.threshold,
                                 max_bytes=None if args.no_size_limit else MAX_SHIPPED_BYTES)
    except ValueError as exc:  # names the checkpoint or the weights file
        raise UserError(str(exc)) from exc
    print(f"wrote {info.weights} ({info.size_bytes / 1e6:.2f} MB, sha256 {info.sha256}) and {info.sidecar.name}: "
          f"embedding {info.meta['embedding_shape']}, distance {info.meta['distance']}, round trip exact")
    return 0
