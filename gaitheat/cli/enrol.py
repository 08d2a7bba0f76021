"""`gaitheat enrol`: placeholder until issue 5 (gallery) lands."""

from __future__ import annotations

import argparse

from gaitheat.cli import not_available

HELP = "Enrol people into a gallery from their walking videos."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_available("enrol", "issue 5 (gallery)")
