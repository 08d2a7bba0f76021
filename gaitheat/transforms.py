"""Per-sequence transforms: normalisation (train and test alike) and random training augmentation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

EPS = 1e-6


def normalise_sequence(heatmaps: np.ndarray) -> np.ndarray:
    """Min-max normalise a whole sequence to [0, 1] (the official ``Sequence_level`` transform).

    Unlike the official code, min and max are always taken per sequence (never over a test batch),
    in float32, and a constant sequence maps to zeros instead of dividing by zero.

    Args:
        heatmaps: (T, J, H, W) array.
    Returns:
        (T, J, H, W) float32 in [0, 1].
    """
    x = np.asarray(heatmaps, dtype=np.float32)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < EPS:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


# ---- random augmentation (training only) --------------------------------------------------------
# Pure functions of an array and an explicit ``rng``: the DataLoader worker seeds ``rng`` from the
# pick's seed, so a resumed run draws the same augmentations. Keypoints are (T, V, 3) x, y, score in
# heatmap pixels of the crop; silhouette-like maps are (T, H, W) or (T, C, H, W) float.


def swap_joints(kp: np.ndarray, rng: np.random.Generator, prob: float, flip: Sequence[int]) -> np.ndarray:
    """Per frame, with probability ``prob``, exchange left and right joints (x is left alone).

    FastPoseGait's ``InversePosesPre``: a pose estimator's left/right confusion, not a mirror image.
    """
    out = np.array(kp, dtype=np.float32, copy=True)
    swap = rng.random(out.shape[0]) < prob
    out[swap] = out[swap][:, list(flip)]
    return out


def mirror_x(kp: np.ndarray, flip: Sequence[int]) -> np.ndarray:
    """Mirror a walker about its mean x: x -> 2 mean - x, and swap left/right joints to match."""
    out = np.array(kp, dtype=np.float32, copy=True)[:, list(flip)]
    centre = out[:, :, 0].mean()
    out[:, :, 0] = 2 * centre - out[:, :, 0]
    return out


def reverse_time(x: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """With probability ``prob``, the sequence played backwards (FastPoseGait's ``FlipSequence``)."""
    return np.ascontiguousarray(x[::-1]) if rng.random() < prob else x


def point_noise(kp: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Independent Gaussian noise on every joint's x and y in every frame (score untouched)."""
    if std <= 0:
        return kp
    out = np.array(kp, dtype=np.float32, copy=True)
    out[..., :2] += rng.normal(0.0, std, out[..., :2].shape).astype(np.float32)
    return out


def joint_noise(kp: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Gaussian noise per joint, the same in every frame: a shifted joint, not jitter."""
    if std <= 0:
        return kp
    out = np.array(kp, dtype=np.float32, copy=True)
    out[..., :2] += rng.normal(0.0, std, (1, out.shape[1], 2)).astype(np.float32)
    return out


def random_move(kp: np.ndarray, rng: np.random.Generator, dx: float, dy: float) -> np.ndarray:
    """The whole sequence shifted by a uniform draw in [-dx, dx] x [-dy, dy] (``RandomMove``)."""
    if dx <= 0 and dy <= 0:
        return kp
    out = np.array(kp, dtype=np.float32, copy=True)
    out[..., 0] += np.float32(rng.uniform(-dx, dx))
    out[..., 1] += np.float32(rng.uniform(-dy, dy))
    return out


def augment_keypoints(
    inputs: dict[str, np.ndarray],
    rng: np.random.Generator,
    *,
    flip: Sequence[int],
    swap_prob: float = 0.0,
    reverse_prob: float = 0.0,
    point_std: float = 0.0,
    joint_std: float = 0.0,
    move: tuple[float, float] = (0.0, 0.0),
    key: str = "keypoints",
) -> dict[str, np.ndarray]:
    """The released keypoint augmentations, composed (bound with ``functools.partial`` in ``spec()``).

    Order: left/right swap, time reversal, point noise, joint noise, global move. The noises are
    i.i.d. per joint, so their order relative to the swap does not change their distribution.
    """
    kp = swap_joints(inputs[key], rng, swap_prob, flip) if swap_prob > 0 else inputs[key]
    kp = reverse_time(kp, rng, reverse_prob) if reverse_prob > 0 else kp
    kp = point_noise(kp, rng, point_std)
    kp = joint_noise(kp, rng, joint_std)
    kp = random_move(kp, rng, *move)
    return {**inputs, key: kp}


def _warp_frames(x: np.ndarray, warp: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a 2-D warp to every (H, W) plane of a (T, H, W) or (T, C, H, W) array."""
    planes = x.reshape(-1, *x.shape[-2:])
    return np.stack([warp(p) for p in planes]).reshape(x.shape).astype(np.float32)


def random_rotate(x: np.ndarray, rng: np.random.Generator, prob: float, degree: float = 10.0) -> np.ndarray:
    """With probability ``prob``, every frame rotated by one angle in [-degree, degree] about the centre.

    OpenGait's ``RandomRotate`` passes (h // 2, w // 2) as the (x, y) centre; we rotate about the
    image centre (a small shift on 64 x 44 frames, not reproduced).
    """
    if rng.random() >= prob:
        return x
    import cv2

    h, w = x.shape[-2:]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(rng.uniform(-degree, degree)), 1.0)
    return _warp_frames(np.asarray(x, np.float32), lambda p: cv2.warpAffine(p, m, (w, h)))


def random_perspective(x: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """With probability ``prob``, one random horizontal keystone warp for all frames (``RandomPerspective``).

    The top and bottom edges' ends move inwards by up to ``10 * (w // 44)`` pixels each.
    """
    if rng.random() >= prob:
        return x
    import cv2

    h, w = x.shape[-2:]
    cut = max(1, (w // 44) * 10)
    left = rng.integers(0, cut, 2)
    right = rng.integers(w - cut, w, 2)
    src = np.array([[left[0], 0], [right[0], 0], [right[1], h], [left[1], h]], dtype=np.float32)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    return _warp_frames(np.asarray(x, np.float32), lambda p: cv2.warpPerspective(p, m, (w, h)))


def random_hflip(x: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """With probability ``prob``, every frame mirrored left-right."""
    return np.ascontiguousarray(x[..., ::-1]) if rng.random() < prob else x


def random_erasing(
    x: np.ndarray, rng: np.random.Generator, prob: float, area: tuple[float, float] = (0.05, 0.2), ratio: float = 0.3
) -> np.ndarray:
    """With probability ``prob``, one rectangle (same in every frame) set to 0 (OpenGait's ``RandomErasing``).

    Its area is uniform in ``area`` (fraction of the frame), its aspect uniform in [ratio, 1 / ratio];
    up to 100 draws for a rectangle that fits, else nothing is erased.
    """
    if rng.random() >= prob:
        return x
    h, w = x.shape[-2:]
    for _ in range(100):
        target = rng.uniform(*area) * h * w
        aspect = rng.uniform(ratio, 1 / ratio)
        eh, ew = round(float(np.sqrt(target * aspect))), round(float(np.sqrt(target / aspect)))
        if ew < w and eh < h:
            y0, x0 = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            out = np.array(x, dtype=np.float32, copy=True)
            out[..., y0 : y0 + eh, x0 : x0 + ew] = 0.0
            return out
    return x


def augment_maps(
    inputs: dict[str, np.ndarray],
    rng: np.random.Generator,
    *,
    key: str,
    perspective: float = 0.0,
    hflip: float = 0.0,
    rotate: float = 0.0,
    erase: float = 0.0,
) -> dict[str, np.ndarray]:
    """OpenGait's silhouette-style augmentations in its order: perspective, flip, rotate, erase."""
    x = inputs[key]
    x = random_perspective(x, rng, perspective) if perspective > 0 else x
    x = random_hflip(x, rng, hflip) if hflip > 0 else x
    x = random_rotate(x, rng, rotate) if rotate > 0 else x
    x = random_erasing(x, rng, erase) if erase > 0 else x
    return {**inputs, key: x}
