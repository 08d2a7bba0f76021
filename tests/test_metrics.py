"""Metrics pinned to hand-computed cases, plus a brute-force reference on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gaitheat import metrics

# 2 probes x 6 gallery items; hand-ranked below.
DIST = np.array([
    [0.9, 0.1, 0.5, 0.3, 0.7, 0.2],
    [0.4, 0.6, 0.2, 0.8, 0.1, 0.5],
])  # fmt: skip
GALLERY = np.array(["b", "c", "a", "a", "c", "a"])
PROBES = np.array(["a", "c"])


def test_rank_probes_hand_computed() -> None:
    # probe 0 (a): order by distance = idx 1(c) 5(a) 3(a) 2(a) 4(c) 0(b) -> matches at ranks 2, 3, 4
    #   AP = (1/2 + 2/3 + 3/4) / 3 = 0.638888..., INP = 3 / 4, first match at rank 2
    # probe 1 (c): order = idx 4(c) 2(a) 0(b) 5(a) 1(c) 3(a) -> matches at ranks 1, 5
    #   AP = (1/1 + 2/5) / 2 = 0.7, INP = 2 / 5, first match at rank 1
    ranks = metrics.rank_probes(DIST, *metrics.encode_labels(PROBES, GALLERY))
    assert ranks.first_rank.tolist() == [2, 1]
    assert ranks.num_matches.tolist() == [3, 2]
    assert ranks.ap == pytest.approx([(1 / 2 + 2 / 3 + 3 / 4) / 3, 0.7])
    assert ranks.inp == pytest.approx([0.75, 0.4])
    cmc = metrics.cmc_curve(ranks.first_rank, 5)
    assert cmc.tolist() == [0.5, 1.0, 1.0, 1.0, 1.0]  # rank-1 = 50 %, rank-5 = 100 %


def test_rank_probes_removal_and_probe_without_match() -> None:
    # remove gallery item 5 for probe 0: order among kept = 1(c) 3(a) 2(a) 4(c) 0(b) -> ranks 2, 3
    remove = np.zeros(DIST.shape, dtype=bool)
    remove[0, 5] = True
    remove[1, [1, 4]] = True  # probe 1 loses both its matches -> skipped
    ranks = metrics.rank_probes(DIST, *metrics.encode_labels(PROBES, GALLERY), remove=remove)
    assert ranks.first_rank.tolist() == [2, 0]
    assert ranks.ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert ranks.inp[0] == pytest.approx(2 / 3)
    assert math.isnan(ranks.ap[1]) and math.isnan(ranks.inp[1])
    assert metrics.cmc_curve(ranks.first_rank, 2, valid_only=True).tolist() == [0.0, 1.0]
    assert metrics.cmc_curve(ranks.first_rank, 2, valid_only=False).tolist() == [0.0, 0.5]


def test_ties_break_by_gallery_order() -> None:
    dist = np.array([[0.5, 0.5, 0.5]])
    ranks = metrics.rank_probes(dist, np.array([1]), np.array([0, 1, 1]))
    assert ranks.first_rank.tolist() == [2]
    assert metrics.first_match_rank(dist, np.array([1]), np.array([0, 1, 1])).tolist() == [2]


def test_distance_is_mean_of_per_strip_euclidean() -> None:
    # D = 2, P = 2. probe strips (3, 4) and (0, 0); gallery strips (0, 0) and (1, 0)
    probe = np.array([[[3.0, 0.0], [4.0, 0.0]]])  # (1, D, P)
    gallery = np.array([[[0.0, 1.0], [0.0, 0.0]]])
    # strip 0: |(3,4)-(0,0)| = 5; strip 1: |(0,0)-(1,0)| = 1 -> mean 3 (not sqrt(26) of the concatenation)
    assert metrics.distance_matrix(probe, gallery)[0, 0] == pytest.approx(3.0)
    # cosine: strip 0 cos((3,4),(0,0)) = 0 (zero strip), strip 1 cos((0,0),(1,0)) = 0 -> 1 - 0
    assert metrics.distance_matrix(probe, gallery, "cos")[0, 0] == pytest.approx(1.0)
    same = metrics.distance_matrix(np.array([[[1.0, 2.0], [1.0, 0.5]]]), np.array([[[2.0, 4.0], [2.0, 1.0]]]), "cos")
    assert same[0, 0] == pytest.approx(0.0, abs=1e-6)


def test_distance_chunking_does_not_change_values() -> None:
    rng = np.random.default_rng(0)
    probe, gallery = rng.normal(size=(37, 8, 4)), rng.normal(size=(23, 8, 4))
    full = metrics.distance_matrix(probe, gallery)
    tiny = metrics.distance_matrix(probe, gallery, chunk_bytes=1)  # one probe per chunk
    np.testing.assert_allclose(full, tiny, rtol=1e-6)
    brute = np.linalg.norm(probe[:, None] - gallery[None], axis=2).mean(axis=2)
    np.testing.assert_allclose(full, brute, rtol=1e-4, atol=1e-4)


def test_distance_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(D, P\)"):
        metrics.distance_matrix(np.zeros((2, 8, 4)), np.zeros((2, 8, 2)))
    with pytest.raises(ValueError, match="metric"):
        metrics.distance_matrix(np.zeros((2, 8, 4)), np.zeros((2, 8, 4)), "l1")  # type: ignore[arg-type]


def test_cross_view_accuracy_and_identical_view_exclusion() -> None:
    # 2 subjects x 3 views, 1-D embeddings placed by hand (D = 1, P = 1).
    # gallery: subject s at view v sits at x = 10*s + v; probes sit next to their gallery items,
    # except subject 1 at view "b", whose probe sits on subject 0 -> misses at every gallery view.
    views = ["a", "b", "c"]
    g_sub, g_view, g_x = [], [], []
    for s in (0, 1):
        for v, name in enumerate(views):
            g_sub.append(str(s))
            g_view.append(name)
            g_x.append(10 * s + v)
    p_sub = ["0", "0", "0", "1", "1", "1"]
    p_view = ["a", "b", "c", "a", "b", "c"]
    p_x = [0.1, 1.1, 2.1, 10.1, 1.0, 12.1]
    emb = lambda xs: np.asarray(xs, dtype=np.float32)[:, None, None]  # noqa: E731
    acc = metrics.cross_view_accuracy(emb(p_x), emb(g_x), p_sub, g_sub, p_view, g_view, views, max_rank=2)
    # rank 1: rows a and c hit everywhere (100); row b: subject 0 hits, subject 1 misses (50)
    np.testing.assert_array_equal(acc[..., 0], [[100, 100, 100], [50, 50, 50], [100, 100, 100]])
    # rank 2: the gallery at one view holds 2 items, so every probe finds its subject
    np.testing.assert_array_equal(acc[..., 1], np.full((3, 3), 100.0))
    # make row a's diagonal differ to see the exclusion: drop subject 1's gallery at view a
    keep = [i for i in range(6) if not (g_sub[i] == "1" and g_view[i] == "a")]
    acc = metrics.cross_view_accuracy(emb(p_x), emb(g_x)[keep], p_sub, np.array(g_sub)[keep], p_view,
                                      np.array(g_view)[keep], views, max_rank=1)[..., 0]
    np.testing.assert_array_equal(acc[:, 0], [50, 50, 50])  # subject 1 can't be found at gallery view a
    per_view = metrics.view_average(acc, exclude_identical=True)
    # row a: mean of cells (a,b), (a,c) = 100; row b: mean of (b,a), (b,c) = 50; row c: (c,a), (c,b) = 75
    np.testing.assert_allclose(per_view, [100, 50, 75])
    assert metrics.mean_over_views(per_view) == pytest.approx(75.0)
    np.testing.assert_allclose(metrics.view_average(acc, exclude_identical=False), [250 / 3, 50, 250 / 3])


def test_cells_round_to_two_decimals_and_missing_cells_are_nan() -> None:
    # 3 probes at view a, 1 correct -> 33.333.. -> 33.33 as published; view b has no probes at all
    g = np.array([[[0.0]], [[10.0]]])
    p = np.array([[[0.1]], [[0.2]], [[0.3]]])
    acc = metrics.cross_view_accuracy(p, g, ["0", "1", "1"], ["0", "1"], ["a"] * 3, ["a", "c"], ["a", "b", "c"])
    assert acc[0, 0, 0] == 33.33
    assert np.isnan(acc[1]).all() and np.isnan(acc[:, 1]).all()
    # gallery view c holds only subject 1: its two probes hit, subject 0's probe is a miss (not skipped)
    assert acc[0, 2, 0] == 66.67


def test_view_codes_reject_unknown_views() -> None:
    with pytest.raises(ValueError, match="not in the view list"):
        metrics.cross_view_accuracy(np.zeros((1, 2, 1)), np.zeros((1, 2, 1)), ["0"], ["0"], ["x"], ["a"], ["a"])


def _brute_force(dist: np.ndarray, q: np.ndarray, g: np.ndarray, remove: np.ndarray) -> list[tuple]:
    """Per-probe (first rank, AP, INP) by the spec's formulas, one probe at a time."""
    out = []
    for i in range(dist.shape[0]):
        order = sorted(range(dist.shape[1]), key=lambda j: (dist[i, j], j))
        m = [int(g[j] == q[i]) for j in order if not remove[i, j]]
        r = sum(m)
        if r == 0:
            out.append((0, math.nan, math.nan))
            continue
        ap = sum(m[k] * sum(m[: k + 1]) / (k + 1) for k in range(len(m))) / r
        last = max(k + 1 for k in range(len(m)) if m[k])
        out.append((m.index(1) + 1, ap, r / last))
    return out


@settings(max_examples=60, deadline=None)
@given(
    q=st.integers(1, 7), n=st.integers(1, 12), ids=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
    ties=st.booleans(), with_remove=st.booleans(),
)
def test_vectorised_metrics_match_brute_force(q: int, n: int, ids: int, seed: int, ties: bool,
                                              with_remove: bool) -> None:
    rng = np.random.default_rng(seed)
    dist = rng.integers(0, 4, size=(q, n)).astype(float) if ties else rng.random((q, n))
    q_lab, g_lab = rng.integers(0, ids, q), rng.integers(0, ids, n)
    remove = rng.random((q, n)) < 0.3 if with_remove else np.zeros((q, n), dtype=bool)
    ranks = metrics.rank_probes(dist, q_lab, g_lab, remove if with_remove else None)
    expected = _brute_force(dist, q_lab, g_lab, remove)
    assert ranks.first_rank.tolist() == [e[0] for e in expected]
    np.testing.assert_allclose(ranks.ap, [e[1] for e in expected], rtol=1e-12)
    np.testing.assert_allclose(ranks.inp, [e[2] for e in expected], rtol=1e-12)
    if not with_remove:
        assert metrics.first_match_rank(dist, q_lab, g_lab).tolist() == [e[0] for e in expected]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), q=st.integers(1, 9), n=st.integers(1, 9), chunk=st.sampled_from([1, 10**9]))
def test_retrieval_metrics_match_brute_force_on_embeddings(seed: int, q: int, n: int, chunk: int) -> None:
    rng = np.random.default_rng(seed)
    probe, gallery = rng.normal(size=(q, 6, 3)), rng.normal(size=(n, 6, 3))
    q_lab, g_lab = rng.integers(0, 3, q).astype(str), rng.integers(0, 3, n).astype(str)
    q_view, g_view = rng.integers(0, 2, q).astype(str), rng.integers(0, 2, n).astype(str)
    res = metrics.retrieval_metrics(probe, gallery, q_lab, g_lab, q_view, g_view, max_rank=3, chunk_bytes=chunk)
    dist = np.linalg.norm(probe[:, None] - gallery[None], axis=2).mean(axis=2).astype(np.float32)
    remove = (q_lab[:, None] == g_lab[None]) & (q_view[:, None] == g_view[None])
    expected = [e for e in _brute_force(dist, q_lab, g_lab, remove) if e[0] > 0]
    assert res.num_probes == q and res.num_valid == len(expected)
    if expected:
        assert res.mean_ap == pytest.approx(np.mean([e[1] for e in expected]), abs=1e-9)
        assert res.mean_inp == pytest.approx(np.mean([e[2] for e in expected]), abs=1e-9)
        assert res.cmc[0] == pytest.approx(np.mean([e[0] == 1 for e in expected]))
    else:
        assert math.isnan(res.mean_ap) and np.isnan(res.cmc).all()


def test_retrieval_memory_is_bounded_by_the_chunk_budget() -> None:
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 1500
    probe = rng.standard_normal((n, 32, 4), dtype=np.float32)
    gallery = probe + 0.01 * rng.standard_normal((n, 32, 4), dtype=np.float32)
    labels = np.arange(n).astype(str)
    tracemalloc.start()
    try:
        res = metrics.retrieval_metrics(probe, gallery, labels, labels, chunk_bytes=2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # unchunked, the (Q, N) distances (9 MB) and their int64 sort order (18 MB) alone would exceed this
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MB"
    assert res.num_valid == n and res.cmc[0] == 1.0  # each probe's only match is its near twin
