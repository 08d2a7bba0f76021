"""`gaitheat evaluate`: placeholder until issue 4 (evaluation) lands."""

from __future__ import annotations

import argparse

from gaitheat.cli import not_available

HELP = "Evaluate a checkpoint with an official or custom protocol and write reports."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_available("evaluate", "issue 4 (evaluation)")
