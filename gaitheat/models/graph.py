"""The COCO-17 skeleton as a graph: edges, hop-partitioned adjacency, body parts (for the keypoint models).

Joint order is COCO's (0 nose, 1/2 eyes, 3/4 ears, 5/6 shoulders, 7/8 elbows, 9/10 wrists, 11/12 hips,
13/14 knees, 15/16 ankles; odd = left). ``NO_HEAD`` is the same body without joints 0-4, renumbered
0-11, which GPGait's angle branch uses.

The adjacency follows ST-GCN's "distance" partition (Yan et al., AAAI 2018): slice ``d`` of the
(max_hop + 1, V, V) stack holds the pairs exactly ``d`` hops apart, and each column is divided by the
number of nodes within ``max_hop`` hops of it (so the stack sums to a column-stochastic matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COCO_EDGES = (
    (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
    (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip
# joint -> its parent along the body (bones = joint - parent); the nose's is the left shoulder
COCO_PARENT = (5, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14)
COCO_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)  # left <-> right
COCO_CENTER = 0  # joint the "relative position" features are taken from (the nose, as released)

NO_HEAD_EDGES = (
    (0, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7), (6, 7), (6, 8), (8, 10), (7, 9), (9, 11),
)  # fmt: skip

# GPGait's part partitions (index = the ``part`` argument of PartAwareGCN); 0 = the whole body
COCO_PARTITIONS: tuple[tuple[tuple[int, ...], ...], ...] = (
    (tuple(range(17)),),
    ((5, 7, 9), (6, 8, 10), (11, 13, 15), (12, 14, 16), (0, 1, 2, 3, 4)),  # limbs + head
    ((5, 7, 9, 6, 8, 10, 0, 1, 2, 3, 4), (11, 13, 15, 12, 14, 16)),  # upper / lower half
    ((5, 7, 9, 6, 8, 10), (11, 13, 15, 12, 14, 16, 0, 1, 2, 3, 4)),  # arms / head + legs
    ((5, 7, 9, 6, 8, 10), (11, 13, 15, 12, 14, 16), (0, 1, 2, 3, 4)),  # arms / legs / head
)
NO_HEAD_PARTITIONS: tuple[tuple[tuple[int, ...], ...], ...] = (
    (tuple(range(12)),),
    ((0, 2, 4), (1, 3, 5), (6, 8, 10), (7, 9, 11)),  # four limbs
    ((0, 2, 4, 1, 3, 5), (6, 8, 10, 7, 9, 11)),  # arms / legs
    ((0, 2, 4, 7, 9, 11), (1, 3, 5, 6, 8, 10)),  # diagonal pairs
)


@dataclass(frozen=True)
class Skeleton:
    """A joint graph and its part partitions."""

    num_joints: int
    edges: tuple[tuple[int, int], ...]
    partitions: tuple[tuple[tuple[int, ...], ...], ...]


COCO = Skeleton(17, COCO_EDGES, COCO_PARTITIONS)
NO_HEAD = Skeleton(12, NO_HEAD_EDGES, NO_HEAD_PARTITIONS)


def hop_distances(num_joints: int, edges: tuple[tuple[int, int], ...], max_hop: int) -> np.ndarray:
    """(V, V) shortest-path hop counts, ``inf`` beyond ``max_hop``."""
    a = np.eye(num_joints)
    for i, j in edges:
        a[i, j] = a[j, i] = 1
    reach = np.stack([np.linalg.matrix_power(a, d) > 0 for d in range(max_hop + 1)])
    hops = np.full((num_joints, num_joints), np.inf)
    for d in range(max_hop, -1, -1):
        hops[reach[d]] = d
    return hops


def hop_adjacency(skeleton: Skeleton, max_hop: int) -> np.ndarray:
    """(max_hop + 1, V, V) float32 distance-partitioned, column-normalised adjacency (see module doc)."""
    hops = hop_distances(skeleton.num_joints, skeleton.edges, max_hop)
    within = (hops <= max_hop).astype(np.float64)
    degree = within.sum(0)
    normalised = within / np.where(degree > 0, degree, 1)[None, :]
    return np.stack([np.where(hops == d, normalised, 0.0) for d in range(max_hop + 1)]).astype(np.float32)


def part_mask(skeleton: Skeleton, part: int) -> np.ndarray:
    """(V, V) float32: 1 where two joints share a part of partition ``part``, else 0."""
    mask = np.zeros((skeleton.num_joints, skeleton.num_joints), dtype=np.float32)
    for group in skeleton.partitions[part]:
        idx = np.asarray(group)
        mask[np.ix_(idx, idx)] = 1.0
    return mask
