"""placeholder"""

from __future__ import annotations

import argparse

from gaitheat.cli import not_available

HELP = "placeholder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    return not_available("import_pkl", "issue 2")
