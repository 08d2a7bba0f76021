"""The ``gaitheat`` command line: one module per subcommand, imported only when it runs.

Each subcommand module in this package defines::

    HELP: str                                   # one line, shown in ``gaitheat --help``
    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int    # exit status

``add_arguments`` must stay cheap (no torch, no model loading) so that ``--help`` is instant; heavy
imports go inside ``run``. Commands parse, load configs and call library functions; they hold no
domain logic.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gaitheat.config import ConfigError

# name -> module under gaitheat.cli (module names can't contain '-')
COMMANDS: dict[str, str] = {
    "extract": "extract",
    "show": "show",
    "index": "index",
    "import-pkl": "import_pkl",
    "import-silhouettes": "import_silhouettes",
    "export-pkl": "export_pkl",
    "import-keypoints": "import_keypoints",
    "regen": "regen",
    "export-onnx": "export_onnx",
    "export-pretrained": "export_pretrained",
    "train": "train",
    "evaluate": "evaluate",
    "import-checkpoint": "import_checkpoint",
    "compare": "compare",
    "enrol": "enrol",
    "identify": "identify",
    "gallery": "gallery",
    "synth": "synth",
    "demo": "demo",
    "doctor": "doctor",
    "eval-tracks": "eval_tracks",
}


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback, exit status 2."""


def check_output_path(option: str, path: str | None) -> None:
    """A file ``option`` can create: its folder exists and it is not itself a folder ('-' is stdout).

    Commands call it before any work, so a bad output path never costs an extraction.
    """
    if not path or path == "-":
        return
    out = Path(path)
    if out.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    if not out.parent.is_dir():
        raise UserError(f"{option} {path}: the folder {out.parent} does not exist")


def build_parser() -> argparse.ArgumentParser:
    from gaitheat import __version__

    parser = argparse.ArgumentParser(
        prog="gaitheat",
        description="Heatmap-based gait recognition (GaitHeat): extract, train, evaluate, enrol, identify.",
    )
    parser.add_argument("--version", action="version", version=f"gaitheat {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"gaitheat.cli.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs every SIMD variant it tries
    if os.environ.get("RANK", "0") != "0":
        # under torchrun only rank 0 talks (train, evaluate); the others still report errors
        logging.getLogger("gaitheat").setLevel(logging.ERROR)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except (UserError, ConfigError) as exc:
        print(f"gaitheat {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gaitheat {args.command}: interrupted", file=sys.stderr)
        return 130


def report_batch(summary: Any, root: Path, verb: str = "imported") -> int:
    """Print a per-file batch's failures (stderr) and totals, index ``root`` if anything is there; exit status.

    ``summary`` has ``written``, ``skipped`` and ``failed`` (path -> reason), as the importers return.
    """
    from gaitheat.manifest import load_manifest

    for path, reason in summary.failed.items():
        print(f"failed {path}: {reason}", file=sys.stderr)
    if summary.written or summary.skipped:
        load_manifest(root, rebuild=True)
    print(f"{verb} {len(summary.written)}, skipped {len(summary.skipped)} (already there), "
          f"failed {len(summary.failed)} -> {root}")
    return 1 if summary.failed else 0


def not_available(name: str, issue: str) -> int:
    """Placeholder ``run`` for a command whose implementation has not landed yet."""
    print(f"gaitheat {name}: not available yet ({issue})", file=sys.stderr)
    return 3
