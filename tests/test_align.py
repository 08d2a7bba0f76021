"""PGHA golden tests: a synthetic skeleton tilted by known angles comes out upright, neck at (24, 16)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gaitheat.models.align import (
    align_heatmaps,
    argmax_keypoints,
    forward_to_theta,
    invert_affine,
    skip_mask,
    spine_points,
    tilt_angle,
    warp,
)

# An upright COCO-17 skeleton in heatmap pixels (x = column, y = row), deliberately off target:
# neck at (20, 18), hip at (20, 38), spine midpoint (20, 28).
UPRIGHT = np.array(
    [
        (20, 10), (19, 9), (21, 9), (18, 10), (22, 10),  # nose, eyes, ears
        (15, 18), (25, 18), (13, 27), (27, 27), (12, 35), (28, 35),  # shoulders, elbows, wrists
        (17, 38), (23, 38), (17, 48), (23, 48), (17, 58), (23, 58),  # hips, knees, ankles
    ],
    dtype=np.float64,
)  # fmt: skip
CENTRE = np.array([20.0, 28.0])


def tilted_skeleton(degrees: float) -> np.ndarray:
    """(17, 2) skeleton rotated by ``degrees`` about the spine midpoint (positive: hip swings left)."""
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (UPRIGHT - CENTRE) @ rot.T + CENTRE


def render(points: np.ndarray, sigma: float = 1.5) -> torch.Tensor:
    """(17, 2) joint positions -> (17, 64, 48) Gaussian heatmaps."""
    yy, xx = np.mgrid[0:64, 0:48].astype(np.float64)
    d2 = (xx[None] - points[:, 0, None, None]) ** 2 + (yy[None] - points[:, 1, None, None]) ** 2
    return torch.from_numpy(np.exp(-d2 / (2 * sigma**2))).float()


def centroids(heatmaps: torch.Tensor, radius: int = 3) -> np.ndarray:
    """Sub-pixel joint positions of (J, H, W) heatmaps: weighted centroid in a window around each peak."""
    peaks = argmax_keypoints(heatmaps).long().numpy()
    out = []
    for j, (px, py) in enumerate(peaks):
        y0, x0 = max(py - radius, 0), max(px - radius, 0)
        patch = heatmaps[j, y0 : py + radius + 1, x0 : px + radius + 1].double().numpy()
        yy, xx = np.mgrid[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]]
        out.append(((patch * xx).sum() / patch.sum(), (patch * yy).sum() / patch.sum()))
    return np.array(out)


def spine_of(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Neck position and tilt (degrees) of (17, 2) joint positions."""
    neck, hip = spine_points(torch.from_numpy(points))
    return neck.numpy(), math.degrees(float(tilt_angle(neck, hip)))


@pytest.mark.parametrize("mode", ["composite", "two_pass"])
@pytest.mark.parametrize("degrees", [-30, -20, -12, 12, 20, 30])
def test_tilted_skeleton_comes_out_upright_from_argmax(degrees: float, mode: str) -> None:
    # joints on integer pixels, so the argmax the model uses sees them exactly
    points = np.round(tilted_skeleton(degrees))
    heat = render(points)
    _, before = spine_of(points)
    assert abs(before) > 10
    out = align_heatmaps(heat[None], gamma_deg=5.0, training=False, mode=mode)[0]  # type: ignore[arg-type]
    neck, tilt = spine_of(centroids(out))
    assert abs(tilt) < 1.5, f"spine still leans {tilt:.2f} degrees"
    assert np.hypot(*(neck - (24, 16))) < 1.0, f"neck at {neck}"


@pytest.mark.parametrize("degrees", [-30, 20])
def test_given_keypoints_align_to_sub_pixel_precision(degrees: float) -> None:
    points = tilted_skeleton(degrees)
    keypoints = torch.from_numpy(np.concatenate([points, np.ones((17, 1))], 1)).float()
    out = align_heatmaps(render(points)[None], keypoints[None], training=False)[0]
    neck, tilt = spine_of(centroids(out))
    assert abs(tilt) < 0.3
    # pixel centres at i + 0.5 in grid_sample's frame: the neck lands on the target, not half a pixel off
    assert np.hypot(*(neck - (24, 16))) < 0.15


def leaning_heatmaps() -> torch.Tensor:
    """(1, 17, 64, 48): the upright skeleton with the lower body 1 px to the right (about 2.9 degrees)."""
    points = UPRIGHT.copy()
    points[11:, 0] += 1
    assert 2.5 < abs(spine_of(points)[1]) < 3.0
    return render(points)[None]


def test_upright_frames_are_untouched_at_evaluation() -> None:
    heat = leaning_heatmaps()
    for _ in range(3):
        assert torch.equal(align_heatmaps(heat, gamma_deg=5.0, training=False), heat)
    # above gamma it is aligned
    assert not torch.equal(align_heatmaps(heat, gamma_deg=2.0, training=False), heat)


def test_training_skip_follows_skip_prob_and_generator() -> None:
    heat = leaning_heatmaps()
    assert torch.equal(align_heatmaps(heat, training=True, skip_prob=1.0), heat)
    assert not torch.equal(align_heatmaps(heat, training=True, skip_prob=0.0), heat)
    alpha = torch.full((4000,), math.radians(2.0))
    length = torch.full((4000,), 20.0)
    skipped = skip_mask(alpha, length, 5.0, 0.8, True, torch.Generator().manual_seed(0))
    assert 0.77 < skipped.float().mean() < 0.83
    again = skip_mask(alpha, length, 5.0, 0.8, True, torch.Generator().manual_seed(0))
    assert torch.equal(skipped, again)
    # tilted frames are never skipped, whatever the draw
    assert not skip_mask(alpha * 5, length, 5.0, 1.0, True).any()


def test_degenerate_frames_are_untouched() -> None:
    blank = torch.zeros(2, 17, 64, 48)
    blank[1, :, 5, 5] = 1.0  # every joint on one pixel: zero-length spine
    assert torch.equal(align_heatmaps(blank, training=False), blank)


def test_composite_warp_blurs_less_than_two_passes() -> None:
    heat = render(np.round(tilted_skeleton(20)))[None]
    one = align_heatmaps(heat, mode="composite")
    two = align_heatmaps(heat, mode="two_pass")
    # same geometry (neck within a fraction of a pixel), but one resampling keeps the peaks higher
    assert np.abs(centroids(one[0])[5:7] - centroids(two[0])[5:7]).max() < 0.25
    assert float(one.amax(dim=(2, 3)).mean()) > float(two.amax(dim=(2, 3)).mean())


def test_theta_of_identity_is_identity_and_inverse_is_exact() -> None:
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(forward_to_theta(eye, (64, 48)), eye)
    m = torch.tensor([[0.9, -0.3, 4.0], [0.2, 1.1, -2.0]], dtype=torch.float64)
    composed = invert_affine(invert_affine(m))
    assert torch.allclose(composed, m)
    x = torch.rand(1, 3, 64, 48)
    assert torch.allclose(warp(x, eye[None].float()), x, atol=1e-5)


def test_keeps_dtype_and_rejects_bad_shapes() -> None:
    heat = render(np.round(tilted_skeleton(20)))[None].double()
    assert align_heatmaps(heat).dtype == torch.float64
    with pytest.raises(ValueError, match=r"\(N, J, H, W\)"):
        align_heatmaps(heat[0])
    with pytest.raises(ValueError, match="mode"):
        align_heatmaps(heat, mode="three_pass")  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(
    degrees=st.floats(-40, 40),
    dx=st.floats(-6, 6),
    dy=st.floats(-4, 4),
    mode=st.sampled_from(["composite", "two_pass"]),
)
def test_any_pose_lands_on_target_with_given_keypoints(degrees: float, dx: float, dy: float, mode: str) -> None:
    points = tilted_skeleton(degrees) + np.array([dx, dy])
    keypoints = torch.from_numpy(points).float()[None]
    out = align_heatmaps(render(points)[None], keypoints, gamma_deg=-1.0, mode=mode)[0]  # type: ignore[arg-type]
    neck, tilt = spine_of(centroids(out))
    assert abs(tilt) < 0.5
    assert np.hypot(*(neck - (24, 16))) < 0.3


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_alignment_on_cuda_matches_cpu() -> None:
    heat = render(np.round(tilted_skeleton(20)))[None]
    gpu = align_heatmaps(heat.cuda(), training=False).cpu()
    assert torch.allclose(gpu, align_heatmaps(heat, training=False), atol=1e-4)
