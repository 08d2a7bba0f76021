"""`gaitheat show`: placeholder until issue 6 (extraction) lands."""

from __future__ import annotations

import argparse

from gaitheat.cli import not_available

HELP = "Draw a stored sequence's crop boxes and heatmaps to a PNG or GIF."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_available("show", "issue 6 (extraction)")
