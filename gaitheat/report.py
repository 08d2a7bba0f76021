"""Readable evaluation results: the paper's table layout, JSON, CSV, a per-view heatmap and CMC curves.

Input is the results dict of :func:`gaitheat.evaluate.evaluate_embeddings` /
:func:`~gaitheat.evaluate.evaluate_checkpoint` (all values percentages). Terminal tables follow the
GaitHeat paper: Table 1 for CASIA-B (NM/BG/CL/Mean R-1) and CCPG (CL/UP/DN/BG: the re-ID R-1 & mAP
pair that Table 1 reports is the headline, the gait-style R-1 with identical views excluded beside it,
every Rank-1 variant labelled in the text, JSON and CSV), Table 2 for SUSTech1K (8 covariates +
Overall R-1/R-5). A run that left cells out (``--allow-incomplete``) lists them in the text report
and the JSON (``left_out``). Plots use matplotlib's Agg canvas directly, so no display and no global
backend switch are needed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gaitheat.atomic import atomic_open, atomic_write_text

TITLES = {"casia-b": "CASIA-B", "ccpg": "CCPG", "sustech1k": "SUSTech1K", "custom": "custom protocol"}


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.2f}"


def format_table(header: Sequence[str], rows: Sequence[tuple[str, Sequence[Any]]]) -> str:
    """Right-aligned text table: ``header`` = column names after the row label."""
    labels = [label for label, _ in rows]
    first = max([len(s) for s in labels] + [0])
    cells = [[_fmt(v) for v in values] for _, values in rows]
    width = max([len(h) for h in header] + [len(c) for row in cells for c in row] + [5])
    lines = [" " * first + "".join(f"  {h:>{width}}" for h in header)]
    for label, row in zip(labels, cells, strict=True):
        lines.append(f"{label:<{first}}" + "".join(f"  {c:>{width}}" for c in row))
    return "\n".join(lines)


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    """(columns, labelled rows) of the protocol's headline table."""
    sets = results["sets"]
    names = list(sets)
    protocol = results["protocol"]
    view_rule = "identical views excluded" if results.get("exclude_identical_view", True) else "all view pairs"
    if protocol == "sustech1k":
        cols = [n for n in names if n != "Overall"]
        head = results["headline"]
        label = f"Rank-1 (Overall: R-1, R-5), {view_rule}"
        return [*cols, "R-1", "R-5"], [(label, [sets[c]["rank1"] for c in cols] + [head.get("R-1"), head.get("R-5")])]
    cols = list(names) + (["Mean"] if "Mean" in results["headline"] else [])
    rows: list[tuple[str, list[Any]]] = []
    reid_headline = results.get("headline_family") == "reid"
    if reid_headline:  # CCPG: the paper's Table 1 pairs re-ID R-1 with mAP
        rows += [("Re-ID R-1, same subject+view removed (headline)", [sets[c].get("reid", {}).get("rank1")
                                                                      for c in names]),
                 ("Re-ID mAP (headline)", [sets[c].get("reid", {}).get("mAP") for c in names])]
    rows.append((f"Gait R-1, {view_rule}" + ("" if reid_headline else " (headline)" if protocol == "ccpg" else ""),
                 [results["headline"].get(c, sets.get(c, {}).get("rank1")) for c in cols]))
    if 5 in results.get("ranks", []) and protocol != "casia-b":
        rows.append((f"Gait R-5, {view_rule}", [sets[c].get("rank5") for c in names]))
    if protocol in ("ccpg", "custom"):
        rows.append(("Gait R-1, identical views included", [sets[c]["rank1_incl_identical"] for c in names]))
    if any("reid" in sets[c] for c in names):
        reid_rows = (("mINP", "Re-ID mINP"),) if reid_headline else (
            ("rank1", "Re-ID R-1 (same subject+view removed)"), ("mAP", "Re-ID mAP"), ("mINP", "Re-ID mINP"))
        for key, label in reid_rows:
            rows.append((label, [sets[c].get("reid", {}).get(key) for c in names]))
    return cols, rows


def format_results(results: dict[str, Any], per_view: bool = True) -> str:
    """The terminal report: a context line, the paper-layout table and (optionally) per-view Rank-1."""
    title = TITLES.get(results["protocol"], results["protocol"])
    lines = [f"{title}: {results.get('num_sequences', '?')} sequences of {results.get('num_subjects', '?')} "
             f"test subjects, {results['distance']} distance"]
    if "checkpoint" in results:
        domain = f"{results['trained_on']} -> {results['protocol']}" + (" (cross-domain)"
                                                                         if results.get("cross_domain") else "")
        lines.append(f"checkpoint {results['checkpoint']} (step {results['step']}), {domain}, "
                     f"gamma {results['gamma_deg']:g} deg")
    if results.get("left_out"):
        lines.append("INCOMPLETE store, evaluated without: " + describe_left_out(results["left_out"]))
    cols, rows = summary_rows(results)
    lines += ["", format_table(cols, rows)]
    if results.get("headline_label"):
        lines.append(f"headline: {results['headline_label']}")
    if per_view:
        names = list(results["sets"])
        views = results["views"]
        table = [(v, [results["sets"][n]["per_view"]["rank1"][i] for n in names]) for i, v in enumerate(views)]
        lines += ["", "Rank-1 per probe view (mean over gallery views)", format_table(names, table)]
    return "\n".join(lines)


def describe_left_out(left_out: dict[str, Any], limit: int = 10) -> str:
    """One line from the ``left_out`` entry of a results dict (subjects, conditions, views, unreadable files)."""
    parts = []
    for key in ("subjects", "conditions", "views"):
        items = [str(x) for x in left_out.get(key, [])]
        if items:
            more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {key} ({', '.join(items[:limit])}{more})")
    bad = left_out.get("unreadable", [])
    if bad:
        parts.append(f"{len(bad)} unreadable files (" + ", ".join(f"{b['path']}: {b['reason']}" for b in bad[:limit])
                     + (" ..." if len(bad) > limit else "") + ")")
    return "; ".join(parts) or "nothing"


def summary_numbers(results: dict[str, Any]) -> dict[str, float]:
    """Flat ``label -> value`` view of a run (every labelled number), for side-by-side comparison."""
    rule = "excl. identical views" if results.get("exclude_identical_view", True) else "all view pairs"
    out: dict[str, float] = {}
    for name, s in results["sets"].items():
        out[f"{name} gait R-1, {rule}"] = s["rank1"]
        if "rank5" in s:
            out[f"{name} gait R-5, {rule}"] = s["rank5"]
        if results["protocol"] in ("ccpg", "custom"):
            out[f"{name} gait R-1, incl. identical views"] = s["rank1_incl_identical"]
        for key in ("rank1", "mAP", "mINP"):
            if key in s.get("reid", {}):
                out[f"{name} re-ID {key.replace('rank1', 'R-1')}"] = s["reid"][key]
    if "Mean" in results["headline"]:
        out["Mean R-1 (NM, BG, CL)"] = results["headline"]["Mean"]
    return {k: float("nan") if v is None else float(v) for k, v in out.items()}


def format_compare(a: dict[str, Any], b: dict[str, Any], names: Sequence[str] = ("A", "B")) -> str:
    """Two runs side by side with the difference B − A (rows present in either run)."""
    na, nb = summary_numbers(a), summary_numbers(b)
    keys = list(na) + [k for k in nb if k not in na]
    rows = [(k, [na.get(k), nb.get(k), _diff(na.get(k), nb.get(k))]) for k in keys]
    lines = [f"{names[0]}: {_describe(a)}", f"{names[1]}: {_describe(b)}", ""]
    return "\n".join([*lines, format_table(["A", "B", "B-A"], rows)])


def _diff(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None else y - x


def _describe(results: dict[str, Any]) -> str:
    where = results.get("checkpoint", "embeddings")
    return f"{TITLES.get(results['protocol'], results['protocol'])}, {where} (step {results.get('step', '?')})"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; None reads back as "no value"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(results: dict[str, Any], path: str | Path) -> Path:
    """Write the results as strict JSON (NaN -> null), atomically."""
    atomic_write_text(path, json.dumps(_json_safe(results), indent=1, allow_nan=False) + "\n")
    return Path(path)


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results JSON written by :func:`write_json`; ``ValueError`` naming the file otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable results JSON ({exc})") from exc
    if not isinstance(data, dict) or not {"protocol", "sets", "headline"} <= set(data):
        raise ValueError(f"{path}: not a gaitheat evaluation result (needs protocol, sets, headline)")
    return data


def csv_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Long-format rows: protocol, set, metric, probe_view, gallery_view, value."""
    protocol, views = results["protocol"], results["views"]
    rule = "excl_identical" if results.get("exclude_identical_view", True) else "all_views"
    if results.get("headline_family") == "reid":  # CCPG: re-ID R-1 & mAP, as the paper's Table 1
        rows = [{"set": name, "metric": f"headline_reid_{key}", "value": s.get("reid", {}).get(key)}
                for name, s in results["sets"].items() for key in ("rank1", "mAP")]
    else:
        rows = [{"set": name, "metric": "headline", "value": v} for name, v in results["headline"].items()]
    names = {"rank1": f"gait_rank1_{rule}", "rank5": f"gait_rank5_{rule}",
             "rank1_incl_identical": "gait_rank1_incl_identical"}
    for name, s in results["sets"].items():
        for key in ("rank1", "rank5", "rank1_incl_identical"):
            if key in s:
                rows.append({"set": name, "metric": names[key], "value": s[key]})
        for key, value in s.get("reid", {}).items():
            if key != "cmc":
                rows.append({"set": name, "metric": f"reid_{key}", "value": value})
        for k, value in enumerate(s["cmc"], 1):
            rows.append({"set": name, "metric": f"cmc@{k}", "value": value})
        for key, per_view in s["per_view"].items():
            rows += [{"set": name, "metric": f"{key}_per_view", "probe_view": v, "value": x}
                     for v, x in zip(views, per_view, strict=True)]
        for key, matrix in s["matrix"].items():
            for i, row in enumerate(matrix):
                rows += [{"set": name, "metric": f"{key}_cell", "probe_view": views[i], "gallery_view": views[j],
                          "value": x} for j, x in enumerate(row)]
    for row in rows:
        row["protocol"] = protocol
        value = row["value"]
        row["value"] = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
    return rows


def write_csv(results: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`csv_rows` as CSV, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["protocol", "set", "metric", "probe_view", "gallery_view", "value"],
                            restval="")
    writer.writeheader()
    writer.writerows(csv_rows(results))
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _save_figure(fig: Any, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    return Path(path)


def plot_view_matrices(results: dict[str, Any], path: str | Path) -> Path:
    """PNG of the Rank-1 (probe view x gallery view) matrix of every probe set."""
    import numpy as np
    from matplotlib.figure import Figure

    sets, views = results["sets"], results["views"]
    cols = min(3, len(sets))
    nrows = math.ceil(len(sets) / cols)
    size = max(3.2, 0.38 * len(views) + 1.5)
    fig = Figure(figsize=(size * cols * 1.25, size * nrows), layout="constrained")
    for i, (name, s) in enumerate(sets.items()):
        ax = fig.add_subplot(nrows, cols, i + 1)
        acc = np.array([[np.nan if x is None else x for x in row] for row in s["matrix"]["rank1"]], dtype=float)
        image = ax.imshow(acc, vmin=0, vmax=100, cmap="viridis")
        if len(views) <= 12:
            for (r, c), value in np.ndenumerate(acc):
                if np.isfinite(value):
                    ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if value < 60 else "black")
        ax.set_xticks(range(len(views)), views, rotation=90, fontsize=7)
        ax.set_yticks(range(len(views)), views, fontsize=7)
        ax.set_xlabel("gallery view")
        ax.set_ylabel("probe view")
        ax.set_title(f"{name}: R-1 {_fmt(s['rank1'])}%", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{TITLES.get(results['protocol'], results['protocol'])} Rank-1 (%) per view pair")
    return _save_figure(fig, path)


def plot_cmc(results: dict[str, Any], path: str | Path) -> Path:
    """PNG of the CMC curves: gait-style (solid) and, where computed, re-ID style (dashed)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, s) in enumerate(results["sets"].items()):
        color = f"C{i % 10}"
        ranks = range(1, len(s["cmc"]) + 1)
        ax.plot(ranks, [math.nan if v is None else v for v in s["cmc"]], color=color, marker=".", label=f"{name} gait")
        if "reid" in s:
            ax.plot(ranks, [math.nan if v is None else v for v in s["reid"]["cmc"]], color=color, linestyle="--",
                    label=f"{name} re-ID")
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (%)")
    ax.set_ylim(0, 101)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{TITLES.get(results['protocol'], results['protocol'])} CMC")
    return _save_figure(fig, path)


def write_reports(results: dict[str, Any], out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write ``<stem>.json``, ``.csv``, ``.views.png`` and ``.cmc.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "json": write_json(results, out / f"{stem}.json"),
        "csv": write_csv(results, out / f"{stem}.csv"),
        "views_png": plot_view_matrices(results, out / f"{stem}.views.png"),
        "cmc_png": plot_cmc(results, out / f"{stem}.cmc.png"),
    }
