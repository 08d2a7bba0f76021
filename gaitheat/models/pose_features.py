"""Deterministic keypoint features computed inside the keypoint models' ``forward`` (torch, batched).

Keypoints are (B, T, V, 3): x, y, score (heatmap pixels of the crop). The released FastPoseGait code
computes these as data transforms (``GaitGraph_MultiInput``, ``GaitTR_MultiInput``,
``HOD_MultiInput``, ``RescaleCenter``); here they are part of the model, so evaluation, identify, live
and ONNX export get them without repeating them. Random augmentation stays in
:mod:`gaitheat.transforms`.

Also :func:`per_sequence`, which runs a temporal model one sequence at a time when a padded batch
has different lengths: temporal convolutions, attention over frames and mean pooling would otherwise
read the zero padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def velocities(xy: Tensor) -> tuple[Tensor, Tensor]:
    """One- and two-frame forward differences, zero where the later frame does not exist.

    Args:
        xy: (B, T, V, C).
    Returns:
        (x[t+1] - x[t], x[t+2] - x[t]), each (B, T, V, C).
    """
    v1, v2 = torch.zeros_like(xy), torch.zeros_like(xy)
    t = xy.shape[1]
    # the released transform leaves the last *two* frames of both at zero; so do we
    if t > 2:
        v1[:, : t - 2] = xy[:, 1 : t - 1] - xy[:, : t - 2]
        v2[:, : t - 2] = xy[:, 2:] - xy[:, : t - 2]
    return v1, v2


def bones(xy: Tensor, parent: Sequence[int]) -> Tensor:
    """(B, T, V, C) -> (B, T, V, C) joint minus its parent joint."""
    return xy - xy[:, :, list(parent)]


def bone_angles(bone: Tensor, eps: float = 1e-4) -> Tensor:
    """(B, T, V, 2) bones -> (B, T, V, 2) angles of each bone to the x and y axes, arccos(b / |b|)."""
    length = bone.norm(dim=-1, keepdim=True) + eps
    return torch.acos((bone / length).clamp(-1.0, 1.0))


def fill_empty(kp: Tensor) -> Tensor:
    """Joints with x == 0 (not detected) move to their frame's mean position and get score 0.

    The released ``NormalizeEmpty`` transform; the mean is over all joints of the frame, as there.

    Args:
        kp: (B, T, V, 3).
    """
    empty = kp[..., :1] == 0  # (B, T, V, 1)
    centre = kp.mean(2, keepdim=True).expand_as(kp)
    filled = torch.cat([centre[..., :2], torch.zeros_like(kp[..., 2:])], -1)
    return torch.where(empty, filled, kp)


def rescale_center(xy: Tensor, height: float = 225.0, centre: Sequence[int] = (5, 6)) -> Tensor:
    """GPGait's Human-Oriented Transformation: each frame scaled to ``height`` tall, origin at the neck.

    Args:
        xy: (B, T, V, 2).
        height: target vertical extent (max y - min y) of every frame's skeleton.
        centre: joints whose mean becomes the origin (the shoulders' midpoint: the neck).
    Returns:
        (B, T, V, 2). A frame with no vertical extent (all joints at one height) is only centred.
    """
    extent = xy[..., 1].amax(-1, keepdim=True) - xy[..., 1].amin(-1, keepdim=True)  # (B, T, 1)
    scale = torch.where(extent > 1e-6, height / extent.clamp_min(1e-6), torch.ones_like(extent))
    scaled = xy * scale.unsqueeze(-1)
    return scaled - scaled[:, :, list(centre)].mean(2, keepdim=True)


def upright_spine(xy: Tensor, neck: Sequence[int] = (5, 6), hip: Sequence[int] = (11, 12)) -> Tensor:
    """Rotate each frame about the neck so the hip midpoint lies straight below it (GPGait's ``Affine``).

    The released transform computes the new y from the already rotated x; we rotate both from the
    original coordinates (a true rotation). A frame whose hips are level with the neck is left as is.

    Args:
        xy: (B, T, V, 2).
    """
    n = xy[:, :, list(neck)].mean(2, keepdim=True)  # (B, T, 1, 2)
    h = xy[:, :, list(hip)].mean(2, keepdim=True)
    dx, dy = (h - n)[..., 0], (h - n)[..., 1]  # (B, T, 1)
    level = dy == 0
    theta = torch.where(level, torch.zeros_like(dx), torch.atan(dx / torch.where(level, torch.ones_like(dy), dy)))
    cos, sin = torch.cos(theta), torch.sin(theta)
    rel = xy - n
    x = cos * rel[..., 0] - sin * rel[..., 1]
    y = sin * rel[..., 0] + cos * rel[..., 1]
    return torch.stack([x, y], -1) + n


def _cos_law_angle(centre: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """pi minus the angle at ``centre`` of the triangle (centre, left, right); pi when degenerate.

    Each argument is (..., 2). As released (``HOD_MultiInput.cos_law``): the cosine from the law of
    cosines, clamped to [-1, 1].
    """
    a = (centre - left).norm(dim=-1)
    b = (centre - right).norm(dim=-1)
    c = (left - right).norm(dim=-1)
    deno = a * b
    degenerate = deno == 0
    cos = ((a * a + b * b - c * c) / (2 * torch.where(degenerate, torch.ones_like(deno), deno))).clamp(-1.0, 1.0)
    return torch.where(degenerate, torch.full_like(cos, math.pi), math.pi - torch.acos(cos))


# GPGait's joint angles (COCO): (centre, a, b) = the inner angle at centre; (centre, a) = the angle
# between centre->a and the vertical through centre
HOD_ANGLES: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 0, 3), (2, 4, 0), (3, 1), (4, 2), (5, 7, 11), (6, 8, 12), (7, 5, 9), (8, 10, 6),
    (9, 7), (10, 8), (11, 5, 13), (12, 6, 14), (13, 11, 15), (14, 12, 16), (15, 13), (16, 14),
)  # fmt: skip


def hod_angles(xy: Tensor) -> Tensor:
    """GPGait's Human-oriented Descriptor angles: (B, T, 17, 2) -> (B, T, 17), one angle per joint."""
    out = []
    for joints in HOD_ANGLES:
        centre, left = xy[..., joints[0], :], xy[..., joints[1], :]
        # two joints: a point level with ``left``, straight above/below ``centre`` (the angle to the vertical)
        right = xy[..., joints[2], :] if len(joints) == 3 else torch.stack([centre[..., 0], left[..., 1]], -1)
        out.append(_cos_law_angle(centre, left, right))
    return torch.stack(out, -1)


def per_sequence(fn: Callable[[Tensor], Tensor], x: Tensor, lengths: Tensor | None) -> Tensor:
    """Apply ``fn`` to the whole padded batch when all lengths are equal, else one sequence at a time.

    Args:
        fn: (b, t, ...) -> (b, ...), applied to valid frames only.
        x: (B, T, ...) zero-padded after ``lengths``.
        lengths: (B,) valid frames, or None (all T valid).
    """
    if lengths is None:
        return fn(x)
    t = x.shape[1]
    if lengths.shape != x.shape[:1] or bool(((lengths < 1) | (lengths > t)).any()):
        raise ValueError(f"lengths must be ({x.shape[0]},) with values in 1..{t}, got {lengths.tolist()}")
    if bool((lengths == t).all()):
        return fn(x)
    return torch.cat([fn(x[i : i + 1, : int(n)]) for i, n in enumerate(lengths.tolist())])
