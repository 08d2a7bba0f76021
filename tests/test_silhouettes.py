"""Silhouettes: OpenGait-style alignment on hand-made masks, BlazePose's segmentation read on the pose
invoke (real model), and the synthetic renderer's true body masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitheat.silhouettes import (
    SILHOUETTE_HW,
    align_silhouette,
    align_silhouettes,
    body_rows,
    cut_opengait_width,
    iou_with_true_masks,
    silhouette_iou,
)


def _walker_mask(h: int = 240, w: int = 320, top: int = 40, height: int = 160, cx: int = 150) -> np.ndarray:
    """A crude person: head disc, torso ellipse, two legs, one arm reaching forward (to the right)."""
    mask = np.zeros((h, w), np.uint8)
    s = height / 160
    cv2.circle(mask, (cx, round(top + 12 * s)), round(12 * s), 1, -1)
    cv2.ellipse(mask, (cx, round(top + 55 * s)), (round(16 * s), round(32 * s)), 0, 0, 360, 1, -1)
    cv2.line(mask, (cx - 6, round(top + 85 * s)), (cx - round(18 * s), top + height - 1), 1, max(1, round(9 * s)))
    cv2.line(mask, (cx + 6, round(top + 85 * s)), (cx + round(14 * s), top + height - 1), 1, max(1, round(9 * s)))
    cv2.line(mask, (cx + 10, round(top + 35 * s)), (cx + round(40 * s), round(top + 70 * s)), 1, max(1, round(5 * s)))
    return mask.astype(bool)


def test_alignment_spans_the_height_centres_the_mass_median_and_is_binary() -> None:
    mask = _walker_mask()
    sil = align_silhouette(mask)
    assert sil.shape == SILHOUETTE_HW and sil.dtype == np.uint8
    assert set(np.unique(sil)) == {0, 255}
    rows = np.flatnonzero(sil.any(axis=1))
    assert rows[0] == 0 and rows[-1] == 63  # height normalised to the full 64 rows
    # OpenGait's centre: the first column where the cumulative column mass passes half the total, at
    # position 32 of its 64-wide window, i.e. 22 after the 10-column cut.
    mass = (sil > 0).sum(axis=0).cumsum()
    assert abs(int(np.argmax(mass > mass[-1] / 2)) - 22) <= 1
    # The forward arm pulls the mean to the right of the mass median, the one OpenGait (and we) centre on.
    cols = np.nonzero(sil)[1]
    assert cols.mean() > 22


def test_alignment_undoes_position_and_scale() -> None:
    mask = _walker_mask()
    scaled = cv2.resize(mask.astype(np.uint8), None, fx=2.5, fy=2.5, interpolation=cv2.INTER_NEAREST)
    elsewhere = np.zeros((900, 1000), np.uint8)
    elsewhere[200:200 + scaled.shape[0], 150:150 + scaled.shape[1]] = scaled
    small, big = align_silhouette(mask), align_silhouette(elsewhere)
    # Only resampling differs (measured 0.92): one column of misalignment alone would give 0.72.
    assert silhouette_iou(small[None], big[None])[0] > 0.9
    assert silhouette_iou(small[None], np.roll(small, 1, axis=1)[None])[0] < 0.8


def test_specks_above_the_head_do_not_shrink_the_person_and_empty_masks_give_zeros() -> None:
    mask = _walker_mask()
    noisy = mask.copy()
    noisy[5, 20] = noisy[6, 21] = True  # a speck far above the head
    noisy[236, 300] = True  # and one below the feet
    assert body_rows(noisy) == body_rows(mask)
    np.testing.assert_array_equal(align_silhouette(noisy), align_silhouette(mask))
    # A second body-sized blob is not a speck: it stays in the row range.
    two = mask.copy()
    two[205:235, 10:60] = True
    assert body_rows(two)[1] == 234
    assert not align_silhouette(np.zeros((50, 40), bool)).any()
    assert body_rows(np.zeros((5, 5), bool)) is None


def test_a_person_at_the_image_edge_is_padded_with_zeros() -> None:
    mask = _walker_mask(cx=20)[:, 8:]  # part of the arm and torso run off the left edge
    sil = align_silhouette(mask)
    assert sil.any() and not sil[:, :3].any()  # zeros where the window leaves the image


def test_batch_alignment_and_bad_shapes() -> None:
    masks = np.stack([_walker_mask(), np.zeros((240, 320), bool), _walker_mask(cx=200)])
    sils = align_silhouettes(masks)
    assert sils.shape == (3, *SILHOUETTE_HW)
    np.testing.assert_array_equal(sils[0], align_silhouette(masks[0]))
    assert not sils[1].any()
    with pytest.raises(ValueError, match="shape"):
        align_silhouettes(masks[0])
    with pytest.raises(ValueError, match="shape"):
        align_silhouette(masks)


def test_opengait_width_cut() -> None:
    square = np.arange(2 * 64 * 64, dtype=np.uint8).reshape(2, 64, 64)
    cut = cut_opengait_width(square)
    assert cut.shape == (2, 64, 44)
    np.testing.assert_array_equal(cut, square[:, :, 10:54])
    assert cut_opengait_width(cut) is cut
    with pytest.raises(ValueError, match=r"\(T, 64, 64\) or \(T, 64, 44\)"):
        cut_opengait_width(np.zeros((2, 64, 48), np.uint8))


def test_iou_by_hand_and_against_true_masks() -> None:
    a = np.zeros((3, 4, 4), np.uint8)
    b = np.zeros((3, 4, 4), np.uint8)
    a[0, :2, :2] = 255  # 4 pixels
    b[0, :2, :3] = 255  # 6 pixels, 4 shared
    a[1, 0, 0] = 255  # disjoint
    b[1, 3, 3] = 255
    iou = silhouette_iou(a, b)
    assert iou[0] == pytest.approx(4 / 6) and iou[1] == 0.0 and np.isnan(iou[2])
    with pytest.raises(ValueError, match="shape"):
        silhouette_iou(a, b[:2])
    masks = np.stack([_walker_mask(cx=100 + 10 * t) for t in range(5)])
    stored = align_silhouettes(masks[[1, 3]])
    np.testing.assert_allclose(iou_with_true_masks(stored, np.array([1, 3]), masks), 1.0)
    assert iou_with_true_masks(stored, np.array([3, 1]), masks).max() < 1.0  # wrong frames do not match
    with pytest.raises(ValueError, match="outside"):
        iou_with_true_masks(stored, np.array([1, 5]), masks)


# ------------------------------------------------------------------------- the renderer's true masks


def test_renderer_masks_match_its_frames_and_round_trip(tmp_path: Path) -> None:
    from gaitheat.synth import (
        load_body_masks,
        mask_path,
        render_sequence,
        render_sequence_with_masks,
        sequence_paths,
        subject_identity,
        write_dataset,
    )

    person = subject_identity(3, "001", 0.5)
    (frames, _, boxes), masks = render_sequence_with_masks(person, "bg-01", "090", 3, seed=4)
    np.testing.assert_array_equal(frames, render_sequence(person, "bg-01", "090", 3, seed=4).frames)
    assert masks.shape == (3, *frames.shape[1:3]) and masks.dtype == bool
    for t in range(3):  # the figure box is the mask's extent
        rows, cols = np.flatnonzero(masks[t].any(axis=1)), np.flatnonzero(masks[t].any(axis=0))
        np.testing.assert_array_equal(boxes[t], [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    write_dataset(tmp_path, ["001"], ["nm-01"], ["090"], frames=3, seed=4, progress=False)
    video, gt = sequence_paths(tmp_path, "001", "nm-01", "090")
    stored = load_body_masks(video)
    assert stored.shape == (3, 240, 320) and stored.any()
    assert mask_path(video).stat().st_size < 3 * 240 * 320 / 8  # bit-packed and compressed
    # A tree rendered before masks existed (no mask file) is rendered again, not skipped.
    mask_path(video).unlink()
    assert write_dataset(tmp_path, ["001"], ["nm-01"], ["090"], frames=3, seed=4, progress=False)["written"] == 1
    np.testing.assert_array_equal(load_body_masks(gt), stored)
    mask_path(video).write_bytes(b"not a mask file")
    with pytest.raises(ValueError, match=r"\.mask\.npz"):
        load_body_masks(video)


# ------------------------------------------------------------------ BlazePose's mask, same invoke


@pytest.fixture(scope="module")
def blazepose():  # type: ignore[no-untyped-def]
    from gaitheat.pose import build_pose_backend

    return build_pose_backend("blazepose")


def test_blazepose_mask_is_logits_read_on_the_same_invoke_and_fits_the_body(blazepose) -> None:  # type: ignore[no-untyped-def]
    from gaitheat.crop import crop_person, pad_box
    from gaitheat.pose.base import concat_results
    from gaitheat.synth import render_sequence_with_masks, subject_identity

    (frames, _, boxes), truth = render_sequence_with_masks(subject_identity(1, "002", 0.5), "nm-01", "090", 2, seed=6)
    cropped = [crop_person(f, pad_box(b), blazepose.input_size) for f, b in zip(frames, boxes, strict=True)]
    crops, matrices = [c for c, _ in cropped], [m for _, m in cropped]
    invokes = blazepose.invokes
    result = blazepose(np.stack(crops))
    assert blazepose.invokes == invokes + 2  # one invoke per crop gives heatmaps and mask together
    assert result.masks is not None and result.masks.shape == (2, 256, 192) and result.masks.dtype == bool
    # Identity_2 holds logits (a probability would stay in [0, 1]); the mask is logit > 0 on the crop's columns.
    raw = blazepose._interpreter.tensor(blazepose._mask)()[0, :, :, 0].copy()
    assert raw.min() < -10 and raw.max() > 10
    np.testing.assert_array_equal(result.masks[1], raw[:, 32:224] > 0)
    for t in range(2):  # the renderer's body, warped into the crop, is what the mask covers
        body = cv2.warpAffine(truth[t].astype(np.float32), matrices[t], (192, 256)) > 0.5
        iou = (body & result.masks[t]).sum() / (body | result.masks[t]).sum()
        assert iou > 0.85, iou
    both = concat_results(result, blazepose(np.zeros((0, 256, 192, 3), np.uint8)))
    assert both.masks is not None and both.masks.shape == (2, 256, 192)
    assert blazepose(np.zeros((0, 256, 192, 3), np.uint8)).masks.shape == (0, 256, 192)
