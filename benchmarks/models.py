"""Cost of every registered model at its released config, on this machine, in one run.

For each model of the `paper` suite (:data:`gaitheat.compare.PAPER_SUITE`), built from its shipped
released-size experiment config with that config's classes:

* ``params``: parameter count;
* ``gflops_per_frame``: ``FlopCounterMode`` over ``embed`` (test-time augmentation included) on one
  sequence of ``--frames`` frames, divided by the frames;
* ``train_s_per_frame``: median wall time of a training step (forward, a loss over every output,
  backward, SGD update) over ``--batch`` sequences of the config's training frame count, per frame;
* ``infer_ms_per_frame``: median wall time of ``for_inference().embed`` on one ``--frames``-frame
  sequence, per frame.

The per-frame training cost uses a small batch (``--batch``, default 4) instead of the released P x K
(up to 768 sequences), which a CPU cannot step in reasonable time; per-frame cost depends little on
the batch for these models. All inputs are synthetic in their real value ranges
(:func:`gaitheat.compare.synthetic_inputs`). Run under ``flock /tmp/gaitheat-heavy.lock``.

    .venv/bin/python benchmarks/models.py                 # table
    .venv/bin/python benchmarks/models.py --json          # last line: one JSON object {model: {...}}
    .venv/bin/python benchmarks/models.py --models gaitgraph,gaittr --steps 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gaitheat.compare import PAPER_SUITE, measure_costs


def _build(experiment: str) -> tuple[torch.nn.Module, object, int]:
    from gaitheat.config import load_config
    from gaitheat.experiment import ExperimentConfig
    from gaitheat.models import build_model

    cfg = load_config(ExperimentConfig, experiment, [])
    torch.manual_seed(0)
    classes = cfg.data.num_classes or 74
    model = build_model(cfg.model, classes)
    return model, cfg, classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(PAPER_SUITE), help="comma-separated suite entries")
    parser.add_argument("--batch", type=int, default=4, help="sequences per timed training step")
    parser.add_argument("--frames", type=int, default=30, help="frames of the timed inference sequence")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for name in args.models.split(","):
        if name not in PAPER_SUITE:
            parser.error(f"unknown model {name!r}; the suite has {', '.join(PAPER_SUITE)}")
        model, cfg, _ = _build(PAPER_SUITE[name][0])
        spec = model.config.spec()  # type: ignore[operator,union-attr]
        rows[name] = measure_costs(model, spec, args.batch, cfg.data.frames_train, args.frames, args.steps)  # type: ignore[attr-defined]
        print(f"{name:<16} done ({time.perf_counter() - started:.0f} s)", flush=True)
    header = f"{'model':<16}{'params':>12}{'GFLOPs/frame':>14}{'train s/frame':>15}{'infer ms/frame':>16}"
    print(header)
    for name, r in rows.items():
        print(f"{name:<16}{int(r['params']):>12,}{r['gflops_per_frame']:>14.4f}{r['train_s_per_frame']:>15.5f}"
              f"{r['infer_ms_per_frame']:>16.3f}")
    print(f"torch threads: {torch.get_num_threads()}; medians of {args.steps} training steps (batch {args.batch}) "
          f"and 5 inference passes ({args.frames} frames)")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
