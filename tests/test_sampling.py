"""P x K identity sampler: composition, replacement rule, rank slices, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gaitheat.sampling import IdentityBatchSampler, draw_global_batch, group_by_label, rank_slice

# 6 identities; identity 5 has a single sequence, identity 4 two; -1 rows are never drawn
LABELS = [0] * 5 + [1] * 4 + [2] * 6 + [3] * 3 + [4] * 2 + [5] + [-1] * 3


def test_batch_has_p_identities_times_k_sequences() -> None:
    sampler = IdentityBatchSampler(LABELS, p=4, k=3, seed=7)
    for b in range(50):
        batch = sampler.global_batch(b)
        assert len(batch) == 12
        counts = Counter(LABELS[i] for i, _ in batch)
        assert len(counts) == 4 and set(counts.values()) == {3}
        assert -1 not in counts
        # without replacement whenever an identity has at least K sequences
        for label in counts:
            rows = [i for i, _ in batch if LABELS[i] == label]
            if LABELS.count(label) >= 3:
                assert len(set(rows)) == 3


def test_small_identities_are_drawn_with_replacement() -> None:
    groups = group_by_label(LABELS)
    pairs = Counter()
    for b in range(200):
        batch = draw_global_batch(groups, p=6, k=4, seed=1, batch=b)
        assert [i for i, _ in batch if LABELS[i] == 5] == [20] * 4  # its one sequence, K times
        two = [i for i, _ in batch if LABELS[i] == 4]
        assert len(two) == 4 and set(two) <= {18, 19}
        pairs[len(set(two))] += 1
    # identity 4's two sequences: both drawn in most batches, never more rows than K
    assert pairs[2] > 150, pairs


def test_batches_are_deterministic_and_differ_between_steps() -> None:
    a = IdentityBatchSampler(LABELS, p=3, k=2, seed=11)
    b = IdentityBatchSampler(LABELS, p=3, k=2, seed=11)
    assert [a.global_batch(i) for i in range(5)] == [b.global_batch(i) for i in range(5)]
    assert a.global_batch(0) != a.global_batch(1)
    assert a.global_batch(0) != IdentityBatchSampler(LABELS, p=3, k=2, seed=12).global_batch(0)
    seeds = [s for i in range(20) for _, s in a.global_batch(i)]
    assert len(set(seeds)) == len(seeds)  # every pick gets its own frame seed


def test_ranks_partition_the_global_batch_in_order() -> None:
    world = 4
    samplers = [IdentityBatchSampler(LABELS, p=4, k=2, seed=5, rank=r, world_size=world) for r in range(world)]
    for b in range(10):
        parts = [s.local_batch(b) for s in samplers]
        assert all(len(p) == 2 for p in parts)
        assert [x for p in parts for x in p] == samplers[0].global_batch(b)


def test_iteration_resumes_at_start() -> None:
    full = IdentityBatchSampler(LABELS, p=2, k=2, seed=0)
    it = iter(full)
    stream = [next(it) for _ in range(6)]
    resumed = IdentityBatchSampler(LABELS, p=2, k=2, seed=0, start=4)
    it2 = iter(resumed)
    assert [next(it2) for _ in range(2)] == stream[4:]


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="only 6 identities"):
        IdentityBatchSampler(LABELS, p=7, k=2)
    with pytest.raises(ValueError, match="does not split"):
        IdentityBatchSampler(LABELS, p=3, k=3, world_size=2)
    with pytest.raises(ValueError, match="at least 2"):
        IdentityBatchSampler(LABELS, p=1, k=4)
    with pytest.raises(ValueError, match="outside"):
        IdentityBatchSampler(LABELS, p=2, k=2, rank=2, world_size=2)
    with pytest.raises(ValueError):
        rank_slice([(0, 0)] * 5, 0, 2)


def test_identity_frequencies_are_uniform() -> None:
    groups = group_by_label(LABELS)
    counts = Counter(LABELS[i] for b in range(600) for i, _ in draw_global_batch(groups, 2, 1, 3, b))
    freq = np.array([counts[k] for k in range(6)]) / 1200
    np.testing.assert_allclose(freq, 1 / 6, atol=0.04)
