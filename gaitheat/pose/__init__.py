"""Pose backends behind one small interface (:class:`PoseBackend`) and a name registry.

``blazepose`` (default) runs the BlazePose-full model bundled in the mediapipe 0.10.21 wheel with
LiteRT; ``onnx`` runs a user-supplied top-down model (HRNet-W32 / ViTPose, 256x192) with ONNX
Runtime. Backends are imported only when built.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from gaitheat.pose.base import HEATMAP_HW, INPUT_HW, PoseBackend, PoseResult, decode_heatmaps

# name -> "module:Class"
POSE_BACKENDS: dict[str, str] = {
    "blazepose": "gaitheat.pose.blazepose:BlazePoseBackend",
    "onnx": "gaitheat.pose.onnx:OnnxPoseBackend",
}

__all__ = ["HEATMAP_HW", "INPUT_HW", "POSE_BACKENDS", "PoseBackend", "PoseResult", "build_pose_backend",
           "decode_heatmaps"]


def build_pose_backend(name: str = "blazepose", model_path: str | Path | None = None, **kwargs: Any) -> PoseBackend:
    """Build a registered pose backend.

    Args:
        name: a key of :data:`POSE_BACKENDS`.
        model_path: the model file (required for ``onnx``; optional for ``blazepose``).
        **kwargs: backend-specific options (``num_threads``, ``flip_test``, ...).
    Raises:
        KeyError: for an unknown name, listing the known ones.
    """
    if name not in POSE_BACKENDS:
        raise KeyError(f"unknown pose backend {name!r}; known: {sorted(POSE_BACKENDS)}")
    module_name, class_name = POSE_BACKENDS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend: PoseBackend = cls(model_path=model_path, **kwargs)
    return backend
