"""`gaitheat import-checkpoint SRC.pt OUT.pt`: a released FastPoseGait/OpenGait GaitHeat checkpoint -> gaitheat.

Examples::

    gaitheat import-checkpoint GaitHeat-60000.pt runs/released/casia-b.pt --config casia-b
    gaitheat evaluate --checkpoint runs/released/casia-b.pt --data-root /data/casia-b-heat

Widths, strips, embedding size and classes come from the tensor shapes; the part streams default to
the release's input channels 0 and 1 (``--groups release``) and PGHA to the release's two passes in
its pixel convention. See :mod:`gaitheat.released`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gaitheat.cli import UserError

HELP = "Import a released FastPoseGait/OpenGait GaitHeat checkpoint (any width) as a gaitheat checkpoint."
GROUP_PRESETS = {
    "release": ((0,), (1,)),  # what the released forward computes on 17-channel heatmaps
    "top-bottom": ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), (11, 12, 13, 14, 15, 16)),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="released checkpoint .pt ({'model': state_dict, ...} or a state_dict)")
    parser.add_argument("out", type=Path, help="gaitheat checkpoint to write")
    parser.add_argument("--config", help="experiment YAML or shipped name whose data/eval sections to store "
                        "(default: the built-in defaults); the model section comes from the checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. model.gamma_deg=20 (repeatable)")
    parser.add_argument("--groups", default="release",
                        help="part streams: 'release' (input channels 0 and 1, as the released forward), "
                        "'top-bottom', or JSON such as '[[0,1,2],[11,12]]' (default: release)")
    parser.add_argument("--strides", default="1,2,2,1", help="ResNet9 stage strides (default: 1,2,2,1)")
    parser.add_argument("--align-mode", choices=("two_pass", "composite"), default="two_pass",
                        help="PGHA resampling (default: two_pass, as released)")
    parser.add_argument("--align-pixels", choices=("edge", "centre"), default="edge",
                        help="PGHA pixel convention (default: edge, as released)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")


def parse_groups(text: str) -> tuple[tuple[int, ...], ...]:
    """A ``--groups`` value -> joint index groups."""
    if text in GROUP_PRESETS:
        return GROUP_PRESETS[text]
    try:
        value = json.loads(text)
        groups = tuple(tuple(int(j) for j in g) for g in value)
    except (ValueError, TypeError) as exc:
        raise UserError(f"--groups {text!r}: expected {' | '.join(GROUP_PRESETS)} or JSON like [[0,1],[2]]") from exc
    if not groups or any(not g for g in groups):
        raise UserError(f"--groups {text!r}: every group needs at least one joint")
    return groups


def parse_strides(text: str) -> tuple[int, ...]:
    try:
        strides = tuple(int(s) for s in text.split(","))
    except ValueError as exc:
        raise UserError(f"--strides {text!r}: expected four integers such as 1,2,2,1") from exc
    if len(strides) != 4 or min(strides) < 1:
        raise UserError(f"--strides {text!r}: expected four positive integers such as 1,2,2,1")
    return strides


def run(args: argparse.Namespace) -> int:
    from gaitheat.config import load_config
    from gaitheat.experiment import ExperimentConfig
    from gaitheat.released import import_checkpoint

    groups, strides = parse_groups(args.groups), parse_strides(args.strides)
    if not args.src.is_file():
        raise UserError(f"{args.src}: no such checkpoint file")
    if args.out.exists() and not args.force:
        raise UserError(f"{args.out} exists (use --force to overwrite)")
    if not args.out.parent.is_dir():
        raise UserError(f"{args.out.parent}: output folder does not exist")
    base = load_config(ExperimentConfig, args.config, args.overrides)
    try:
        summary = import_checkpoint(args.src, args.out, base, groups=groups, strides=strides,
                                    align_mode=args.align_mode, align_pixels=args.align_pixels)
    except ValueError as exc:  # names the file and lists every key or shape that does not fit
        raise UserError(str(exc)) from exc
    arch = summary["architecture"]
    print(f"imported {summary['tensors']} tensors from {args.src} (iteration {summary['iteration']}): "
          f"widths {tuple(arch['widths'])}, {arch['parts']} strips x {arch['embed_dim']} dims, "
          f"{arch['num_classes']} classes, part groups {list(map(list, groups))} -> {args.out}")
    return 0
