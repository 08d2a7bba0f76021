"""`gaitheat extract`: placeholder until issue 6 (extraction) lands."""

from __future__ import annotations

import argparse

from gaitheat.cli import not_available

HELP = "Extract per-person heatmap sequences from videos or frame folders into a store."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_available("extract", "issue 6 (extraction)")
