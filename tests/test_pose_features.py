"""Skeleton graph, in-forward keypoint features (velocities, HOT, HOD) and the numpy augmentations, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gaitheat import transforms
from gaitheat.models.graph import COCO, COCO_FLIP, hop_adjacency, part_mask
from gaitheat.models.pose_features import hod_angles, rescale_center, upright_spine, velocities


def test_hop_adjacency_is_column_stochastic_within_reach() -> None:
    a = hop_adjacency(COCO, 3)
    assert a.shape == (4, 17, 17)
    np.testing.assert_allclose(a.sum((0, 1)), 1.0, atol=1e-6)
    assert a[0, 5, 5] > 0 and a[1, 7, 5] > 0 and a[1, 9, 5] == 0 and a[2, 9, 5] > 0  # wrist 2 hops from shoulder
    mask = part_mask(COCO, 1)
    assert mask[5, 9] == 1 and mask[5, 6] == 0 and mask[0, 4] == 1


def test_velocities_and_hot_hod_by_hand() -> None:
    xy = torch.tensor([[[[0.0, 0.0]], [[1.0, 2.0]], [[3.0, 3.0]], [[6.0, 3.0]]]])  # (1, 4, 1, 2)
    v1, v2 = velocities(xy)
    assert v1[0, :, 0].tolist() == [[1.0, 2.0], [2.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    assert v2[0, :, 0].tolist() == [[3.0, 3.0], [5.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    kp = torch.zeros(1, 1, 17, 2)
    kp[0, 0, :, 1] = torch.linspace(10, 60, 17)  # a vertical stick 50 tall
    kp[0, 0, 5] = torch.tensor([4.0, 20.0])
    kp[0, 0, 6] = torch.tensor([8.0, 20.0])
    out = rescale_center(kp)
    assert float(out[0, 0, :, 1].max() - out[0, 0, :, 1].min()) == pytest.approx(225.0)
    torch.testing.assert_close(out[0, 0, 5:7].mean(0), torch.zeros(2))
    # a right angle at the left elbow (7) between shoulder (5) and wrist (9): HOD gives pi - pi/2
    pose = torch.zeros(1, 1, 17, 2)
    pose[0, 0, 7] = torch.tensor([0.0, 1.0])
    pose[0, 0, 9] = torch.tensor([1.0, 1.0])  # shoulder 5 stays at (0, 0)
    pose[0, 0, 3] = torch.tensor([2.0, 2.0])  # ear 3 vs eye 1 at (0, 0): 45 degrees off the vertical
    angles = hod_angles(pose)
    assert float(angles[0, 0, 7]) == pytest.approx(math.pi / 2)
    assert float(angles[0, 0, 3]) == pytest.approx(math.pi - math.pi / 4)


def test_keypoint_augmentations_by_hand() -> None:
    kp = np.zeros((3, 17, 3), np.float32)
    kp[..., 0] = np.arange(17)
    swapped = transforms.swap_joints(kp, np.random.default_rng(0), 1.0, COCO_FLIP)
    assert swapped[0, :, 0].tolist() == [float(j) for j in COCO_FLIP]
    mirrored = transforms.mirror_x(kp, COCO_FLIP)
    assert mirrored[0, 1, 0] == pytest.approx(16 - 2)  # left eye takes the right eye's x, mirrored about 8
    noisy = transforms.joint_noise(kp, np.random.default_rng(0), 1.0)
    delta = noisy - kp
    np.testing.assert_allclose(delta[0], delta[2])  # the same shift in every frame
    assert np.abs(delta[..., :2]).sum() > 0 and np.all(delta[..., 2] == 0)
    ramp = kp + np.arange(3, dtype=np.float32)[:, None, None]
    np.testing.assert_array_equal(transforms.reverse_time(ramp, np.random.default_rng(0), 1.0)[0], kp[0] + 2)


def test_upright_spine_puts_the_hips_below_the_neck() -> None:
    kp = torch.zeros(1, 1, 17, 2)
    kp[0, 0, 5], kp[0, 0, 6] = torch.tensor([9.0, 10.0]), torch.tensor([11.0, 10.0])  # neck (10, 10)
    kp[0, 0, 11], kp[0, 0, 12] = torch.tensor([12.0, 13.0]), torch.tensor([14.0, 13.0])  # hips (13, 13): 45 deg
    out = upright_spine(kp)
    hip = out[0, 0, 11:13].mean(0)
    assert float(hip[0]) == pytest.approx(10.0, abs=1e-5)
    assert float(hip[1]) == pytest.approx(10.0 + math.sqrt(18.0), abs=1e-5)  # lengths are kept
