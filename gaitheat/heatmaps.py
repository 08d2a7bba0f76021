"""Pure functions on joint heatmaps ``(T, J, H, W)`` (numpy)."""

from __future__ import annotations

import numpy as np


def keypoints_from_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    """Per-channel argmax keypoints.

    Args:
        heatmaps: (T, J, H, W) array.
    Returns:
        (T, J, 3) float32: x (column), y (row) of each channel's maximum, in heatmap pixels, and the
        maximum value as score. Ties go to the first (row-major) position.
    """
    t, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(t, j, h * w)
    idx = flat.argmax(axis=-1)
    out = np.empty((t, j, 3), dtype=np.float32)
    out[..., 0] = idx % w
    out[..., 1] = idx // w
    out[..., 2] = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    return out
