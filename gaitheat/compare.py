"""Compare models the paper's way: train each (or take its checkpoint), evaluate all on one protocol, one table.

``compare(entries, out)`` loops over named experiment configs: :func:`gaitheat.train.train` (which
resumes from ``<out>/<name>/run/checkpoints``), then :func:`gaitheat.evaluate.evaluate_checkpoint`,
then :func:`measure_costs` on this machine. Each finished model writes ``<out>/<name>/result.json``
(atomically, last) keyed by a digest of its config and checkpoint, so an interrupted compare
continues where it stopped and a changed config redoes only that model. Nothing here knows a model
by name: every model is reached through its spec (inputs, frame policy) and ``embed``.

Outputs: ``compare.json`` (every model's results and costs, plus the paper's numbers under
``reference``), ``compare.csv`` (one row per model; paper columns prefixed ``paper_``) and
``compare.png`` (rank-1 per condition, measured bars only). The paper's numbers are never mixed
with measured ones: they live in their own labelled columns.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaitheat.atomic import atomic_open, atomic_write_text

log = logging.getLogger(__name__)

# The `paper` suite: entry name -> shipped experiment config (released size, cpu-small size)
PAPER_SUITE: dict[str, tuple[str, str]] = {
    "gaitheat": ("casia-b", "cpu-small"),
    "gaitheat-regen": ("gaitheat-regen", "gaitheat-regen-cpu-small"),
    "gaitgraph": ("gaitgraph", "gaitgraph-cpu-small"),
    "gaitgraph2": ("gaitgraph2", "gaitgraph2-cpu-small"),
    "gaittr": ("gaittr", "gaittr-cpu-small"),
    "gpgait": ("gpgait", "gpgait-cpu-small"),
    "skeletongait": ("skeletongait", "skeletongait-cpu-small"),
    "gaitbase": ("gaitbase", "gaitbase-cpu-small"),
}

# The paper's CASIA-B rank-1 (%), NM / BG / CL: Table 1, except gaitheat-regen from Table 4 (the row
# the paper labels "SkeletonGait": heatmaps regenerated from keypoints, SkeletonGait's way). The paper
# reports no CASIA-B number for SkeletonGait's own network.
PAPER_CASIA_B: dict[str, tuple[str, tuple[float, float, float]]] = {
    "gaitheat": ("Table 1", (98.22, 92.14, 74.15)),
    "gaitheat-regen": ("Table 4", (91.47, 76.59, 57.69)),
    "gaitgraph": ("Table 1", (86.37, 76.50, 65.24)),
    "gaitgraph2": ("Table 1", (80.29, 71.40, 63.80)),
    "gaittr": ("Table 1", (94.81, 87.65, 88.07)),
    "gpgait": ("Table 1", (93.59, 80.15, 69.30)),
    "gaitbase": ("Table 1", (97.60, 94.00, 77.40)),
}
CONDITIONS = ("NM", "BG", "CL")

# frame shapes of each input kind (gaitheat.inputs' table): what the cost measurements feed ``embed``
FRAME_SHAPES: dict[str, tuple[int, ...]] = {
    "heatmaps": (17, 64, 48),
    "regen_heatmaps": (17, 64, 48),
    "keypoints": (17, 3),
    "skeleton_maps": (2, 64, 64),
    "silhouettes": (64, 44),
}


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------ measurements


def synthetic_inputs(inputs: Mapping[str, str], b: int, t: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs of the declared kinds in their real value ranges: (b, t, *frame shape) float32.

    Keypoints: a standing figure in crop heatmap pixels with jitter and scores in [0.3, 1]; maps and
    silhouettes: values in [0, 1]. Costs do not depend on values except through data-dependent
    branches, which none of the models has.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for key, kind in inputs.items():
        shape = FRAME_SHAPES[kind]
        if kind == "keypoints":
            base = rng.uniform((14, 8), (34, 56), size=(b, 1, shape[0], 2))
            xy = base + rng.normal(0, 1.0, size=(b, t, shape[0], 2))
            x = np.concatenate([xy, rng.uniform(0.3, 1.0, size=(b, t, shape[0], 1))], -1)
        else:
            x = rng.random((b, t, *shape))
        out[key] = torch.from_numpy(x.astype(np.float32))
    return out


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops_per_frame(model: torch.nn.Module, inputs: Mapping[str, str], frames: int) -> float:
    """GFLOPs of one ``embed`` call on one sequence of ``frames`` frames, divided by ``frames``.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions; one
    multiply-add = 2 FLOPs), in eval mode, test-time augmentation included.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = synthetic_inputs(inputs, 1, frames)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.embed(**x)  # type: ignore[operator]
    finally:
        model.train(was_training)
    return counter.get_total_flops() / frames / 1e9


def _median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def infer_ms_per_frame(model: torch.nn.Module, inputs: Mapping[str, str], frames: int, repeats: int = 5) -> float:
    """Median wall time of ``for_inference()``'s ``embed`` on one ``frames``-frame sequence, per frame (ms)."""
    x = synthetic_inputs(inputs, 1, frames)
    infer = model.for_inference()  # type: ignore[operator]
    with torch.inference_mode():
        seconds = _median_seconds(lambda: infer.embed(**x), repeats)
    return 1000.0 * seconds / frames


def train_s_per_frame(
    model: torch.nn.Module,
    spec: Any,
    batch: int,
    frames: int,
    steps: int = 3,
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """Median wall time of one training step (forward, loss, backward, SGD update) per input frame (s).

    Args:
        batch: sequences per step (P x K x views of the experiment).
        frames: frames per sequence in training.
        loss_fn: ``(model output, labels) -> loss``; None: the sum of mean squares of every output
            (the same graph through the network; the loss itself is a negligible part of a step).
    """
    x = synthetic_inputs(spec.inputs, batch, frames)
    labels = torch.arange(batch) % max(batch // 2, 1)
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-6)
    model.train()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        out = model(**x)
        loss = loss_fn(out, labels) if loss_fn else sum(f.float().pow(2).mean() for f in out.features.values())
        loss.backward()  # type: ignore[union-attr]
        optimiser.step()

    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        seconds = _median_seconds(step, steps)
    finally:
        model.load_state_dict(state)  # the measurement leaves no trace on the weights
    return seconds / (batch * frames)


def measure_costs(
    model: torch.nn.Module, spec: Any, train_batch: int, train_frames: int, test_frames: int, steps: int = 3
) -> dict[str, float]:
    """params, gflops_per_frame, train_s_per_frame, infer_ms_per_frame of ``model`` on this machine (CPU)."""
    model = model.cpu()
    return {
        "params": count_parameters(model),
        "gflops_per_frame": gflops_per_frame(model, spec.inputs, test_frames),
        "train_s_per_frame": train_s_per_frame(model, spec, train_batch, train_frames, steps),
        "infer_ms_per_frame": infer_ms_per_frame(model, spec.inputs, test_frames),
    }


# ------------------------------------------------------------------------------------ the compare loop


def rank1_by_condition(results: Mapping[str, Any]) -> dict[str, float | None]:
    """NM/BG/CL rank-1 (%) of a CASIA-B-style results dict; None where a set is missing."""
    sets = results.get("sets", {})
    return {
        c: (float(sets[c]["rank1"]) if c in sets and sets[c].get("rank1") is not None else None) for c in CONDITIONS
    }


def run_entry(
    name: str,
    cfg: Any,
    out: Path,
    checkpoint: str | None = None,
    measure: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (unless ``checkpoint``), evaluate and measure one model; reuse ``<out>/<name>/result.json`` if current."""
    from gaitheat.config import to_dict

    folder = out / name
    marker = folder / "result.json"
    # a given checkpoint is identified by its bytes' size and time too: retrained in place, it is new
    stamp = None
    if checkpoint is not None:
        st = Path(checkpoint).stat()
        stamp = [st.st_size, st.st_mtime_ns]
    key = _digest([to_dict(cfg), checkpoint, stamp, measure])
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        saved = None
    if saved is not None and saved.get("key") == key:
        log.info("compare: %s already done (%s)", name, marker)
        return saved  # type: ignore[no-any-return]
    started = time.perf_counter()
    if checkpoint is None:
        from gaitheat.train import train

        cfg = replace(cfg, train=replace(cfg.train, out=str(folder / "run")))
        checkpoint = str(train(cfg))
    train_seconds = time.perf_counter() - started
    from gaitheat.evaluate import evaluate_checkpoint

    results = evaluate_checkpoint(checkpoint, cfg, progress=progress)
    if results is None:  # ranks other than 0 under torchrun
        return {}
    entry: dict[str, Any] = {
        "key": key,
        "name": name,
        "model": cfg.model.name,
        "checkpoint": checkpoint,
        "rank1": rank1_by_condition(results),
        "headline": results["headline"],
        "protocol": results["protocol"],
        "train_seconds": train_seconds,
        "steps": results.get("step"),
    }
    if measure:
        entry.update(_measure_entry(checkpoint, cfg))
    folder.mkdir(parents=True, exist_ok=True)
    from gaitheat.report import write_json

    write_json(results, folder / "evaluation.json")
    atomic_write_text(marker, json.dumps(_json_safe(entry), indent=1) + "\n")
    return entry


def _measure_entry(checkpoint: str, cfg: Any) -> dict[str, float]:
    from gaitheat.checkpoint import load_model

    model, _, _ = load_model(checkpoint, map_location="cpu")
    config: Any = model.config
    spec = config.spec()
    views = getattr(spec.frames, "views", 1)
    batch = cfg.data.batch_p * cfg.data.batch_k * views
    test_frames = getattr(cfg.data, "frames_test", 0) or cfg.data.frames_train
    return measure_costs(model, spec, batch, cfg.data.frames_train, test_frames)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def compare(
    entries: Mapping[str, Any],
    out: str | Path,
    checkpoints: Mapping[str, str] | None = None,
    measure: bool = True,
    progress: bool = True,
    keep_going: bool = False,
) -> dict[str, Any]:
    """Run every entry (name -> ExperimentConfig) and write the comparison; returns the summary dict.

    Args:
        checkpoints: entry name -> checkpoint to evaluate instead of training that entry.
        keep_going: record an entry whose data or config is unusable (``ValueError``, e.g. a store
            without the silhouettes a model reads) as ``{"error": ...}`` and go on; it is retried on
            the next run. Otherwise the error propagates.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    checkpoints = dict(checkpoints or {})
    rows: dict[str, dict[str, Any]] = {}
    for name, cfg in entries.items():
        log.info("compare: %s (%s)", name, cfg.model.name)
        try:
            rows[name] = run_entry(name, cfg, root, checkpoints.get(name), measure, progress)
        except ValueError as exc:  # a store without the sections this model reads, a bad partition, ...
            if not keep_going:
                raise
            log.error("compare: %s failed: %s", name, exc)
            rows[name] = {"name": name, "model": cfg.model.name, "error": str(exc)}
    summary = {"models": rows, "reference": reference_columns(list(rows)), "protocol": "casia-b"}
    write_outputs(summary, root)
    return summary


def reference_columns(names: list[str]) -> dict[str, dict[str, Any]]:
    """The paper's published CASIA-B rank-1 per model (only those it reports), with their source table."""
    return {
        n: {"source": PAPER_CASIA_B[n][0], **dict(zip(CONDITIONS, PAPER_CASIA_B[n][1], strict=True))}
        for n in names
        if n in PAPER_CASIA_B
    }


# ------------------------------------------------------------------------------------ outputs

COLUMNS = ("NM", "BG", "CL", "params", "GFLOPs/frame", "train s/frame", "infer ms/frame")


def table_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat row per model: measured columns, then the paper's (prefixed ``paper_``)."""
    out = []
    for name, m in summary["models"].items():
        row: dict[str, Any] = {"model": name, "arch": m.get("model"), "error": m.get("error", "")}
        row.update({c: m.get("rank1", {}).get(c) for c in CONDITIONS})
        for k in ("params", "gflops_per_frame", "train_s_per_frame", "infer_ms_per_frame"):
            row[k] = m.get(k)
        ref = summary["reference"].get(name, {})
        row.update({f"paper_{c}": ref.get(c) for c in CONDITIONS})
        row["paper_source"] = ref.get("source", "")
        out.append(row)
    return out


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def format_compare_table(summary: Mapping[str, Any]) -> str:
    """The side-by-side table: measured rank-1 and costs | the paper's rank-1 (labelled)."""
    header = ["model", "NM", "BG", "CL", "params", "GFLOPs/fr", "train s/fr", "infer ms/fr",
              "|", "paper NM", "BG", "CL"]
    lines = []
    body = []
    for r in table_rows(summary):
        body.append(
            [
                r["model"],
                _cell(r["NM"], ".2f"),
                _cell(r["BG"], ".2f"),
                _cell(r["CL"], ".2f"),
                _cell(r["params"], ","),
                _cell(r["gflops_per_frame"], ".4f"),
                _cell(r["train_s_per_frame"], ".5f"),
                _cell(r["infer_ms_per_frame"], ".3f"),
                "|",  # measured on the left, the paper's published figures on the right
                _cell(r["paper_NM"], ".2f"),
                _cell(r["paper_BG"], ".2f"),
                _cell(r["paper_CL"], ".2f"),
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    for row in [header, *body]:
        lines.append(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for r in table_rows(summary):
        if r["error"]:
            lines.append(f"{r['model']}: not run: {r['error']}")
    lines.append("Rank-1 (%) measured here on the same split and protocol; 'paper' columns: the GaitHeat paper's")
    lines.append("published CASIA-B numbers (Table 1; gaitheat-regen: Table 4), not measured here.")
    return "\n".join(lines)


def write_outputs(summary: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """``compare.json``, ``compare.csv``, ``compare.png`` and ``compare.txt`` in ``out``."""
    import csv
    import io

    paths = {
        "json": out / "compare.json",
        "csv": out / "compare.csv",
        "png": out / "compare.png",
        "txt": out / "compare.txt",
    }
    atomic_write_text(paths["json"], json.dumps(_json_safe(dict(summary)), indent=1) + "\n")
    rows = table_rows(summary)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["model"])
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["txt"], format_compare_table(summary) + "\n")
    plot_rank1(rows, paths["png"])
    return paths


def plot_rank1(rows: list[dict[str, Any]], path: Path) -> Path:
    """Grouped bars: measured rank-1 per condition for each model (paper numbers are not drawn)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(CONDITIONS)
    for i, cond in enumerate(CONDITIONS):
        values = [math.nan if r[cond] is None else r[cond] for r in rows]
        ax.bar([j + (i - 1) * width for j in range(len(rows))], values, width, label=cond, color=f"C{i}")
    ax.set_xticks(range(len(rows)), [r["model"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("rank-1 (%), measured")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    ax.set_title("Rank-1 per condition (CASIA-B protocol, measured here)")
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    return path


def load_entries(configs: list[str], overrides: list[str]) -> dict[str, Any]:
    """Experiment configs (shipped names or YAML paths) with ``overrides`` applied, keyed by entry name.

    An item may be ``NAME=CONFIG`` to name the entry; otherwise the name is the config's stem. The
    suite name ``paper`` expands to :data:`PAPER_SUITE` at released size, ``paper-cpu-small`` to its
    cpu-small size.
    """
    from gaitheat.config import load_config
    from gaitheat.experiment import ExperimentConfig

    named: list[tuple[str, str]] = []
    for item in configs:
        if item in ("paper", "paper-cpu-small"):
            size = 0 if item == "paper" else 1
            named += [(name, pair[size]) for name, pair in PAPER_SUITE.items()]
        elif "=" in item:
            name, config = item.split("=", 1)
            named.append((name, config))
        else:
            named.append((Path(item).stem, item))
    names = [n for n, _ in named]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"compare: entry names must be unique, repeated: {duplicates} (use NAME=CONFIG)")
    return {name: load_config(ExperimentConfig, config, overrides) for name, config in named}
