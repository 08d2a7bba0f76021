"""`gaitheat identify`: placeholder until issue 5 (gallery) lands."""

from __future__ import annotations

import argparse

from gaitheat.cli import not_available

HELP = "Identify the people walking in a video against a gallery."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_available("identify", "issue 5 (gallery)")
