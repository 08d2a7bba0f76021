"""`gaitheat compare`: train and evaluate several models the same way and print one table.

Examples::

    gaitheat compare paper --data-root /data/casia-b-heat --out runs/compare
    gaitheat compare paper-cpu-small --data-root demo_out/store --partition demo_out/partition.json
    gaitheat compare gaitgraph gpgait mine=my-model.yaml --data-root ... --checkpoint gaitgraph=runs/gg/last.pt

Each entry trains under ``<out>/<name>/run`` (resuming there) unless ``--checkpoint NAME=PATH`` gives
its weights, then is evaluated on the same store, split and protocol, and its parameters, GFLOPs per
frame and train/inference time per frame are measured on this machine. A rerun reuses finished
entries (``<out>/<name>/result.json``). Writes ``compare.{json,csv,png,txt}`` into ``--out``.
"""

from __future__ import annotations

import argparse

from gaitheat.cli import UserError

HELP = "Train, evaluate and cost several models on one store and protocol; print the paper-style table."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("configs", nargs="+", metavar="CONFIG",
                        help="experiment configs (shipped name or YAML, optionally NAME=CONFIG), or the suite "
                             "`paper` / `paper-cpu-small`")
    parser.add_argument("--data-root", required=True, help="store every model trains and is evaluated on")
    parser.add_argument("--partition", help="partition JSON (TRAIN_SET/TEST_SET); sets data.dataset=custom")
    parser.add_argument("--protocol", default="casia-b", help="evaluation protocol (default casia-b)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="use these weights for entry NAME instead of training it (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every entry, e.g. train.steps=100 (repeatable)")
    parser.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    parser.add_argument("--no-measure", action="store_true", help="skip the cost measurements")
    parser.add_argument("--keep-going", action="store_true",
                        help="record an entry whose data does not fit (e.g. no silhouettes in the store) and go on")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gaitheat.compare import compare, format_compare_table, load_entries

    overrides = [f"data.root={args.data_root}", f"eval.protocol={args.protocol}"]
    if args.partition:
        if not Path(args.partition).is_file():
            raise UserError(f"--partition {args.partition}: no such file")
        overrides += ["data.dataset=custom", f"data.partition={args.partition}", f"eval.partition={args.partition}"]
    if not Path(args.data_root).is_dir():
        raise UserError(f"--data-root {args.data_root}: not a folder")
    checkpoints = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise UserError(f"--checkpoint {item!r}: expected NAME=PATH of an existing checkpoint")
        checkpoints[name] = path
    try:
        entries = load_entries(args.configs, overrides + list(args.overrides))
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    unknown = sorted(set(checkpoints) - set(entries))
    if unknown:
        raise UserError(f"--checkpoint names {unknown} are not entries ({', '.join(entries)})")
    summary = compare(entries, args.out, checkpoints, measure=not args.no_measure, progress=not args.no_progress,
                      keep_going=args.keep_going)
    print(format_compare_table(summary))
    print(f"written: {Path(args.out) / 'compare.json'} (.csv, .png, .txt)")
    return 0
