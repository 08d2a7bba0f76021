"""Pose backends for real: bundled BlazePose through LiteRT on real photos, ONNX Runtime on a model
exported here from torch, and the asset checks the doctor command relies on."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitheat import assets
from gaitheat.crop import crop_person, heatmap_to_image, pad_box
from gaitheat.pose import POSE_BACKENDS, PoseBackend, build_pose_backend, decode_heatmaps
from gaitheat.pose.base import COCO17_FLIP_PAIRS
from gaitheat.pose.onnx import flip_back

# Hand-measured boxes of the one full-body person in each image (source pixels).
PEOPLE = {"messi5.jpg": (60, 55, 465, 340), "basketball1.png": (25, 70, 215, 480)}
HEAD, HIPS, ANKLES = [0, 1, 2, 3, 4], [11, 12], [15, 16]


def _rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[:, :, ::-1])


def test_assets_are_located_and_verified_without_importing_mediapipe() -> None:
    import sys

    for name in (assets.POSE_LANDMARK_FULL, assets.POSE_DETECTION):
        path = assets.verify_asset(name)
        assert path.name == name and assets.sha256_file(path) == assets.EXPECTED_SHA256[name]
    assert "mediapipe" not in sys.modules
    with pytest.raises(assets.AssetError, match="unknown asset"):
        assets.locate_asset("pose_landmark_heavy.tflite")


def test_a_wrong_model_file_is_rejected(tmp_path: Path) -> None:
    fake = tmp_path / "pose_landmark_full.tflite"
    fake.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"pose_landmark_full\.tflite"):
        build_pose_backend("blazepose", fake)
    with pytest.raises(KeyError, match="blazepose"):
        build_pose_backend("openpose")


@pytest.fixture(scope="module")
def blazepose() -> PoseBackend:
    return build_pose_backend("blazepose")


@pytest.mark.parametrize("image", sorted(PEOPLE))
def test_blazepose_heatmaps_on_real_people(media_dir: Path, blazepose: PoseBackend, image: str) -> None:
    rgb = _rgb(media_dir / image)
    box = np.array(PEOPLE[image], np.float32)
    crop_box = pad_box(box)
    crop, _ = crop_person(rgb, crop_box, blazepose.input_size)
    result = blazepose(crop[None])
    assert result.heatmaps.shape == (1, 17, 64, 48) and result.heatmaps.dtype == np.float32
    assert result.heatmaps.min() >= 0.0 and result.heatmaps.max() <= 1.0  # sigmoid of logits
    assert result.presence[0] > 0.9
    assert np.median(result.keypoints[0, :, 2]) > 0.5
    points = heatmap_to_image(result.keypoints[0], crop_box, (64, 48))
    x, y = points[:, 0], points[:, 1]
    assert ((x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])).all(), points
    assert y[HEAD].mean() < y[HIPS].mean() < y[ANKLES].mean()
    assert y[[5, 6]].mean() < y[HIPS].mean()  # shoulders above hips


def test_blazepose_presence_rejects_a_wall(media_dir: Path, blazepose: PoseBackend) -> None:
    rgb = _rgb(media_dir / "basketball1.png")
    crop, _ = crop_person(rgb, pad_box(np.array([240, 40, 400, 300], np.float32)), blazepose.input_size)
    assert blazepose(crop[None]).presence[0] < 0.5


def test_blazepose_is_deterministic_and_batches_like_singles(media_dir: Path, blazepose: PoseBackend) -> None:
    rgb = _rgb(media_dir / "messi5.jpg")
    crops = np.stack([crop_person(rgb, pad_box(np.array(b, np.float32)), (256, 192))[0]
                      for b in (PEOPLE["messi5.jpg"], (100, 40, 400, 330))])
    both = blazepose(crops)
    one = blazepose(crops[1:])
    assert np.array_equal(both.heatmaps[1], one.heatmaps[0]) and np.array_equal(both.presence[1], one.presence[0])


def test_decode_heatmaps_argmax_and_peak() -> None:
    heat = np.zeros((2, 17, 64, 48), np.float32)
    heat[1, 3, 40, 7] = 0.8
    kp = decode_heatmaps(heat)
    assert kp.shape == (2, 17, 3) and kp[1, 3].tolist() == pytest.approx([7, 40, 0.8])


# ------------------------------------------------------------------------------------------- ONNX


def _export_tiny_model(path: Path) -> None:
    """A 'pose model' whose joint j heatmap is the crop's mean of channel j % 3 (pooled by 4)."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = torch.nn.AvgPool2d(4)
            self.mix = torch.nn.Conv2d(3, 17, 1, bias=True)
            assert self.mix.bias is not None
            with torch.no_grad():
                self.mix.weight.zero_()
                for j in range(17):
                    self.mix.weight[j, j % 3] = 0.1 * (1 + j % 5)
                self.mix.bias.copy_(torch.linspace(-0.1, 0.1, 17))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mix(self.pool(x))

    # The TorchScript exporter needs no onnxscript; its deprecation notice is not this test's business.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(Tiny().eval(), (torch.zeros(1, 3, 256, 192),), str(path), input_names=["input"],
                          output_names=["heatmaps"], dynamic_axes={"input": {0: "n"}, "heatmaps": {0: "n"}},
                          dynamo=False)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "tiny-pose.onnx"
    _export_tiny_model(path)
    return path


def test_onnx_backend_normalises_like_mmpose_and_matches_torch(tiny_onnx: Path) -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 256, 192, 3), dtype=np.uint8)
    backend = build_pose_backend("onnx", tiny_onnx)
    assert "onnx" in POSE_BACKENDS and backend.sha256 == assets.sha256_file(tiny_onnx)
    result = backend(crops)
    assert result.heatmaps.shape == (3, 17, 64, 48) and np.all(result.presence == 1)
    normalised = (crops.astype(np.float64) - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]
    pooled = normalised.reshape(3, 64, 4, 48, 4, 3).mean(axis=(2, 4))  # (N, 64, 48, 3)
    expected_j4 = 0.1 * (1 + 4) * pooled[..., 1] + np.linspace(-0.1, 0.1, 17)[4]
    assert np.allclose(result.heatmaps[:, 4], expected_j4, atol=1e-4)


def test_onnx_flip_test_averages_mirrored_heatmaps(tiny_onnx: Path) -> None:
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (2, 256, 192, 3), dtype=np.uint8)
    plain = build_pose_backend("onnx", tiny_onnx)(crops).heatmaps
    mirrored = build_pose_backend("onnx", tiny_onnx)(np.ascontiguousarray(crops[:, :, ::-1])).heatmaps
    flipped = build_pose_backend("onnx", tiny_onnx, flip_test=True)(crops).heatmaps
    assert np.allclose(flipped, (plain + flip_back(mirrored)) / 2, atol=1e-5)
    left, right = COCO17_FLIP_PAIRS[2]  # shoulders
    assert np.allclose(flip_back(mirrored)[:, left], mirrored[:, right, :, ::-1])


def test_onnx_backend_rejects_wrong_inputs(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a model file"):
        build_pose_backend("onnx")
    with pytest.raises(FileNotFoundError):
        build_pose_backend("onnx", tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="expects crops"):
        build_pose_backend("onnx", tiny_onnx)(np.zeros((1, 64, 64, 3), np.uint8))
