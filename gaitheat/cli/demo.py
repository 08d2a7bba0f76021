"""`gaitheat demo`: the whole system end to end on synthetic walkers (see :mod:`gaitheat.demo`)."""

from __future__ import annotations

import argparse

HELP = "Run the whole system end to end on synthetic walkers and write a report."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out",
                        help="working and report folder (default ./demo_out); reruns reuse it")
    parser.add_argument("--json", action="store_true",
                        help="last line: one JSON object with nm_rank1, bg_rank1, cl_rank1 (fractions) and minutes")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the demo's plan)")
    parser.add_argument("--seed", type=int, default=None, help="synthesis seed (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes for synthesis and extraction (default 2)")
    parser.add_argument("--compare", action="store_true",
                        help="also train and evaluate the `paper` model suite at cpu-small sizes "
                             "(adds `models` to --json)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from gaitheat.cli import UserError
    from gaitheat.demo import DemoConfig, DemoError, run_demo

    changes = {k: v for k, v in (("steps", args.steps), ("seed", args.seed), ("workers", args.workers))
               if v is not None}
    if any(v < (0 if k == "seed" else 1) for k, v in changes.items()):
        raise UserError("--steps and --workers must be >= 1, --seed >= 0")
    cfg = dataclasses.replace(DemoConfig(), **changes, compare=bool(args.compare))
    try:
        summary = run_demo(args.out, cfg)
    except DemoError as exc:
        raise UserError(str(exc)) from exc
    print()
    print(summary["table"])
    ident = summary["identify"]
    print(f"\nidentify {ident['probe']}: " + ", ".join(f"{n} ({d:.3f})" for n, d in ident["top"])
          + f"  [truth {ident['truth']}]")
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items()))
    if "compare_table" in summary:
        print()
        print(summary["compare_table"])
    print(f"report: {summary['report']}  ({summary['minutes']:.1f} min)")
    if args.json:
        keys = ("nm_rank1", "bg_rank1", "cl_rank1", "minutes")
        line: dict[str, object] = {k: round(float(summary[k]), 4) for k in keys}
        if "models" in summary:
            line["models"] = summary["models"]
        print(json.dumps(line))
    return 0
