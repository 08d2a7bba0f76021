"""Pose-Guided Heatmap Alignment (PGHA, paper §3.2; spec §2.3, §3.1) as pure tensor functions.

Each frame is rotated about the midpoint of its spine (neck = shoulder midpoint, COCO joints 5/6;
hip = hip midpoint, joints 11/12) until the spine is vertical, then translated so that the rotated
neck lands on ``neck_to`` = (24, 16) in the 64 x 48 heatmap. All joints of a frame get the same warp,
applied with ``affine_grid``/``grid_sample`` (bilinear, border padding, ``align_corners=False``).

Coordinates are heatmap pixel *indices*: pixel (row i, column j) has its centre at x = j, y = i,
which is what a per-channel argmax and the stored keypoints give. Two pixel conventions map them to
``grid_sample``'s [-1, 1] range (``pixels=``):

* ``"centre"`` (default): u = (2x + 1)/W - 1, where ``align_corners=False`` puts pixel centres, so
  the neck lands exactly on ``neck_to``.
* ``"edge"``: u = 2x/W - 1, the released ``RotationMat``'s convention (an index is taken as the
  pixel's left/top edge). The matrices are those of the release to float rounding
  (``tests/test_golden.py`` checks them against the released code's output). In pixel terms the
  rotation then turns about a point half a pixel off the spine midpoint in x and in y (a translation
  is unaffected), so the neck misses ``neck_to`` by 2 sin(alpha/2) / sqrt(2) px: 0.12 px at a 10
  degree tilt, 0.37 px at 30 degrees. The official configs use it, to reproduce the release.

Either way an unwarped (skipped) frame is passed through untouched, not resampled.

Differences from the official release, all deliberate:

* ``mode="composite"`` (default) resamples once with the product of rotation and translation;
  ``mode="two_pass"`` reproduces the official two bilinear resamplings (more blur, twice the cost).
* Frames within ``gamma`` of upright stay unwarped: always at evaluation (deterministic), and with
  probability ``skip_prob`` in training, drawn from an explicit ``torch.Generator`` (or the global
  torch RNG when none is given). The official code draws with Python's ``random`` at test time too.
* Frames whose spine is shorter than ``min_spine`` pixels (empty or padded frames, where every
  argmax is pixel 0) stay unwarped instead of being rotated by -90 degrees.
* Everything runs in the input's dtype and device; nothing is cast to fp16 outside autocast.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

NECK_JOINTS = (5, 6)  # COCO-17 left/right shoulder
HIP_JOINTS = (11, 12)  # COCO-17 left/right hip
SPINE_JOINTS = NECK_JOINTS + HIP_JOINTS
AlignMode = Literal["composite", "two_pass"]
PixelConvention = Literal["centre", "edge"]


def argmax_keypoints(heatmaps: Tensor) -> Tensor:
    """Per-channel argmax position of heatmaps.

    Args:
        heatmaps: (..., J, H, W).
    Returns:
        (..., J, 2) x (column), y (row) pixel indices, in the heatmaps' float dtype (float32 for
        integer input). Ties go to the first maximum in row-major order.
    """
    w = heatmaps.shape[-1]
    flat = heatmaps.flatten(-2).argmax(-1)
    dtype = heatmaps.dtype if heatmaps.is_floating_point() else torch.float32
    return torch.stack([flat % w, torch.div(flat, w, rounding_mode="floor")], dim=-1).to(dtype)


def spine_points(keypoints: Tensor) -> tuple[Tensor, Tensor]:
    """Neck (shoulder midpoint) and hip (hip midpoint) from COCO-17 keypoints.

    Args:
        keypoints: (..., 17, C) with C >= 2; x, y first (a score column, if any, is ignored).
    Returns:
        neck (..., 2) and hip (..., 2).
    """
    xy = keypoints[..., :2]
    neck = (xy[..., NECK_JOINTS[0], :] + xy[..., NECK_JOINTS[1], :]) / 2
    hip = (xy[..., HIP_JOINTS[0], :] + xy[..., HIP_JOINTS[1], :]) / 2
    return neck, hip


def tilt_angle(neck: Tensor, hip: Tensor) -> Tensor:
    """Signed deviation of the neck->hip line from straight down, in radians, wrapped to (-pi, pi].

    alpha = atan2(dy, dx) - pi/2 with (dx, dy) = hip - neck (the official alpha): zero when the hip is
    directly below the neck (y grows downwards), negative when the hip lies right of the neck.

    Args:
        neck: (..., 2) x, y.
        hip: (..., 2) x, y.
    Returns:
        (...,) angle alpha.
    """
    d = hip - neck
    alpha = torch.atan2(d[..., 1], d[..., 0]) - math.pi / 2
    return torch.remainder(alpha + math.pi, 2 * math.pi) - math.pi


def _homogeneous(m: Tensor) -> Tensor:
    """(..., 2, 3) -> (..., 3, 3) with a [0, 0, 1] last row."""
    last = torch.zeros(*m.shape[:-2], 1, 3, dtype=m.dtype, device=m.device)
    last[..., 0, 2] = 1
    return torch.cat([m, last], dim=-2)


def rotation_matrix(centre: Tensor, alpha: Tensor) -> Tensor:
    """Pixel-space forward rotation by alpha about ``centre`` (OpenCV ``getRotationMatrix2D``, scale 1).

    It turns a vector at angle alpha + 90 degrees from the x axis to straight down.

    Args:
        centre: (..., 2) x, y.
        alpha: (...,) radians.
    Returns:
        (..., 2, 3) matrix mapping a source pixel [x, y, 1] to its rotated position.
    """
    c, s = torch.cos(alpha), torch.sin(alpha)
    mx, my = centre[..., 0], centre[..., 1]
    row0 = torch.stack([c, s, (1 - c) * mx - s * my], dim=-1)
    row1 = torch.stack([-s, c, s * mx + (1 - c) * my], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def translation_matrix(shift: Tensor) -> Tensor:
    """(..., 2) pixel shift -> (..., 2, 3) forward translation matrix."""
    eye = torch.eye(2, dtype=shift.dtype, device=shift.device).expand(*shift.shape[:-1], 2, 2)
    return torch.cat([eye, shift.unsqueeze(-1)], dim=-1)


def alignment_matrices(neck: Tensor, hip: Tensor, neck_to: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """Forward pixel-space rotation and translation of PGHA (the official two steps).

    Args:
        neck: (..., 2) x, y in pixel indices.
        hip: (..., 2) x, y in pixel indices.
        neck_to: target (x, y) of the rotated neck.
    Returns:
        rotation (..., 2, 3) about the spine midpoint, and translation (..., 2, 3) taking the
        rotated neck to ``neck_to``. The full forward map is translation @ rotation.
    """
    rot = rotation_matrix((neck + hip) / 2, tilt_angle(neck, hip))
    rotated_neck = (rot[..., :2] @ neck.unsqueeze(-1)).squeeze(-1) + rot[..., 2]
    target = torch.tensor(neck_to, dtype=neck.dtype, device=neck.device)
    return rot, translation_matrix(target - rotated_neck)


def invert_affine(m: Tensor) -> Tensor:
    """Inverse of (..., 2, 3) affine maps [A | t] -> [A^-1 | -A^-1 t], closed form (no device sync)."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det[..., None, None]
    return torch.cat([inv, -(inv @ m[..., 2:])], dim=-1)


def pixel_to_normalised(
    size: tuple[int, int], dtype: torch.dtype, device: torch.device, pixels: PixelConvention = "centre"
) -> Tensor:
    """(3, 3) map from pixel indices (x, y, 1) to ``grid_sample`` coordinates with ``align_corners=False``.

    Args:
        size: (H, W).
        pixels: "centre": u = (2x + 1)/W - 1, where ``grid_sample`` has pixel centres; "edge":
            u = 2x/W - 1, the released code's convention (half a pixel off).
    """
    h, w = size
    if pixels not in ("centre", "edge"):
        raise ValueError(f"unknown pixel convention {pixels!r}; expected 'centre' or 'edge'")
    # the centre convention moves every index by half a pixel: +1/W (+1/H) in normalised units
    cx, cy = (1 / w, 1 / h) if pixels == "centre" else (0.0, 0.0)
    return torch.tensor([[2 / w, 0, cx - 1], [0, 2 / h, cy - 1], [0, 0, 1]], dtype=dtype, device=device)


def forward_to_theta(forward: Tensor, size: tuple[int, int], pixels: PixelConvention = "centre") -> Tensor:
    """Turn forward pixel-space affine maps into ``affine_grid`` thetas.

    ``affine_grid`` maps *output* normalised coordinates to *input* ones, hence the inverse:
    theta = N @ forward^-1 @ N^-1, with N from :func:`pixel_to_normalised`.

    Args:
        forward: (..., 2, 3) maps from source pixels to output pixels.
        size: (H, W) of the image they act on.
        pixels: pixel convention of N (see :func:`pixel_to_normalised`).
    Returns:
        (..., 2, 3) thetas.
    """
    n = pixel_to_normalised(size, forward.dtype, forward.device, pixels)
    n_inv = _homogeneous(invert_affine(n[:2]))
    return (n @ _homogeneous(invert_affine(forward)) @ n_inv)[..., :2, :]


def alignment_thetas(
    keypoints: Tensor,
    size: tuple[int, int] = (64, 48),
    neck_to: tuple[float, float] = (24.0, 16.0),
    pixels: PixelConvention = "centre",
) -> Tensor:
    """PGHA's two ``affine_grid`` thetas per frame, in the released ``RotationMat`` layout.

    No frame is skipped here (see :func:`skip_mask`). With ``pixels="edge"`` this is what the
    release's transform returns for a tilted frame.

    Args:
        keypoints: (..., 17, C >= 2) x, y in heatmap pixel indices (COCO-17).
        size: (H, W) of the heatmaps.
        neck_to: target (x, y) of the neck.
        pixels: pixel convention (see :func:`pixel_to_normalised`).
    Returns:
        (..., 2, 3, 2): ``[..., 0]`` the rotation theta, ``[..., 1]`` the translation theta, computed
        in float64 at least and returned in the keypoints' floating dtype.
    """
    neck, hip = spine_points(keypoints)
    dtype = neck.dtype if neck.is_floating_point() else torch.float32
    geo = torch.promote_types(dtype, torch.float64)
    rot, shift = alignment_matrices(neck.to(geo), hip.to(geo), neck_to)
    thetas = torch.stack([forward_to_theta(rot, size, pixels), forward_to_theta(shift, size, pixels)], dim=-1)
    return thetas.to(dtype)


def skip_mask(
    alpha: Tensor,
    spine_length: Tensor,
    gamma_deg: float,
    skip_prob: float,
    training: bool,
    generator: torch.Generator | None = None,
    min_spine: float = 1.0,
) -> Tensor:
    """Which frames stay unwarped.

    Args:
        alpha: (N,) tilt in radians.
        spine_length: (N,) neck-hip distance in pixels.
        gamma_deg: tilt (degrees) at or below which a frame counts as upright.
        skip_prob: in training, the probability that an upright frame is left unwarped.
        training: draw the random skip (True) or skip every upright frame (False, deterministic).
        generator: source of the training draw; the global torch RNG when None.
        min_spine: frames with a shorter spine are degenerate and always left unwarped.
    Returns:
        (N,) bool, True = identity.
    """
    upright = alpha.abs() <= math.radians(gamma_deg)
    if training:
        if generator is not None:
            draw = torch.rand(alpha.shape, generator=generator, device=generator.device).to(alpha.device)
        else:
            draw = torch.rand(alpha.shape, device=alpha.device)
        upright = upright & (draw < skip_prob)
    return upright | (spine_length < min_spine)


def warp(x: Tensor, theta: Tensor) -> Tensor:
    """Bilinear, border-padded affine warp.

    Args:
        x: (N, C, H, W).
        theta: (N, 2, 3) ``affine_grid`` thetas.
    Returns:
        (N, C, H, W).
    """
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def align_heatmaps(
    heatmaps: Tensor,
    keypoints: Tensor | None = None,
    *,
    neck_to: tuple[float, float] = (24.0, 16.0),
    gamma_deg: float = 5.0,
    skip_prob: float = 0.8,
    training: bool = False,
    mode: AlignMode = "composite",
    generator: torch.Generator | None = None,
    min_spine: float = 1.0,
    pixels: PixelConvention = "centre",
) -> Tensor:
    """Align each frame's heatmaps so the spine is vertical and the neck sits at ``neck_to``.

    Args:
        heatmaps: (N, J, H, W) COCO-17 heatmaps, one frame per row.
        keypoints: (N, J, C >= 2) x, y in heatmap pixel indices; None = per-channel argmax of
            ``heatmaps`` (only the four spine joints are searched).
        neck_to: target (x, y) of the neck.
        gamma_deg: upright threshold, see :func:`skip_mask`.
        skip_prob: training-time skip probability for upright frames.
        training: random skip (True) or deterministic (False).
        mode: "composite" (one resampling) or "two_pass" (rotation, then translation, as released).
        generator: RNG for the training skip; global torch RNG when None.
        min_spine: spines shorter than this (pixels) are left unwarped.
        pixels: "centre" (exact, default) or "edge" (the release's convention); see the module docstring.
    Returns:
        (N, J, H, W) aligned heatmaps, same dtype and device; unwarped frames are returned exactly.
    """
    if heatmaps.dim() != 4:
        raise ValueError(f"align_heatmaps expects (N, J, H, W) heatmaps, got shape {tuple(heatmaps.shape)}")
    if mode not in ("composite", "two_pass"):
        raise ValueError(f"unknown alignment mode {mode!r}; expected 'composite' or 'two_pass'")
    if keypoints is None:
        spine = argmax_keypoints(heatmaps[:, list(SPINE_JOINTS)])
        neck, hip = (spine[:, 0] + spine[:, 1]) / 2, (spine[:, 2] + spine[:, 3]) / 2
    else:
        neck, hip = spine_points(keypoints)
    # geometry in float32 at least: fp16/bf16 keypoints would put the neck off by whole pixels
    geo_dtype = torch.promote_types(neck.dtype, torch.float32)
    neck, hip = neck.to(geo_dtype), hip.to(geo_dtype)
    size = (heatmaps.shape[-2], heatmaps.shape[-1])
    rot, shift = alignment_matrices(neck, hip, neck_to)
    keep = skip_mask(
        tilt_angle(neck, hip), (hip - neck).norm(dim=-1), gamma_deg, skip_prob, training, generator, min_spine
    )
    if mode == "composite":
        forward = (_homogeneous(shift) @ _homogeneous(rot))[..., :2, :]
        aligned = warp(heatmaps, forward_to_theta(forward, size, pixels))
    else:
        aligned = warp(warp(heatmaps, forward_to_theta(rot, size, pixels)), forward_to_theta(shift, size, pixels))
    return torch.where(keep[:, None, None, None], heatmaps, aligned)
