"""Per-sequence transforms applied before the network (train and test alike)."""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def normalise_sequence(heatmaps: np.ndarray) -> np.ndarray:
    """Min-max normalise a whole sequence to [0, 1] (the official ``Sequence_level`` transform).

    Unlike the official code, min and max are always taken per sequence (never over a test batch),
    in float32, and a constant sequence maps to zeros instead of dividing by zero.

    Args:
        heatmaps: (T, J, H, W) array.
    Returns:
        (T, J, H, W) float32 in [0, 1].
    """
    x = np.asarray(heatmaps, dtype=np.float32)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < EPS:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)
