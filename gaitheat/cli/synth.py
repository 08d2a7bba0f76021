"""`gaitheat synth`: placeholder until issue 7 (synthetic walkers) lands."""

from __future__ import annotations

import argparse

from gaitheat.cli import not_available

HELP = "Render synthetic walker videos in the CASIA-B tree."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_available("synth", "issue 7 (synthetic walkers)")
