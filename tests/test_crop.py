"""Golden geometry of the RGB-space person crop and the heatmap -> source-pixel map."""

from __future__ import annotations

import numpy as np
import pytest

from gaitheat.crop import (
    apply_affine,
    crop_affine,
    crop_person,
    heatmap_to_image,
    invert_affine,
    keypoints_box,
    pad_box,
)


def test_pad_box_pads_about_centre_and_grows_short_side_to_three_by_four() -> None:
    tall = pad_box(np.array([100, 100, 140, 300]))  # 40 x 200: width grows
    assert np.allclose(tall, [26.25, 75, 213.75, 325])  # h = 250, w = 187.5, centre (120, 200)
    wide = pad_box(np.array([0, 0, 300, 100]))  # 300 x 100: height grows
    w, h = wide[2] - wide[0], wide[3] - wide[1]
    assert w == pytest.approx(375) and h == pytest.approx(500)
    assert np.allclose(pad_box(np.zeros((0, 4))).shape, (0, 4))


def test_crop_puts_box_corners_on_crop_corners_and_inverts() -> None:
    box = np.array([50.0, 20.0, 125.0, 120.0])  # 75 x 100 = 3:4
    matrix = crop_affine(box, (256, 192))
    corners = apply_affine(matrix, np.array([[50, 20], [125, 120]]))
    assert np.allclose(corners, [[0, 0], [192, 256]])
    back = apply_affine(invert_affine(matrix), corners)
    assert np.allclose(back, [[50, 20], [125, 120]])


def test_crop_person_samples_the_right_pixels_and_zero_pads_outside() -> None:
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[60:64, 100:104] = 255  # a white dot at source (101.5, 61.5)
    box = np.array([-25.0, 0.0, 125.0, 200.0])  # sticks out of the left edge
    crop, matrix = crop_person(frame, box, (256, 192))
    assert crop.shape == (256, 192, 3)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    u, v = apply_affine(matrix, np.array([101.5, 61.5]))
    assert abs(xs.mean() - u) < 1.0 and abs(ys.mean() - v) < 1.0
    assert crop[:, : int(25 * 256 / 200) - 1].max() == 0  # left of the image: black


def test_heatmap_points_map_to_source_pixels_with_stride_four() -> None:
    box = np.array([[10.0, 20.0, 58.0, 84.0]])  # 48 x 64: one heatmap cell = one pixel
    pts = np.array([[[0, 0, 0.9], [47, 63, 0.5], [24, 32, 0.7]]], np.float32)
    out = heatmap_to_image(pts, box, (64, 48))
    assert np.allclose(out[0, :, :2], [[10, 20], [57, 83], [34, 52]])
    assert np.allclose(out[0, :, 2], [0.9, 0.5, 0.7])  # scores untouched


def test_keypoints_box_needs_enough_confident_joints() -> None:
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0] = np.linspace(10, 30, 17)
    kp[:, 1] = np.linspace(0, 100, 17) + 50
    kp[:, 2] = 0.9
    box = keypoints_box(kp)
    assert box is not None and box[1] < 50 and box[3] > 150 and box[0] == pytest.approx(10)
    kp[:12, 2] = 0.1
    assert keypoints_box(kp) is None


def test_erase_people_paints_the_masked_person_out_inside_the_region_only() -> None:
    from gaitheat.crop import erase_people

    rgb = np.full((120, 160, 3), (40, 90, 160), np.uint8)
    rgb[30:90, 50:70] = (250, 20, 20)  # the person in front
    rgb[30:90, 76:84] = (20, 250, 20)  # someone beside them
    crop_box = pad_box(np.array([50.0, 30.0, 70.0, 90.0]))
    matrix = crop_affine(crop_box, (64, 48))
    mask = np.zeros((64, 48), bool)  # the front person's mask over their 64 x 48 crop
    for y, x in np.ndindex(*mask.shape):
        sx, sy = (x - matrix[0, 2]) / matrix[0, 0], (y - matrix[1, 2]) / matrix[1, 1]
        mask[y, x] = 50 <= sx < 70 and 30 <= sy < 90
    out = erase_people(rgb, mask[None], crop_box[None], np.array([0, 0, 160, 120]))
    red = (out[..., 0] > 200) & (out[..., 1] < 60)
    assert red.sum() == 0  # the front person is gone ...
    painted = np.median(out[40:80, 52:68].reshape(-1, 3), axis=0)
    assert np.abs(painted - (40, 90, 160)).max() < 20  # ... painted from the background around them
    assert (out[30:90, 77:84] == (20, 250, 20)).all()  # the other person is left as they were
    assert (out[:, 100:] == rgb[:, 100:]).all()
    inside = erase_people(rgb, mask[None], crop_box[None], np.array([0, 0, 55, 120]))
    assert (inside[:, 55:] == rgb[:, 55:]).all() and (inside[:, :45] == rgb[:, :45]).all()  # region only
    assert (erase_people(rgb, mask[:0][None][:0], crop_box[None][:0], np.array([0, 0, 160, 120])) == rgb).all()


def test_erase_keeps_a_mask_to_its_own_persons_body() -> None:
    """A person mask that also covers someone overlapping them is painted out only near the posed person's limbs."""
    from gaitheat.crop import body_band, erase_people

    kp = np.zeros((17, 3))
    kp[:, 2] = 1.0
    kp[:, 0] = 60.0  # an upright stick figure at x = 60, from the nose (y 30) to the ankles (y 100)
    kp[:, 1] = np.linspace(30, 100, 17)
    band = body_band(kp, (120, 160))
    assert band[60, 60] == 1 and band[60, 100] == 0 and band.sum() < 0.2 * band.size
    np.testing.assert_array_equal(body_band(kp, (120, 160), origin=(10, 0))[:, :-10], band[:, 10:])
    rgb = np.full((120, 160, 3), (40, 90, 160), np.uint8)
    rgb[28:102, 57:64] = (250, 20, 20)  # the posed person, a thin one (as wide as the band around their joints)
    rgb[25:105, 90:110] = (20, 250, 20)  # someone their mask also covers
    crop_box = pad_box(np.array([40.0, 20.0, 120.0, 110.0]))
    mask = np.ones((64, 48), bool)  # a mask over the whole crop: both people
    out = erase_people(rgb, mask[None], crop_box[None], np.array([0, 0, 160, 120]), image_keypoints=kp[None])
    assert ((out[..., 0] > 200) & (out[..., 1] < 60)).sum() == 0  # the posed person is gone
    assert (out[30:100, 95:110] == (20, 250, 20)).all()  # the other is left as they were
