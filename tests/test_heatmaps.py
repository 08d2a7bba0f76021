"""Heatmaps <-> keypoints: sub-pixel decoding, regenerated Gaussians, SkeletonGait skeleton maps."""

from __future__ import annotations

import numpy as np
import pytest

from gaitheat.heatmaps import (
    COCO17_LIMBS,
    _draw_limbs,
    _skeleton_canvas_points,
    keypoints_from_heatmaps,
    refine_keypoints,
    render_gaussians,
    render_skeleton_maps,
)

# A standing COCO-17 person in 64 x 48 heatmap cells, symmetric about column 24 (left = person's left).
STANDING = np.array([[24, 8], [25, 7], [23, 7], [26, 8], [22, 8], [28, 16], [20, 16], [30, 24], [18, 24],
                     [31, 31], [17, 31], [27, 32], [21, 32], [27, 44], [21, 44], [27, 56], [21, 56]], np.float64)


def _with_scores(xy: np.ndarray, score: float = 0.9) -> np.ndarray:
    return np.concatenate([xy, np.full((*xy.shape[:-1], 1), score)], axis=-1)


def test_regenerated_peaks_lie_within_a_quarter_cell_of_subpixel_keypoints() -> None:
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform((3, 3), (45, 61), size=(20, 17, 2)),
                         rng.uniform(0.2, 1.0, size=(20, 17, 1))], axis=-1).astype(np.float32)
    maps = render_gaussians(kp, sigma=2.0)
    assert maps.shape == (20, 17, 64, 48) and maps.dtype == np.float32
    back = keypoints_from_heatmaps(maps)
    error = np.abs(back[..., :2] - kp[..., :2])
    assert error.max() <= 0.25 + 1e-5
    # the integer decoding is up to half a cell off, so the refinement is what brings it under 0.25
    coarse = keypoints_from_heatmaps(maps, subpixel=False)
    assert np.abs(coarse[..., :2] - kp[..., :2]).max() > 0.4
    assert np.array_equal(np.round(back[..., :2]), coarse[..., :2])  # never leaves the argmax cell
    # the peak is the score, less the Gaussian's fall-off to the nearest cell centre
    d2 = ((coarse[..., :2] - kp[..., :2]) ** 2).sum(-1)
    np.testing.assert_allclose(back[..., 2], kp[..., 2] * np.exp(-d2 / 8), rtol=1e-5)


def test_zero_score_and_non_finite_joints_draw_nothing_and_peak_one_is_an_option() -> None:
    kp = _with_scores(STANDING[None].copy(), 0.6)
    kp[0, 3, 2] = 0.0
    kp[0, 4, 0] = np.nan
    maps = render_gaussians(kp)
    assert not maps[0, 3].any() and not maps[0, 4].any()
    assert maps[0, 0].max() == pytest.approx(0.6, abs=1e-6)  # integer keypoint: the peak is the score
    ones = render_gaussians(kp, score_peak=False)
    assert ones[0, 0].max() == pytest.approx(1.0) and not ones[0, 3].any()
    wide = render_gaussians(kp, sigma=4.0)
    assert (wide[0, 0] > 0.3).sum() > 3 * (maps[0, 0] > 0.3).sum()
    with pytest.raises(ValueError, match="sigma"):
        render_gaussians(kp, sigma=0)
    with pytest.raises(ValueError, match=r"\(T, J, 3\)"):
        render_gaussians(kp[0])


def test_refinement_moves_a_quarter_cell_towards_the_higher_neighbour_only() -> None:
    heat = np.zeros((1, 4, 8, 6), np.float32)
    heat[0, 0, 3, 2], heat[0, 0, 3, 3], heat[0, 0, 4, 2] = 1.0, 0.5, 0.2  # right and down are higher
    heat[0, 1, 5, 4], heat[0, 1, 5, 3], heat[0, 1, 4, 4] = 1.0, 0.5, 0.7  # left and up
    heat[0, 2, 0, 5] = 1.0  # corner: no neighbour on either side, not moved
    heat[0, 3, 4, 2], heat[0, 3, 4, 1], heat[0, 3, 4, 3] = 1.0, 0.3, 0.3  # tie on x: not moved on x
    coarse = keypoints_from_heatmaps(heat, subpixel=False)
    fine = refine_keypoints(heat, coarse)
    np.testing.assert_array_equal(fine[0, :, :2], [[2.25, 3.25], [3.75, 4.75], [5.0, 0.0], [2.0, 4.0]])
    np.testing.assert_array_equal(fine[..., 2], coarse[..., 2])


def test_skeleton_maps_match_opengait_arithmetic_and_normalise_position_and_scale() -> None:
    kp = _with_scores(STANDING[None].repeat(3, 0))
    kp[1, :, :2] = kp[1, :, :2] * 3.0 + [100.0, -40.0]  # same pose, elsewhere and bigger: same maps
    kp[2] = kp[0]
    kp[2, :, 2] = 0.45
    maps = render_skeleton_maps(kp)
    assert maps.shape == (3, 2, 64, 64) and maps.dtype == np.float32
    np.testing.assert_allclose(maps[1], maps[0], atol=1.5 / 255)
    assert np.abs(maps * 255 - np.round(maps * 255)).max() < 1e-3  # 8-bit values, as OpenGait stores them
    # centring: the mid-hip goes to the canvas centre and the keypoints span 128 // 1.5 = 85 px; this
    # person is symmetric about the mid-hip, so the maps' column centroid is the square's centre
    xy, _ = _skeleton_canvas_points(kp, 128)
    np.testing.assert_allclose((xy[:, 11] + xy[:, 12]) / 2, 64.0)
    np.testing.assert_allclose(xy[..., 1].max(1) - xy[..., 1].min(1), 85.0)
    columns = (maps[0] * np.arange(64)).sum(axis=(1, 2)) / maps[0].sum(axis=(1, 2))
    np.testing.assert_allclose(columns, 31.5, atol=0.5)
    # the peak follows the scores; the limb map covers the segments, the joint map only the joints
    assert maps[0].max() == pytest.approx(0.9, abs=0.02) and maps[2].max() == pytest.approx(0.45, abs=0.02)
    limb, joint = maps[0]
    assert (limb > 0.8).sum() > 2 * (joint > 0.8).sum()
    # mid-shin (between knee and ankle, where no joint is): bright in the limb map, darker in the joint map
    row = 40 + int(joint[40:56].max(axis=1).argmin())
    assert limb[row].max() > 0.8 and joint[row].max() < limb[row].max() - 0.3


def test_skeleton_maps_without_usable_joints_are_blank() -> None:
    kp = _with_scores(STANDING[None].repeat(2, 0))
    kp[0, :, 2] = 0.0  # nobody
    kp[1, 11:13, 2] = 0.0  # no hips: no centre
    assert not render_skeleton_maps(kp).any()
    assert render_skeleton_maps(kp[:0]).shape == (0, 2, 64, 64)


def test_limb_drawing_equals_a_per_pixel_reference() -> None:
    """OpenGait's limb Gaussian: distance to the segment, its 3-sigma window, peak = smaller end score."""
    kp = _with_scores(STANDING[None].copy())
    kp[0, 2, :2] = kp[0, 0, :2] + [0.4, 0.3]  # a limb shorter than 1 px is drawn as its start joint
    kp[0, 9, 2] = 0.3
    xy, score = _skeleton_canvas_points(kp, 128)
    got = _draw_limbs(xy, score, COCO17_LIMBS, 8.0, 128)[0]
    ref = np.zeros((128, 128))
    for i, j in COCO17_LIMBS:
        a, b = xy[0, i], xy[0, j]
        short = ((b - a) ** 2).sum() < 1
        value = score[0, i] if short else min(score[0, i], score[0, j])
        lo, hi = (a, a) if short else (np.minimum(a, b), np.maximum(a, b))
        for v in range(max(int(lo[1] - 24), 0), min(int(hi[1] + 24) + 1, 128)):
            for u in range(max(int(lo[0] - 24), 0), min(int(hi[0] + 24) + 1, 128)):
                p = np.array([u, v], np.float64)
                t = 0.0 if short else np.clip((p - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
                ref[v, u] = max(ref[v, u], value * np.exp(-((p - a - t * (b - a)) ** 2).sum() / 128))
    np.testing.assert_allclose(got, ref, atol=1e-5)
