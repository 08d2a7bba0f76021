"""Benchmark evaluation protocols as data: which sequences are gallery, which are probes, what is reported.

Each :class:`Protocol` names its subject split (a shipped partition), its gallery rule, its *named*
probe sets, how conditions are matched (exact names or substrings), how view names are read, the
ranks reported, and the PGHA threshold γ of its dataset. :func:`evaluate_embeddings` applies a
protocol to (N, D, P) embeddings and their labels with :mod:`gaitheat.metrics` (pure, no model);
:mod:`gaitheat.evaluate` produces the embeddings from a checkpoint and a store.

References (what the GaitHeat paper's tables use; evaluation_protocols.md §2, gaitheat_spec.md §5):

* **CASIA-B** — Yu et al., "A Framework for Evaluating the Effect of View Angle, Clothing and
  Carrying Condition on Gait Recognition", ICPR 2006. 124 subjects, 11 views (000-180), 10
  sequences per view (nm-01..06, bg-01..02, cl-01..02). Test subjects 075-124 (50). Gallery nm-01..04;
  probes NM (nm-05/06), BG (bg-01/02), CL (cl-01/02); Rank-1 per (probe view, gallery view),
  identical views excluded, averaged over the 11 probe views (OpenGait single-view gallery).
* **CCPG** — Li et al., "An In-Depth Exploration of Person Re-Identification and Gait Recognition
  in Cloth-Changing Conditions", CVPR 2023. 200 subjects, test 100-199. Types ``U{top}_D{bottom}``
  with an optional ``_BG``; views are the view folder name before the first ``_``. Two families,
  both reported and labelled: re-ID style R-1/mAP/mINP (gallery items of the probe's subject *and*
  view removed) and gait-style Rank-1 per view pair with identical views excluded (and included).
  The headline is the re-ID R-1 paired with mAP, the pair the GaitHeat paper's Table 1 reports
  ("R-1 & mAP"; only the re-ID evaluation produces mAP); the gait-style R-1 excluding identical
  views, the number the CCPG maintainers quote for gait, is kept beside it.
* **SUSTech1K** — Shen et al., "LidarGait: Benchmarking 3D Gait Recognition with Point Clouds",
  CVPR 2023. 1050 subjects, 250 train / 800 test. Gallery: types containing ``00-nm``; probe groups
  by *substring* of the type (overlapping: a sequence with several covariates counts in each);
  Rank-1 and Rank-5, identical views excluded.
* **custom** — a user's own data: gallery and probe conditions named in the experiment YAML
  (``eval.gallery``, ``eval.probes``), matched as shell-style patterns (``nm-0[56]``).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gaitheat import metrics
from gaitheat.metrics import Metric

log = logging.getLogger(__name__)

CMC_RANKS = 20  # length of the stored CMC curves
MatchRule = Literal["exact", "substring", "glob"]
ViewRule = Literal["full", "before_underscore"]
HeadlineFamily = Literal["gait", "reid"]
# what each number of a results dict is, for reports (text, JSON, CSV)
LABELS = {
    "gait_rank1": "gait-style Rank-1 per (probe view, gallery view), identical views excluded, mean over probe views",
    "gait_rank1_all_views": "gait-style Rank-1 per (probe view, gallery view), all view pairs, mean over probe views",
    "gait_rank1_incl_identical": "gait-style Rank-1, identical views included (full view matrix)",
    "gait_rank5": "gait-style Rank-5, same view rule as gait Rank-1",
    "reid_rank1": "re-ID style Rank-1: every probe against the whole gallery, gallery items of the probe's "
                  "subject and view removed",
    "reid_mAP": "re-ID style mean average precision (same removal as re-ID Rank-1)",
    "reid_mINP": "re-ID style mean inverse negative penalty",
}


@dataclass(frozen=True)
class ProbeSet:
    """A named probe subset and the gallery it is matched against.

    Attributes:
        name: short column label, e.g. ``NM`` or ``CL``.
        conditions: condition (type) names or patterns selecting the probes.
        gallery: condition names or patterns of its gallery; empty = the protocol's gallery.
        description: one line for reports.
    """

    name: str
    conditions: tuple[str, ...]
    gallery: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Protocol:
    """One benchmark's evaluation protocol (see the module docstring for the references).

    Attributes:
        name: ``casia-b`` | ``ccpg`` | ``sustech1k`` | ``custom``.
        reference: citation of the benchmark and of the protocol's source.
        partition: shipped partition name giving the test subjects ("" = decided by the caller).
        gallery: default gallery conditions of every probe set.
        probes: the named probe sets, in the paper's column order.
        match: how conditions are matched: exact name, substring (SUSTech1K) or shell pattern.
        view_rule: ``before_underscore`` keeps the view name up to its first ``_`` (CCPG).
        ranks: gait-style ranks reported (1 for CASIA-B/CCPG, 1 and 5 for SUSTech1K).
        exclude_identical_view: drop the probe view == gallery view cell when averaging.
        reid: also compute re-ID style R-1/mAP/mINP (CCPG, custom).
        overall: name of the probe set reported as "Overall" with its R-1/R-5 (SUSTech1K), or "".
        mean_column: report the mean over probe sets as a "Mean" column (CASIA-B).
        gamma_deg: PGHA threshold γ of this dataset (paper §3.2: 5° CASIA-B/SUSTech1K, 20° CCPG);
            used at test time, also when a checkpoint from another dataset is evaluated here.
        expected_views: the benchmark's views, to warn when the store has others ("" = any).
        headline_family: which numbers the paper's table reports: ``gait`` (gait-style R-1 per probe
            set) or ``reid`` (re-ID R-1 paired with mAP per probe set, CCPG).
    """

    name: str
    reference: str
    partition: str
    gallery: tuple[str, ...]
    probes: tuple[ProbeSet, ...]
    match: MatchRule = "exact"
    view_rule: ViewRule = "full"
    ranks: tuple[int, ...] = (1,)
    exclude_identical_view: bool = True
    reid: bool = False
    overall: str = ""
    mean_column: bool = False
    gamma_deg: float = 5.0
    expected_views: tuple[str, ...] = ()
    headline_family: HeadlineFamily = "gait"

    def gallery_of(self, probe_set: ProbeSet) -> tuple[str, ...]:
        return probe_set.gallery or self.gallery


CASIA_B = Protocol(
    name="casia-b",
    reference="CASIA-B (Yu et al., ICPR 2006); OpenGait evaluate_indoor_dataset, single-view gallery",
    partition="casia-b",
    gallery=("nm-01", "nm-02", "nm-03", "nm-04"),
    probes=(
        ProbeSet("NM", ("nm-05", "nm-06"), description="normal walking"),
        ProbeSet("BG", ("bg-01", "bg-02"), description="carrying a bag"),
        ProbeSet("CL", ("cl-01", "cl-02"), description="wearing a coat"),
    ),
    mean_column=True,
    gamma_deg=5.0,
    expected_views=tuple(f"{a:03d}" for a in range(0, 181, 18)),
)

CCPG = Protocol(
    name="ccpg",
    reference="CCPG (Li et al., CVPR 2023); OpenGait evaluate_CCPG",
    partition="ccpg",
    gallery=(),
    probes=(
        ProbeSet("CL", ("U0_D0_BG", "U0_D0"), ("U1_D1", "U2_D2", "U3_D3"), "full clothes change"),
        ProbeSet("UP", ("U3_D3",), ("U0_D3",), "same trousers, different top"),
        ProbeSet("DN", ("U1_D0",), ("U1_D1",), "same top, different trousers"),
        ProbeSet("BG", ("U0_D0_BG",), ("U0_D0",), "same clothes, with a bag"),
    ),
    view_rule="before_underscore",
    reid=True,
    gamma_deg=20.0,
    headline_family="reid",  # the paper's Table 1: "R-1 & mAP" per probe set
)

SUSTECH1K = Protocol(
    name="sustech1k",
    reference="SUSTech1K (Shen et al., LidarGait, CVPR 2023); OpenGait evaluate_indoor_dataset",
    partition="sustech1k",
    gallery=("00-nm",),
    probes=(
        ProbeSet("NM", ("01-nm",), description="Normal"),
        ProbeSet("BG", ("bg",), description="Bag"),
        ProbeSet("CL", ("cl",), description="Clothing"),
        ProbeSet("CA", ("cr",), description="Carrying"),
        ProbeSet("UM", ("ub",), description="Umbrella"),
        ProbeSet("UN", ("uf",), description="Uniform"),
        ProbeSet("OC", ("oc",), description="Occlusion"),
        ProbeSet("NG", ("nt",), description="Night"),
        ProbeSet("Overall", ("01", "02", "03", "04"), description="all probe sequences"),
    ),
    match="substring",
    ranks=(1, 5),
    overall="Overall",
    gamma_deg=5.0,
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (CASIA_B, CCPG, SUSTECH1K)}


def get_protocol(name: str) -> Protocol:
    """A shipped benchmark protocol by name (``casia-b``, ``ccpg``, ``sustech1k``)."""
    key = name.lower().replace("_", "-")
    if key not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; shipped: {sorted(PROTOCOLS)}, or 'custom' with eval.gallery")
    return PROTOCOLS[key]


def custom_protocol(
    gallery: Sequence[str],
    probes: Mapping[str, Sequence[str]],
    exclude_identical_view: bool = True,
    gamma_deg: float = 5.0,
    ranks: Sequence[int] = (1, 5),
) -> Protocol:
    """A protocol for a user's own dataset: gallery and named probe sets of condition patterns.

    Args:
        gallery: condition names or shell patterns of the gallery, e.g. ``["nm-0[1-4]"]``.
        probes: probe set name -> condition patterns, e.g. ``{"NM": ["nm-05", "nm-06"]}``.
        exclude_identical_view: drop identical views when averaging (set False for one-view data).
        gamma_deg: PGHA threshold used at test time.
    """
    if not gallery:
        raise ValueError("the custom protocol needs gallery conditions (eval.gallery in the YAML, or "
                         "--set 'eval.gallery=[nm-01]'); for a benchmark use --protocol casia-b|ccpg|sustech1k")
    if not probes:
        raise ValueError("the custom protocol needs at least one probe set (eval.probes in the YAML)")
    for name, conditions in probes.items():
        if not conditions:
            raise ValueError(f"custom probe set {name!r} names no conditions")
    return Protocol(
        name="custom",
        reference="user-defined protocol (eval.gallery / eval.probes)",
        partition="",
        gallery=tuple(gallery),
        probes=tuple(ProbeSet(name, tuple(conds)) for name, conds in probes.items()),
        match="glob",
        ranks=tuple(ranks),
        exclude_identical_view=exclude_identical_view,
        reid=True,
        gamma_deg=gamma_deg,
    )


def select_conditions(conditions: Sequence[str] | np.ndarray, patterns: Sequence[str], rule: MatchRule) -> np.ndarray:
    """(N,) bool: which conditions are selected by any of ``patterns`` under ``rule``.

    ``exact`` compares whole names, ``substring`` finds a pattern anywhere in the name (SUSTech1K's
    ``bg`` selects ``01-bg-nt``), ``glob`` uses shell patterns (``nm-0[56]``).
    """
    names = [str(c) for c in conditions]
    if rule == "exact":
        wanted = set(patterns)
        return np.array([c in wanted for c in names], dtype=bool)
    if rule == "substring":
        return np.array([any(p in c for p in patterns) for c in names], dtype=bool)
    if rule == "glob":
        return np.array([any(fnmatch.fnmatchcase(c, p) for p in patterns) for c in names], dtype=bool)
    raise ValueError(f"unknown condition match rule {rule!r}")


def view_key(view: str, rule: ViewRule) -> str:
    """The view name a protocol compares: CCPG keeps only the part before the first ``_``."""
    if rule == "before_underscore":
        return view.split("_", 1)[0]
    return view


def evaluation_subjects(protocol: Protocol, partition: str = "") -> list[str] | None:
    """Test subject ids: from ``partition`` (name or JSON path) or the protocol's; None = all subjects."""
    from gaitheat.datasets.partition import load_partition

    source = partition or protocol.partition
    if not source:
        return None
    return load_partition(source)[1]


def evaluate_embeddings(
    protocol: Protocol,
    embeddings: np.ndarray,
    subjects: Sequence[str],
    conditions: Sequence[str],
    views: Sequence[str],
    metric: Metric = "euc",
) -> dict[str, Any]:
    """All numbers of a protocol from (N, D, P) embeddings and their labels (no model involved).

    Returns:
        ``{"protocol", "distance", "views", "sets": {name: {...}}, "headline": {...}}``; every value is
        a percentage. Per set: ``rank1`` (and ``rank5``) gait-style with the protocol's view rule,
        ``rank1_incl_identical``, ``per_view`` and ``matrix`` (probe view x gallery view, per reported rank),
        ``cmc`` (gait-style, ranks 1..20) and, for re-ID protocols, ``reid`` with rank1/mAP/mINP/cmc.
    """
    subjects_a, conditions_a = np.asarray(subjects).astype(str), np.asarray(conditions).astype(str)
    view_names = np.array([view_key(str(v), protocol.view_rule) for v in views])
    view_list = sorted(set(view_names.tolist()))
    if protocol.expected_views and set(view_list) != set(protocol.expected_views):
        log.warning("%s expects views %s; the evaluated sequences have %s", protocol.name,
                    list(protocol.expected_views), view_list)
    sets = {}
    for probe_set in protocol.probes:
        probes = select_conditions(conditions_a, probe_set.conditions, protocol.match)
        gallery = select_conditions(conditions_a, protocol.gallery_of(probe_set), protocol.match)
        if (probes & gallery).any():
            log.warning("%s: %d sequences are both probe and gallery", probe_set.name, int((probes & gallery).sum()))
        sets[probe_set.name] = _evaluate_set(protocol, embeddings, subjects_a, view_names, view_list,
                                             probes, gallery, metric)
        sets[probe_set.name]["description"] = probe_set.description
    return {"protocol": protocol.name, "reference": protocol.reference, "distance": metric, "views": view_list,
            "num_sequences": len(subjects_a), "num_subjects": len(set(subjects_a.tolist())),
            "exclude_identical_view": protocol.exclude_identical_view, "ranks": list(protocol.ranks),
            "sets": sets, "headline": headline(protocol, sets), "headline_family": protocol.headline_family,
            "headline_label": headline_label(protocol), "beside_headline": beside_headline(protocol, sets),
            "labels": field_labels(protocol)}


def headline_label(protocol: Protocol) -> str:
    """One line saying what the headline numbers are."""
    if protocol.headline_family == "reid":
        return ("re-ID style Rank-1 paired with mAP (gallery items of the probe's subject and view removed), as "
                "the GaitHeat paper's Table 1 reports CCPG; gait-style Rank-1 (identical views excluded) beside it")
    rule = "identical views excluded" if protocol.exclude_identical_view else "all view pairs"
    return f"gait-style Rank-1 per probe set ({rule}), mean over probe views"


def beside_headline(protocol: Protocol, sets: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Numbers reported next to a re-ID headline: gait-style R-1 with identical views excluded (CCPG)."""
    if protocol.headline_family != "reid":
        return {}
    rule = "identical views excluded" if protocol.exclude_identical_view else "all view pairs"
    return {f"{name} gait R-1, {rule}": s["rank1"] for name, s in sets.items()}


def field_labels(protocol: Protocol) -> dict[str, str]:
    """What the per-set keys of a results dict mean (``sets[name][key]``), for readers of the JSON."""
    rank1 = LABELS["gait_rank1"] if protocol.exclude_identical_view else LABELS["gait_rank1_all_views"]
    out = {"rank1": rank1, "rank1_incl_identical": LABELS["gait_rank1_incl_identical"]}
    if 5 in protocol.ranks:
        out["rank5"] = LABELS["gait_rank5"]
    if protocol.reid:
        out.update({"reid.rank1": LABELS["reid_rank1"], "reid.mAP": LABELS["reid_mAP"],
                    "reid.mINP": LABELS["reid_mINP"]})
    return out


def _evaluate_set(protocol: Protocol, emb: np.ndarray, subjects: np.ndarray, views: np.ndarray,
                  view_list: list[str], probes: np.ndarray, gallery: np.ndarray, metric: Metric
                  ) -> dict[str, Any]:
    acc = metrics.cross_view_accuracy(emb[probes], emb[gallery], subjects[probes], subjects[gallery], views[probes],
                                      views[gallery], view_list, max_rank=CMC_RANKS, metric=metric)
    per_view = metrics.view_average(acc, protocol.exclude_identical_view)  # (V, ranks)
    cmc = metrics.mean_over_views(per_view)
    out: dict[str, Any] = {
        "num_probes": int(probes.sum()), "num_gallery": int(gallery.sum()),
        "rank1_incl_identical": metrics.mean_over_views(metrics.view_average(acc[..., 0], False)),
        "per_view": {f"rank{k}": per_view[:, k - 1].tolist() for k in protocol.ranks},
        "matrix": {f"rank{k}": acc[..., k - 1].tolist() for k in protocol.ranks},
        "cmc": np.asarray(cmc).tolist(),
    }
    for k in protocol.ranks:
        out[f"rank{k}"] = float(np.asarray(cmc)[k - 1])
    if protocol.reid:
        res = metrics.retrieval_metrics(emb[probes], emb[gallery], subjects[probes], subjects[gallery],
                                        views[probes], views[gallery], metric=metric, max_rank=CMC_RANKS)
        out["reid"] = {"rank1": 100 * float(res.cmc[0]), "mAP": 100 * res.mean_ap, "mINP": 100 * res.mean_inp,
                       "cmc": (100 * res.cmc).tolist(), "num_valid": res.num_valid}
    return out


def headline(protocol: Protocol, sets: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The cells of the paper's table, keyed by their column labels.

    Gait protocols: gait-style R-1 per probe set (+ Mean for CASIA-B, + Overall R-1/R-5 for
    SUSTech1K). CCPG (``headline_family="reid"``): ``"<set> re-ID R-1"`` and ``"<set> re-ID mAP"``
    per probe set, as the paper's Table 1 pairs them; the gait-style R-1 is in
    :func:`beside_headline`.
    """
    if protocol.headline_family == "reid":
        out = {}
        for name, s in sets.items():
            reid = s.get("reid", {})
            out[f"{name} re-ID R-1"] = reid.get("rank1", float("nan"))
            out[f"{name} re-ID mAP"] = reid.get("mAP", float("nan"))
        return out
    cells = {name: s["rank1"] for name, s in sets.items() if name != protocol.overall}
    if protocol.mean_column:
        cells["Mean"] = float(np.mean(list(cells.values())))
    if protocol.overall:
        overall = sets[protocol.overall]
        cells.update({"R-1": overall["rank1"], "R-5": overall.get("rank5", float("nan"))})
    return cells


@dataclass(frozen=True)
class MissingCells:
    """What a store lacks for a benchmark protocol (all empty = complete).

    Attributes:
        subjects: test subjects of the partition without any sequence.
        conditions: conditions the protocol uses (SUSTech1K: its probe-set substrings, as
            ``"NG ('nt')"``) without any sequence of the test subjects.
        views: the benchmark's views (CASIA-B's 11) without any sequence of the test subjects.
        unreadable: (path, reason) of test-subject files in the store that cannot be read.
    """

    subjects: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    views: tuple[str, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.subjects or self.conditions or self.views or self.unreadable)

    def describe(self, expected_subjects: int = 0, limit: int = 10) -> str:
        """One line listing every kind of gap (the first ``limit`` names of each)."""
        def names(items: Sequence[str]) -> str:
            more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = []
        if self.subjects:
            of = f" of {expected_subjects}" if expected_subjects else ""
            parts.append(f"{len(self.subjects)}{of} test subjects ({names(self.subjects)})")
        if self.conditions:
            parts.append(f"conditions {names(self.conditions)}")
        if self.views:
            parts.append(f"views {names(self.views)}")
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable files ("
                         + names([f"{p}: {r}" for p, r in self.unreadable]) + ")")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the cells left out of an evaluation."""
        return {"subjects": list(self.subjects), "conditions": list(self.conditions), "views": list(self.views),
                "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable]}


def protocol_conditions(protocol: Protocol) -> list[tuple[str, str]]:
    """(label, pattern) of every condition or condition pattern a protocol selects, gallery first."""
    patterns: list[tuple[str, str]] = []

    def add(label: str, pattern: str) -> None:
        if all(p != pattern for _, p in patterns):
            patterns.append((label, pattern))

    for c in protocol.gallery:
        add(c if protocol.match == "exact" else f"gallery ({c!r})", c)
    for probe_set in protocol.probes:
        for c in protocol.gallery_of(probe_set):
            add(c if protocol.match == "exact" else f"{probe_set.name} gallery ({c!r})", c)
        if protocol.overall and probe_set.name == protocol.overall:
            continue  # Overall's patterns ("01".."04") overlap every other set; its own emptiness shows there
        for c in probe_set.conditions:
            add(c if protocol.match == "exact" else f"{probe_set.name} ({c!r})", c)
    return patterns


def missing_cells(protocol: Protocol, expected_subjects: Sequence[str] | None, subjects: Sequence[str],
                  conditions: Sequence[str], views: Sequence[str],
                  unreadable: Sequence[tuple[str, str]] = ()) -> MissingCells:
    """Which test subjects, conditions and views of a benchmark protocol a store lacks.

    Checked at the granularity the protocol is defined on (whole subjects, conditions and views), so a
    benchmark's few known missing sequences do not count. Views are checked where the protocol fixes
    them (``expected_views``: CASIA-B). A custom protocol has no fixed cells: only ``unreadable``.

    Args:
        expected_subjects: the partition's test subjects (None = not fixed).
        subjects, conditions, views: (N,) labels of the store's sequences of the test subjects.
        unreadable: (path, reason) of files that could not be read.
    """
    if protocol.name == "custom":
        return MissingCells(unreadable=tuple(unreadable))
    present = set(map(str, subjects))
    lost_subjects = sorted(set(expected_subjects or ()) - present)
    conds = np.asarray(conditions).astype(str) if len(conditions) else np.zeros(0, dtype=str)
    lost_conditions = [label for label, pattern in protocol_conditions(protocol)
                       if not select_conditions(conds, [pattern], protocol.match).any()]
    seen_views = {view_key(str(v), protocol.view_rule) for v in views}
    lost_views = [v for v in protocol.expected_views if v not in seen_views]
    return MissingCells(tuple(lost_subjects), tuple(lost_conditions), tuple(lost_views), tuple(unreadable))
