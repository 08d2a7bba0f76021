"""The recipe of the shipped model: data, training, evaluation, export (``make pretrained``).

One command, four steps, each resuming what an earlier run finished::

    python -m gaitheat.pretrain_recipe --out pretrain_out [--workers 2] [--set model.widths=[32,64,128,256]]

1. ``data``: the ``pretrain`` synthesis plan (:mod:`gaitheat.synth.plan`: 300 training and 50
   held-out synthetic identities, 11 views, normative gait kinematics) rendered and extracted into
   ``OUT/data`` (videos, heatmap store, CASIA-B-layout ``partition.json``);
2. ``train``: ``configs/pretrained-synth.yaml`` on the training identities into ``OUT/run``
   (continues from the newest checkpoint there);
3. ``evaluate``: the CASIA-B protocol (gallery nm-01..04; probes NM, BG, CL; identical views
   excluded) on the held-out identities: ``OUT/report/casia-b.{json,csv,views.png,cmc.png}`` and
   ``OUT/evaluation.json`` (rank-1 per probe set as fractions, per view);
4. ``export``: :func:`gaitheat.pretrained.export_pretrained` writes the package's safetensors and
   metadata from the final checkpoint (``--no-export`` stops before it).

``--set`` overrides go to the training config (on a GPU: a larger ``model.widths``); the same YAML
serves both. ``--plan pretrain-tiny`` runs the whole recipe at toy size (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from gaitheat.atomic import atomic_write_text

log = logging.getLogger(__name__)

CONFIG = "pretrained-synth"


def experiment_config(out: Path, overrides: list[str]) -> Any:
    """``pretrained-synth`` pointed at the recipe's store, partition and run folder (then ``overrides``).

    The evaluation allows an incomplete store: a video whose walker extraction rejected (rare) is a
    missing cell, as in real CASIA-B, and the tiny plan has 3 views of 11. What was left out is
    recorded in ``evaluation.json`` (``complete``, ``left_out``).
    """
    from gaitheat.config import load_config
    from gaitheat.experiment import ExperimentConfig

    data, partition = out / "data", out / "data" / "partition.json"
    base = [f"data.root={data / 'store'}", f"data.partition={partition}", f"eval.partition={partition}",
            f"train.out={out / 'run'}", "eval.allow_incomplete=true"]
    return load_config(ExperimentConfig, CONFIG, base + list(overrides))


def run_recipe(out: str | Path, plan_name: str = "pretrain", workers: int = 2, overrides: list[str] | None = None,
               export: bool = True, progress: bool = True, export_dir: str | Path | None = None) -> dict[str, Any]:
    """Run (or resume) the recipe into ``out``; returns the summary written to ``OUT/recipe.json``.

    ``export_dir``: where the weights go (None: the package's own weights folder, what ships).
    """
    from gaitheat.checkpoint import find_resume
    from gaitheat.evaluate import evaluate_checkpoint
    from gaitheat.report import write_reports
    from gaitheat.synth.plan import build_plan, get_plan
    from gaitheat.train import train

    root = Path(out)
    plan = get_plan(plan_name)
    cfg = experiment_config(root, list(overrides or []))
    timings: dict[str, float] = {}

    started = time.perf_counter()
    data = build_plan(root / "data", plan, workers=workers, progress=progress)
    timings["data"] = time.perf_counter() - started

    started = time.perf_counter()
    checkpoint = train(cfg, resume=find_resume(cfg.train.out), progress=progress)
    timings["train"] = time.perf_counter() - started

    started = time.perf_counter()
    results = evaluate_checkpoint(checkpoint, cfg, progress=progress)
    if results is None:  # only on ranks other than 0 under torchrun
        return {}
    write_reports(results, root / "report", "casia-b")
    scores = {name: {"rank1": s["rank1"] / 100.0,
                     "per_view": [v / 100.0 for v in s["per_view"]["rank1"]]} for name, s in results["sets"].items()}
    evaluation = {"checkpoint": str(checkpoint), "views": results["views"], "sets": scores,
                  "complete": results.get("complete", True), "left_out": results.get("left_out")}
    atomic_write_text(root / "evaluation.json", json.dumps(evaluation, indent=1))
    timings["evaluate"] = time.perf_counter() - started

    summary: dict[str, Any] = {"plan": plan.to_dict(), "config": CONFIG, "overrides": list(overrides or []),
                               "data": data, "checkpoint": str(checkpoint), "evaluation": evaluation,
                               "seconds": timings}
    if export:
        from gaitheat.pretrained import export_pretrained

        recipe = {"command": "make pretrained", "config": CONFIG, "plan": plan.name, "overrides": summary["overrides"],
                  "train_seconds": round(timings["train"], 1),
                  "nm_rank1_11views": scores.get("NM", {}).get("rank1")}
        info = (export_pretrained(checkpoint, recipe=recipe) if export_dir is None
                else export_pretrained(checkpoint, export_dir, recipe=recipe))
        summary["export"] = {"weights": str(info.weights), "sha256": info.sha256, "bytes": info.size_bytes}
    atomic_write_text(root / "recipe.json", json.dumps(summary, indent=1, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaitheat.pretrain_recipe", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="pretrain_out", help="recipe folder (data, run, report); default pretrain_out")
    parser.add_argument("--plan", default="pretrain", help="synthesis plan: pretrain (default) or pretrain-tiny")
    parser.add_argument("--workers", type=int, default=2, help="processes for rendering and extraction (default 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training config value, e.g. --set model.widths=[32,64,128,256]")
    parser.add_argument("--no-export", action="store_true", help="stop after the evaluation")
    parser.add_argument("--export-dir", default=None,
                        help="write the exported weights here instead of into the package (what ships)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run_recipe(args.out, args.plan, max(1, args.workers), args.overrides, not args.no_export,
                             export_dir=args.export_dir)
    except ValueError as exc:  # unknown plan, another plan's build in --out, a bad override
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary.get(k) for k in ("checkpoint", "evaluation", "seconds", "export")}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
