"""`gaitheat train CONFIG [--set k=v ...] [--data-root ROOT] [--out DIR] [--resume [CKPT]]`.

Works alike on CPU, one GPU and under ``torchrun --nproc-per-node N -m gaitheat train CONFIG``.
Without ``--resume`` a run continues automatically from the newest checkpoint in ``OUT/checkpoints``
when there is one (so a restarted torchrun job picks up where it stopped); ``--resume`` insists on a
checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gaitheat.cli import UserError

HELP = "Train a GaitHeat model on a heatmap store (also under torchrun)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML, or a shipped name: casia-b, ccpg, sustech1k, cpu-small")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.steps=1000 (repeatable)")
    parser.add_argument("--data-root", help="heatmap store root (sets data.root)")
    parser.add_argument("--out", help="run folder for checkpoints and TensorBoard (sets train.out)")
    parser.add_argument("--resume", nargs="?", const="last", default=None, metavar="CKPT",
                        help="continue from CKPT, or from the newest checkpoint in OUT/checkpoints")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: CUDA when available")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress output (default: a bar on a terminal, a line every 30 s in a log)")


def run(args: argparse.Namespace) -> int:
    from gaitheat.config import load_config
    from gaitheat.experiment import ExperimentConfig

    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.out:
        overrides.append(f"train.out={args.out}")
    cfg = load_config(ExperimentConfig, args.config, overrides)
    if not cfg.data.root:
        raise UserError("no heatmap store given: pass --data-root ROOT or set data.root")
    if not Path(cfg.data.root).is_dir():
        raise UserError(f"heatmap store {cfg.data.root} is not a folder")
    check_store(cfg.data.root)

    from gaitheat.checkpoint import find_resume
    from gaitheat.train import train

    resume = None
    if args.resume == "last":
        resume = find_resume(cfg.train.out)
        if resume is None:
            raise UserError(f"--resume: no checkpoint under {Path(cfg.train.out) / 'checkpoints'}")
    elif args.resume:
        resume = Path(args.resume)
        if not resume.is_file():
            raise UserError(f"--resume: {resume} is not a file")
    from gaitheat.storage import StoreError

    try:
        path = train(cfg, device=args.device, resume=resume, progress=not args.no_progress)
    except (ValueError, StoreError) as exc:
        # store, partition and checkpoint mismatches, a file that breaks mid-run: the user's input, not a bug
        raise UserError(str(exc)) from exc
    print(path)
    return 0


def check_store(root: str) -> None:
    """Refuse a store with unreadable sequence files, naming the first (training would leave them out).

    The headers are scanned only when the manifest is stale; the fresh manifest is written, so the
    training run that follows does not scan again.
    """
    from gaitheat.manifest import MANIFEST_NAME, read_manifest, scan_store, write_manifest
    from gaitheat.storage import iter_sequence_files

    files = iter_sequence_files(root)
    manifest = Path(root) / MANIFEST_NAME
    if manifest.is_file():
        mtime = manifest.stat().st_mtime
        if len(read_manifest(manifest)) == len(files) and all(f.stat().st_mtime <= mtime for f in files):
            return  # every file was readable when the manifest was written, and none changed since
    rows, errors = scan_store(root)
    if errors:
        more = f" (and {len(errors) - 1} more unreadable files)" if len(errors) > 1 else ""
        raise UserError(f"{errors[0]}{more}; fix or remove it before training")
    write_manifest(root, rows)
