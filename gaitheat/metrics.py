"""Retrieval metrics for gait recognition: distances, CMC, mAP, mINP and cross-view accuracy.

Pure, vectorised numpy; everything is chunked over probes so that memory stays bounded by
``chunk_bytes`` plus the inputs, whatever Q and N are: 20,000 x 20,000 embeddings of 256 x 16 peak at
about 1.3 GB RSS, 0.66 GB of it the inputs themselves (``benchmarks/metrics.py``). Definitions follow
OpenGait's evaluator (``opengait/evaluation/metric.py``), which FastPoseGait and the GaitHeat paper
use (evaluation_protocols.md §2.2, §2.8):

* distance ``euc``: d(x, y) = (1/P) Σ_p ||x_p − y_p||₂ (per-strip Euclidean, averaged over strips);
  ``cos``: 1 − (1/P) Σ_p <x̂_p, ŷ_p> with each strip L2-normalised;
* for a probe, the gallery sorted by ascending distance gives a 0/1 match vector m, R = Σ m;
  AP = (1/R) Σ_k m_k · (Σ_{j≤k} m_j)/k over the whole ranked gallery; INP = R / rank of the last
  match; CMC@k = 1 if a match is within the top k;
* gait-style cross-view accuracy: per (probe view, gallery view) cell, the share of probes whose
  first match within the gallery restricted to that view is within the top k, as a percentage
  rounded to 2 decimals (as published); identical views are excluded when averaging.

Ties are broken by gallery order (a stable sort), so results are deterministic; OpenGait's unstable
sort may order exact ties differently.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Metric = Literal["euc", "cos"]
DEFAULT_CHUNK_BYTES = 256 * 2**20  # working memory per probe chunk
_BYTES_PER_CELL = 48  # per (probe, gallery) cell: f32 distance, i64 sort order and labels, i32 cumsums, masks


def _check_embeddings(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:  # (N, D): a single strip
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"{name} must be (N, D, P) embeddings, got shape {x.shape}")
    return x


def strip_major(x: np.ndarray) -> np.ndarray:
    """(N, D, P) embeddings -> contiguous (P, N, D) float32, the layout per-strip BLAS wants."""
    return np.ascontiguousarray(_check_embeddings(x, "embeddings").transpose(2, 0, 1), dtype=np.float32)


def _normalise_strips(x: np.ndarray) -> np.ndarray:
    """L2-normalise (P, N, D) strips over D; zero strips stay zero."""
    norm = np.linalg.norm(x, axis=2, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _augment_gallery(g: np.ndarray) -> np.ndarray:
    """(P, N, D) gallery strips -> (P, N, D + 2) rows [y, |y|^2, 1] (see :func:`_euclidean_block`)."""
    p, n, _ = g.shape
    sq = np.einsum("pnd,pnd->pn", g, g)[..., None]
    return np.concatenate([g, sq, np.ones((p, n, 1), dtype=np.float32)], axis=2)


def _euclidean_block(q: np.ndarray, g_aug: np.ndarray) -> np.ndarray:
    """Mean over strips of per-strip Euclidean distances.

    With probe rows [-2x, 1, |x|^2] and gallery rows [y, |y|^2, 1], one matmul per strip gives
    |x|^2 + |y|^2 - 2 x.y directly, leaving only clamp, root and sum as passes over (c, N).

    Args:
        q: (P, c, D) probe strips; g_aug: (P, N, D + 2) from :func:`_augment_gallery`.
    Returns:
        (c, N) float32.
    """
    p, c, _ = q.shape
    q_aug = np.concatenate([-2.0 * q, np.ones((p, c, 1), dtype=np.float32),
                            np.einsum("pcd,pcd->pc", q, q)[..., None]], axis=2)
    acc = np.zeros((c, g_aug.shape[1]), dtype=np.float32)
    buf = np.empty_like(acc)
    for s in range(p):
        np.matmul(q_aug[s], g_aug[s].T, out=buf)
        np.maximum(buf, 0.0, out=buf)  # rounding can make a squared distance slightly negative
        np.sqrt(buf, out=buf)
        acc += buf
    acc /= p
    return acc


def chunk_rows(num_gallery: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Probes per chunk so that the (chunk, N) working arrays fit in ``chunk_bytes``."""
    return max(1, int(chunk_bytes // (max(num_gallery, 1) * _BYTES_PER_CELL)))


def iter_distances(
    probe: np.ndarray,
    gallery: np.ndarray,
    metric: Metric = "euc",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (probe slice, (c, N) float32 distances) chunk by chunk.

    Args:
        probe: (Q, D, P) embeddings.
        gallery: (N, D, P) embeddings with the same D and P.
        metric: ``euc`` or ``cos`` (module docstring).
        chunk_bytes: working memory per chunk.
    """
    probe = _check_embeddings(probe, "probe")
    gallery = _check_embeddings(gallery, "gallery")
    if probe.shape[1:] != gallery.shape[1:]:
        raise ValueError(f"probe (D, P) = {probe.shape[1:]} differs from gallery (D, P) = {gallery.shape[1:]}")
    if metric not in ("euc", "cos"):
        raise ValueError(f"unknown distance metric {metric!r}; use 'euc' or 'cos'")
    g = strip_major(gallery)
    num_strips, num_gallery = g.shape[:2]
    if metric == "cos":
        # one matmul over the concatenated normalised strips = the sum of per-strip cosines
        g_flat = np.ascontiguousarray(_normalise_strips(g).transpose(1, 0, 2).reshape(num_gallery, -1))
    else:
        g_aug = _augment_gallery(g)
    del g  # only the derived layout is kept: one gallery-sized copy in memory
    step = chunk_rows(num_gallery, chunk_bytes)
    for start in range(0, probe.shape[0], step):
        rows = slice(start, min(start + step, probe.shape[0]))
        q = strip_major(probe[rows])
        if metric == "cos":
            q_flat = _normalise_strips(q).transpose(1, 0, 2).reshape(q.shape[1], -1)
            yield rows, (1.0 - (q_flat @ g_flat.T) / num_strips).astype(np.float32, copy=False)
        else:
            yield rows, _euclidean_block(q, g_aug)


def distance_matrix(
    probe: np.ndarray, gallery: np.ndarray, metric: Metric = "euc", chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> np.ndarray:
    """Full (Q, N) float32 distance matrix between (Q, D, P) probes and (N, D, P) gallery embeddings.

    For very large Q x N prefer :func:`retrieval_metrics` / :func:`cross_view_accuracy`, which never
    hold the whole matrix.
    """
    probe = _check_embeddings(probe, "probe")
    out = np.empty((probe.shape[0], _check_embeddings(gallery, "gallery").shape[0]), dtype=np.float32)
    for rows, block in iter_distances(probe, gallery, metric, chunk_bytes):
        out[rows] = block
    return out


def encode_labels(*arrays: Sequence[str] | np.ndarray) -> list[np.ndarray]:
    """Map string labels of several arrays to shared int64 codes (integer compares are much faster)."""
    values = [np.asarray(a).astype(str) for a in arrays]
    uniq = np.unique(np.concatenate(values)) if values else np.array([])
    return [np.searchsorted(uniq, v).astype(np.int64) for v in values]


@dataclass(frozen=True)
class ProbeRanks:
    """Per-probe ranking statistics, the raw material of CMC, mAP and mINP.

    Attributes:
        first_rank: (Q,) int64 1-based rank of the first true match; 0 when there is none.
        num_matches: (Q,) int64 R, true matches left after removals.
        ap: (Q,) float64 average precision; NaN when R = 0.
        inp: (Q,) float64 inverse negative penalty R / rank of the last match; NaN when R = 0.
    """

    first_rank: np.ndarray
    num_matches: np.ndarray
    ap: np.ndarray
    inp: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return self.num_matches > 0


def rank_probes(
    dist: np.ndarray,
    probe_labels: np.ndarray,
    gallery_labels: np.ndarray,
    remove: np.ndarray | None = None,
) -> ProbeRanks:
    """Ranking statistics for each probe against the whole gallery.

    Args:
        dist: (Q, N) distances.
        probe_labels: (Q,) identity codes; gallery_labels: (N,) identity codes.
        remove: optional (Q, N) bool, gallery items taken out of a probe's ranking entirely (e.g.
            same subject and same view in CCPG's re-ID protocol); later items move up.
    """
    num_probes = dist.shape[0]
    order = np.argsort(dist, axis=1, kind="stable")
    match = gallery_labels[order] == probe_labels[:, None]
    if remove is not None:
        keep = ~np.take_along_axis(remove, order, axis=1)
        match &= keep
        rank = np.cumsum(keep, axis=1, dtype=np.int32)  # 1-based rank among kept items
    del order
    hits = np.cumsum(match, axis=1, dtype=np.int32)
    # Only the match positions matter from here on; they are few compared with Q x N.
    rows, cols = np.nonzero(match)
    match_rank = rank[rows, cols] if remove is not None else cols + 1
    precision = hits[rows, cols] / match_rank
    num = np.bincount(rows, minlength=num_probes).astype(np.int64)
    precision_sum = np.bincount(rows, weights=precision, minlength=num_probes)
    first = np.zeros(num_probes, dtype=np.int64)
    last = np.zeros(num_probes, dtype=np.int64)
    if rows.size:
        # nonzero() walks row-major and ranks grow along a row: first/last occurrence = first/last match
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        ends = np.r_[starts[1:], rows.size] - 1
        first[rows[starts]] = match_rank[starts]
        last[rows[ends]] = match_rank[ends]
    has = num > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(has, precision_sum / num, np.nan)
        inp = np.where(has, num / np.maximum(last, 1), np.nan)
    return ProbeRanks(first.astype(np.int64), num.astype(np.int64), ap, inp)


def cmc_curve(first_rank: np.ndarray, max_rank: int, valid_only: bool = True) -> np.ndarray:
    """(max_rank,) share of probes whose first match is within the top k, for k = 1..max_rank.

    Args:
        first_rank: (Q,) 1-based first-match ranks, 0 for probes without a match.
        valid_only: average over probes with a match (re-ID convention) or over all probes (gait).
    """
    first_rank = np.asarray(first_rank)
    if valid_only:
        first_rank = first_rank[first_rank > 0]
    if first_rank.size == 0:
        return np.full(max_rank, np.nan)
    ks = np.arange(1, max_rank + 1)
    hit = (first_rank[:, None] > 0) & (first_rank[:, None] <= ks[None, :])
    return hit.mean(axis=0)


@dataclass(frozen=True)
class RetrievalResult:
    """Re-ID style results over all probes against all gallery items (fractions in [0, 1]).

    Attributes:
        cmc: (max_rank,) CMC over probes with at least one match.
        mean_ap: mAP over probes with a match.
        mean_inp: mINP over probes with a match.
        num_probes: probes given; num_valid: probes with a match (the rest are skipped).
    """

    cmc: np.ndarray
    mean_ap: float
    mean_inp: float
    num_probes: int
    num_valid: int


def retrieval_metrics(
    probe: np.ndarray,
    gallery: np.ndarray,
    probe_labels: Sequence[str] | np.ndarray,
    gallery_labels: Sequence[str] | np.ndarray,
    probe_views: Sequence[str] | np.ndarray | None = None,
    gallery_views: Sequence[str] | np.ndarray | None = None,
    metric: Metric = "euc",
    max_rank: int = 20,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> RetrievalResult:
    """CMC, mAP and mINP of (Q, D, P) probes against an (N, D, P) gallery, chunked over probes.

    When views are given, gallery items with the probe's subject *and* view are removed from that
    probe's ranking (OpenGait ``evaluate_many``). Probes left without a match are skipped.
    """
    q_lab, g_lab = encode_labels(probe_labels, gallery_labels)
    views = None
    if probe_views is not None and gallery_views is not None:
        views = encode_labels(probe_views, gallery_views)
    firsts, aps, inps = [], [], []
    for rows, dist in iter_distances(probe, gallery, metric, chunk_bytes):
        remove = None
        if views is not None:
            remove = (q_lab[rows, None] == g_lab[None, :]) & (views[0][rows, None] == views[1][None, :])
        ranks = rank_probes(dist, q_lab[rows], g_lab, remove)
        firsts.append(ranks.first_rank)
        aps.append(ranks.ap[ranks.valid])
        inps.append(ranks.inp[ranks.valid])
    first = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
    ap, inp = (np.concatenate(aps), np.concatenate(inps)) if aps else (np.zeros(0), np.zeros(0))
    return RetrievalResult(
        cmc=cmc_curve(first, max_rank, valid_only=True),
        mean_ap=float(ap.mean()) if ap.size else float("nan"),
        mean_inp=float(inp.mean()) if inp.size else float("nan"),
        num_probes=int(first.size),
        num_valid=int((first > 0).sum()),
    )


def first_match_rank(dist: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """(Q,) 1-based rank of each probe's first true match in stable order, 0 when none; no sort.

    The first match is the same-subject item with the smallest (distance, index); its rank is one
    plus the number of items that precede it in that order.
    """
    if dist.shape[1] == 0:
        return np.zeros(dist.shape[0], dtype=np.int64)
    same = gallery_labels[None, :] == probe_labels[:, None]
    masked = np.where(same, dist, np.inf)
    best = masked.argmin(axis=1)
    has = same[np.arange(dist.shape[0]), best]
    best_d = dist[np.arange(dist.shape[0]), best]
    earlier = np.arange(dist.shape[1])[None, :] < best[:, None]
    before = (dist < best_d[:, None]) | ((dist == best_d[:, None]) & earlier)
    return np.where(has, before.sum(axis=1) + 1, 0).astype(np.int64)


def cross_view_accuracy(
    probe: np.ndarray,
    gallery: np.ndarray,
    probe_labels: Sequence[str] | np.ndarray,
    gallery_labels: Sequence[str] | np.ndarray,
    probe_views: Sequence[str] | np.ndarray,
    gallery_views: Sequence[str] | np.ndarray,
    views: Sequence[str],
    max_rank: int = 5,
    metric: Metric = "euc",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> np.ndarray:
    """Gait-style accuracy per (probe view, gallery view) cell, for ranks 1..max_rank.

    For each cell the gallery is restricted to that gallery view; a probe counts as a hit at rank k
    if its first same-subject item is within the top k there (a probe with no same-subject item at
    that view is a miss). Cells are percentages rounded to 2 decimals, as published.

    Args:
        views: the V view names that index the matrix (usually the sorted views of the test set).
    Returns:
        (V, V, max_rank) float64 percentages; NaN where the probe view has no probes or the gallery
        view no gallery items.
    """
    q_lab, g_lab = encode_labels(probe_labels, gallery_labels)
    view_index = {v: i for i, v in enumerate(views)}
    q_view = _view_codes(probe_views, view_index, "probe")
    g_view = _view_codes(gallery_views, view_index, "gallery")
    num_views = len(views)
    hits = np.zeros((num_views, num_views, max_rank), dtype=np.int64)
    gallery_cols = [np.flatnonzero(g_view == b) for b in range(num_views)]
    ks = np.arange(1, max_rank + 1)
    for rows, dist in iter_distances(probe, gallery, metric, chunk_bytes):
        rows_view = q_view[rows]
        for b, cols in enumerate(gallery_cols):
            if cols.size == 0:
                continue
            first = first_match_rank(dist[:, cols], q_lab[rows], g_lab[cols])
            hit = (first[:, None] > 0) & (first[:, None] <= ks[None, :])  # (c, max_rank)
            np.add.at(hits[:, b, :], rows_view, hit.astype(np.int64))
    num_probes = np.bincount(q_view, minlength=num_views).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.round(hits * 100.0 / num_probes[:, None, None], 2)
    acc[num_probes == 0] = np.nan
    acc[:, [c.size == 0 for c in gallery_cols]] = np.nan
    return acc


def _view_codes(views: Sequence[str] | np.ndarray, index: dict[str, int], what: str) -> np.ndarray:
    names = np.asarray(views).astype(str)
    unknown = sorted(set(names.tolist()) - set(index))
    if unknown:
        raise ValueError(f"{what} views {unknown[:5]} are not in the view list {list(index)}")
    return np.array([index[v] for v in names], dtype=np.int64)


def view_average(acc: np.ndarray, exclude_identical: bool = True) -> np.ndarray:
    """Average a (V, V[, ...]) cross-view matrix over gallery views, per probe view.

    With ``exclude_identical`` the diagonal cell is dropped: (row sum − diagonal) / (V − 1), i.e.
    OpenGait's ``de_diag``. NaN cells (no probes / no gallery) are left out of the mean.

    Returns:
        (V[, ...]) per-probe-view averages.
    """
    acc = np.asarray(acc, dtype=np.float64)
    if acc.shape[0] != acc.shape[1]:
        raise ValueError(f"cross-view matrix must be square in its first two axes, got {acc.shape}")
    if exclude_identical:
        acc = acc.copy()
        idx = np.arange(acc.shape[0])
        acc[idx, idx] = np.nan
    with np.errstate(invalid="ignore"), _ignore_empty_warning():
        return np.nanmean(acc, axis=1)


def mean_over_views(per_view: np.ndarray) -> float | np.ndarray:
    """Plain mean over probe views (first axis), leaving out views with no value."""
    with _ignore_empty_warning():
        out = np.nanmean(np.asarray(per_view, dtype=np.float64), axis=0)
    return float(out) if np.ndim(out) == 0 else out


@contextlib.contextmanager
def _ignore_empty_warning() -> Iterator[None]:
    # a probe view without any value is reported as NaN on purpose
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        yield
