"""`gaitheat train`: placeholder until issue 3 (network and training) lands."""

from __future__ import annotations

import argparse

from gaitheat.cli import not_available

HELP = "Train a GaitHeat model on a heatmap store (also under torchrun)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_available("train", "issue 3 (network and training)")
