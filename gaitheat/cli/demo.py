"""`gaitheat demo`: placeholder until issue 7 (demo) lands."""

from __future__ import annotations

import argparse

from gaitheat.cli import not_available

HELP = "Run the whole system end to end on synthetic walkers and write a report."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_available("demo", "issue 7 (demo)")
