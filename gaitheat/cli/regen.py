"""`gaitheat regen STORE OUT`: a store's keypoints drawn back into heatmaps (the paper's Table 4 input)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gaitheat.cli import UserError, report_batch

HELP = ("Write the 'regenerated heatmaps' twin of a store: same frames, crop boxes and keypoints, heatmaps "
        "drawn as Gaussians at the keypoints (meta heatmap_source=regenerated). Resumable.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gaitheat.heatmaps import DEFAULT_SIGMA

    parser.add_argument("store", type=Path, help="store root to read (extracted or imported)")
    parser.add_argument("out", type=Path, help="store root to write")
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA,
                        help=f"Gaussian sigma in heatmap cells (default {DEFAULT_SIGMA}: the spread of the pose "
                             "models' own heatmaps at 64x48)")
    parser.add_argument("--peak-one", action="store_true", help="peak 1 for every joint instead of its score")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    parser.add_argument("--overwrite", action="store_true", help="replace sequences already in OUT")


def run(args: argparse.Namespace) -> int:
    from gaitheat.regen import regen_store

    if not args.store.is_dir():
        raise UserError(f"{args.store} is not a folder")
    if not args.sigma > 0:
        raise UserError(f"--sigma must be positive, got {args.sigma}")
    try:
        summary = regen_store(args.store, args.out, sigma=args.sigma, score_peak=not args.peak_one,
                              overwrite=args.overwrite, progress=not args.no_progress)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return report_batch(summary, args.out, "regenerated")
