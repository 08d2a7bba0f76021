"""Shared fixtures: the real test media folder and realistic synthetic heatmaps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".cache/opencv-doc/usr/share/doc/opencv-doc/examples/data"


def test_data_dir() -> Path:
    """Folder with vtest.avi, messi5.jpg, basketball1.png (Debian opencv-doc; `make test` fetches it)."""
    return Path(os.environ.get("GAITHEAT_TEST_DATA") or DEFAULT_DATA)


MEDIA = ("vtest.avi", "messi5.jpg", "basketball1.png")


def media_required() -> bool:
    """Missing media fails the run under `make test` (it sets GAITHEAT_TEST_DATA) and in CI (CI is set).

    A plain ``pytest`` on a developer's machine without the media skips those tests, saying why.
    """
    return bool(os.environ.get("GAITHEAT_TEST_DATA") or os.environ.get("CI"))


@pytest.fixture(scope="session")
def media_dir() -> Path:
    folder = test_data_dir()
    missing = [name for name in MEDIA if not (folder / name).is_file()]
    if missing:
        why = (f"real test media missing at {folder}: {', '.join(missing)} (run `make test`, which extracts "
               "Debian's opencv-doc)")
        if media_required():
            pytest.fail(why + "; GAITHEAT_TEST_DATA or CI is set, so the media are required", pytrace=False)
        pytest.skip(why + "; set GAITHEAT_TEST_DATA or CI to make this a failure")
    return folder


def gaussian_heatmaps(t: int, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    """(T, 17, 64, 48) float32: a Gaussian peak per joint on a faint body-shaped shade, values in about
    [-0.01, 0.95] (regression heatmaps can be slightly negative)."""
    yy, xx = np.mgrid[0:64, 0:48].astype(np.float32)
    shade = 0.05 * np.exp(-((xx - 24) ** 2 / (2 * 8**2) + (yy - 32) ** 2 / (2 * 20**2)))
    centres = rng.uniform((8, 8), (56, 40), size=(t, 17, 2)).astype(np.float32)
    cy, cx = centres[..., 0, None, None], centres[..., 1, None, None]
    peaks = rng.uniform(0.5, 0.95, size=(t, 17, 1, 1)).astype(np.float32)
    heat = peaks * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)) + shade - 0.01
    return heat.astype(np.float32)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for the test: on 2 shared cores a second thread mostly spins."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_tiny_checkpoint(path: Path, seed: int = 0, num_classes: int = 5, step: int = 1) -> Path:
    """A cpu-small GaitHeat (4 strips) checkpoint with random weights and non-trivial BatchNorm statistics."""
    import torch

    from gaitheat.config import load_config, to_dict
    from gaitheat.experiment import ExperimentConfig
    from gaitheat.models import build_model

    torch.manual_seed(seed)
    cfg = load_config(ExperimentConfig, "cpu-small", ["model.parts=4"])
    model = build_model(cfg.model, num_classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    torch.save({"step": step, "model": model.state_dict(), "config": to_dict(cfg), "num_classes": num_classes,
                "subjects": [f"{i:03d}" for i in range(1, num_classes + 1)]}, path)
    return path
