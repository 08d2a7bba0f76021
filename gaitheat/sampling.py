"""P x K identity batches for the triplet loss, identical on every rank without communication.

Global batch ``b`` is a pure function of ``(seed, b)``: draw P distinct identities, K sequences of
each (without replacement when the identity has at least K, otherwise with replacement), shuffle the
P*K picks, and give each pick its own frame-sampling seed. Rank ``r`` of ``world_size`` takes the
``r``-th contiguous slice, so concatenating the ranks' slices in rank order (what ``all_gather``
does) rebuilds the global batch in order. Because a batch depends only on its number, resuming at
step ``s`` is ``start=s`` and the world size may even change between runs.

This replaces the official ``TripletSampler``, which draws on rank 0 and broadcasts (spec §2.2).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

Pick = tuple[int, int]  # (row index into the dataset, frame-sampling seed)


def group_by_label(labels: Sequence[int]) -> dict[int, np.ndarray]:
    """Row indices of each label, for labels >= 0 (negative labels are ignored)."""
    arr = np.asarray(labels, dtype=np.int64)
    return {int(k): np.nonzero(arr == k)[0] for k in np.unique(arr[arr >= 0])}


def draw_global_batch(groups: dict[int, np.ndarray], p: int, k: int, seed: int, batch: int) -> list[Pick]:
    """Global batch number ``batch``: P identities x K sequences, shuffled, each with a frame seed.

    Args:
        groups: label -> row indices (:func:`group_by_label`); labels are used in sorted order.
        p: identities per batch (at most ``len(groups)``).
        k: sequences per identity.
        seed: run seed.
        batch: batch number (the training step).
    Returns:
        P*K ``(row index, frame seed)`` pairs.
    """
    rng = np.random.default_rng([seed, batch])
    labels = sorted(groups)
    chosen = rng.choice(len(labels), size=p, replace=False)
    picks: list[int] = []
    for c in chosen:
        rows = groups[labels[int(c)]]
        picks.extend(int(i) for i in rng.choice(rows, size=k, replace=len(rows) < k))
    order = rng.permutation(len(picks))
    seeds = rng.integers(0, 2**62, size=len(picks))
    return [(picks[int(i)], int(s)) for i, s in zip(order, seeds, strict=True)]


def rank_slice(items: Sequence[Pick], rank: int, world_size: int) -> list[Pick]:
    """The contiguous share of rank ``rank``; ``len(items)`` must divide by ``world_size``."""
    if len(items) % world_size:
        raise ValueError(f"a global batch of {len(items)} does not split over {world_size} ranks")
    n = len(items) // world_size
    return list(items[rank * n : (rank + 1) * n])


class IdentityBatchSampler:
    """Endless P x K batch sampler (a DataLoader ``batch_sampler``) for iteration-based training.

    Args:
        labels: label of each dataset row (-1 rows are never drawn).
        p: identities per global batch.
        k: sequences per identity.
        seed: run seed; every rank must use the same.
        rank: this process's rank.
        world_size: number of processes; must divide ``p * k``.
        start: first batch number (the step to resume from).

    Example::

        sampler = IdentityBatchSampler(dataset.labels, p=8, k=8, seed=0, rank=r, world_size=w, start=step)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=2)
    """

    def __init__(self, labels: Sequence[int], p: int, k: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, start: int = 0) -> None:
        self.groups = group_by_label(labels)
        if p < 1 or k < 1:
            raise ValueError(f"P and K must be positive, got P={p}, K={k}")
        if p > len(self.groups):
            raise ValueError(f"P={p} identities per batch, but only {len(self.groups)} identities have sequences")
        if p < 2:
            raise ValueError("P must be at least 2: the triplet loss needs negatives")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        if (p * k) % world_size:
            raise ValueError(f"the global batch P*K={p * k} does not split over {world_size} ranks")
        self.p, self.k, self.seed = p, k, seed
        self.rank, self.world_size = rank, world_size
        self.start = start

    def global_batch(self, batch: int) -> list[Pick]:
        """All P*K picks of batch number ``batch`` (every rank computes the same)."""
        return draw_global_batch(self.groups, self.p, self.k, self.seed, batch)

    def local_batch(self, batch: int) -> list[Pick]:
        """This rank's share of batch number ``batch``."""
        return rank_slice(self.global_batch(batch), self.rank, self.world_size)

    def __iter__(self) -> Iterator[list[Pick]]:
        batch = self.start
        while True:
            yield self.local_batch(batch)
            batch += 1

    def state_dict(self) -> dict[str, int]:
        """What a checkpoint needs to continue the stream (the next batch number is the step)."""
        return {"seed": self.seed, "p": self.p, "k": self.k}
