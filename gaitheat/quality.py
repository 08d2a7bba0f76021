"""Frame and sequence quality filters (the paper's 0.4 mean-joint-score rule, which the released code
lacks), with a JSON-ready record of what was dropped and why, stored in ``SequenceMeta.extra``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_SCORE = 0.4


def frame_scores(keypoints: np.ndarray) -> np.ndarray:
    """Mean joint score per frame.

    Args:
        keypoints: ``(T, J, 3)`` keypoints whose last column is the joint score (heatmap peak).
    Returns:
        ``(T,)`` float32 scores.
    """
    return np.asarray(keypoints, np.float32)[..., 2].mean(axis=-1)


@dataclass(frozen=True)
class QualityResult:
    """Outcome of :func:`filter_frames` for one track.

    Attributes:
        keep: ``(T,)`` bool mask of frames kept.
        accepted: whether the sequence survives (enough frames left).
        record: JSON-ready description of the decision (thresholds, counts, dropped frame indices, reason).
    """

    keep: np.ndarray
    accepted: bool
    record: dict[str, Any]


def filter_frames(scores: np.ndarray, frame_indices: np.ndarray, min_score: float = MIN_SCORE,
                  min_frames: int = 20) -> QualityResult:
    """Drop frames whose mean joint score is under ``min_score``; reject the sequence if under ``min_frames`` remain.

    Args:
        scores: ``(T,)`` mean joint scores (:func:`frame_scores`).
        frame_indices: ``(T,)`` source frame indices, recorded for the dropped frames.
        min_score: frame threshold (the paper's 0.4).
        min_frames: smallest sequence kept.
    """
    scores = np.asarray(scores, np.float32)
    keep = scores >= min_score
    kept = int(keep.sum())
    dropped = np.asarray(frame_indices)[~keep]
    record: dict[str, Any] = {
        "min_score": float(min_score),
        "min_frames": int(min_frames),
        "frames_in": len(scores),
        "frames_kept": kept,
        "frames_dropped": len(dropped),
        "dropped_frames": [int(v) for v in dropped],
        "dropped_reason": f"mean joint score < {min_score:g}" if len(dropped) else "",
        "mean_score": round(float(scores[keep].mean()), 4) if kept else 0.0,
    }
    accepted = kept >= min_frames
    if not accepted:
        record["rejected"] = f"too short: {kept} frames with mean joint score >= {min_score:g}, need {min_frames}"
    return QualityResult(keep, accepted, record)
