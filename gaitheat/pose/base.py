"""The pose backend contract: person crops in, COCO-17 heatmaps out.

Every backend takes RGB crops of its ``input_size`` (made by :func:`gaitheat.crop.crop_person`, so
the person box already has the model's 3:4 aspect) and returns a :class:`PoseResult` whose heatmaps
are ``(N, 17, 64, 48)`` float32 on the stride-4 grid of that crop, in COCO-17 order
(:data:`gaitheat.storage.COCO17_JOINTS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

HEATMAP_HW = (64, 48)
INPUT_HW = (256, 192)

# Left/right channel pairs of COCO-17, for flip tests.
COCO17_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


@dataclass(frozen=True)
class PoseResult:
    """Output of one backend call on N crops.

    Attributes:
        heatmaps: ``(N, 17, 64, 48)`` float32 heatmaps.
        keypoints: ``(N, 17, 3)`` float32 ``(x=column, y=row, score=peak)`` in heatmap pixels.
        presence: ``(N,)`` float32 probability that the crop shows a person (1 when the model has none).
        masks: ``(N, h, w)`` bool person mask on the crop's pixel grid (``input_size``), or None when the
            model has no segmentation output (the ONNX HRNet / ViTPose backend).
    """

    heatmaps: np.ndarray
    keypoints: np.ndarray
    presence: np.ndarray
    masks: np.ndarray | None = None


@runtime_checkable
class PoseBackend(Protocol):
    """A top-down heatmap pose model.

    Attributes:
        name: model name recorded in each stored sequence (``SequenceMeta.pose_model``).
        sha256: SHA-256 of the model file (``SequenceMeta.pose_model_sha256``).
        input_size: ``(h, w)`` of the crops it takes.
    """

    name: str
    sha256: str
    input_size: tuple[int, int]

    def __call__(self, crops: np.ndarray) -> PoseResult:
        """Estimate heatmaps for ``crops`` ``(N, h, w, 3)`` uint8 RGB."""
        ...


def decode_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    """Per-joint peak of heatmaps, refined a quarter cell towards the higher neighbour; the score is the
    peak value (as mmpose's keypoint score).

    The refinement (:func:`gaitheat.heatmaps.refine_keypoints`) never leaves the argmax cell, so
    ``np.round`` of the result gives the exact integer argmax back (what PGHA and the tracker's box
    following use), while regenerated heatmaps drawn from the stored keypoints are not snapped to the grid.

    Args:
        heatmaps: ``(N, J, H, W)`` array.
    Returns:
        ``(N, J, 3)`` float32 ``(x=column, y=row, score)``.
    """
    from gaitheat.heatmaps import keypoints_from_heatmaps

    return keypoints_from_heatmaps(heatmaps, subpixel=True)


def concat_results(a: PoseResult, b: PoseResult) -> PoseResult:
    """The results of two backend calls as one, rows of ``a`` first (masks only when both have them)."""
    masks = None if a.masks is None or b.masks is None else np.concatenate([a.masks, b.masks])
    return PoseResult(np.concatenate([a.heatmaps, b.heatmaps]), np.concatenate([a.keypoints, b.keypoints]),
                      np.concatenate([a.presence, b.presence]), masks)


def empty_result(mask_hw: tuple[int, int] | None = None) -> PoseResult:
    """A :class:`PoseResult` for zero crops (with ``(0, *mask_hw)`` masks when given)."""
    masks = None if mask_hw is None else np.zeros((0, *mask_hw), bool)
    return PoseResult(np.zeros((0, 17, *HEATMAP_HW), np.float32), np.zeros((0, 17, 3), np.float32),
                      np.zeros((0,), np.float32), masks)
