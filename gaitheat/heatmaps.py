"""Pure functions on joint heatmaps ``(T, J, H, W)`` and on the keypoints drawn from or into them (numpy).

* :func:`keypoints_from_heatmaps` / :func:`refine_keypoints`: heatmaps -> keypoints, with the
  quarter-cell sub-pixel shift of the classic top-down decoders;
* :func:`render_gaussians`: keypoints -> "regenerated" heatmaps (the paper's Table 4 baseline);
* :func:`render_skeleton_maps`: keypoints -> SkeletonGait's 2-channel limb + joint maps.

Coordinates are heatmap pixels: ``x`` is the column and ``y`` the row of a cell centre, so the
keypoint of cell ``(row i, column j)`` is ``(j, i)`` (as :mod:`gaitheat.crop` maps them).
"""

from __future__ import annotations

import numpy as np

# The default spread of regenerated heatmaps, in heatmap cells. sigma = 2 at 64 x 48 is the training
# target of the top-down models GaitHeat stores (mmpose's MSRA heatmaps for HRNet / ViTPose at
# 256 x 192 input), and it is also the spread of our offline backend's raw heatmaps: on vtest.avi,
# BlazePose-full's peaks with score >= 0.5 fit a Gaussian of sigma 1.99 cells (median of 3217 joints,
# quartiles 1.72 and 2.39; log-quadratic fit over the cells above 20 % of the peak). So regenerated and
# raw heatmaps have the same spread and Table 4 compares where the peaks are, not how wide they are.
DEFAULT_SIGMA = 2.0

# SkeletonGait (OpenGait's ``datasets/pretreatment_heatmap.py`` with
# ``configs/skeletongait/pretreatment_heatmap.yaml``): keypoints are centred on the mid-hip, scaled so
# their vertical extent is 128 // 1.5 = 85 px on a 128 x 128 canvas, drawn with sigma 8 there, and the
# drawn region is cut to a square about the canvas centre and area-resized to 64 x 64.
SKELETON_CANVAS = 128
SKELETON_SIGMA = 8.0
SKELETON_SIZE = 64
# COCO-17 limbs, in OpenGait's (mmaction's) order: head, arms, torso sides, legs, hip line.
COCO17_LIMBS = ((0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8), (8, 10),
                (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12))
_EPS = 1e-3  # a joint below this score is not drawn (OpenGait's ``eps``)
_CHUNK = 16  # frames rendered at once: bounds the (t, J, H, W) temporaries to a few MB


def keypoints_from_heatmaps(heatmaps: np.ndarray, subpixel: bool = True) -> np.ndarray:
    """Per-channel peak keypoints.

    Args:
        heatmaps: (T, J, H, W) array.
        subpixel: apply :func:`refine_keypoints` (False: the integer argmax cell).
    Returns:
        (T, J, 3) float32: x (column), y (row) of each channel's maximum, in heatmap pixels, and the
        maximum value as score. Ties go to the first (row-major) position.
    """
    t, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(t, j, h * w)
    idx = flat.argmax(axis=-1)
    out = np.empty((t, j, 3), dtype=np.float32)
    out[..., 0] = idx % w
    out[..., 1] = idx // w
    out[..., 2] = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    return refine_keypoints(heatmaps, out) if subpixel else out


def refine_keypoints(heatmaps: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Sub-pixel keypoints: each argmax cell moved a quarter cell towards its higher neighbour, per axis.

    This is the decoding of SimpleBaseline / HRNet (mmpose's classic ``refine_keypoints``), chosen over
    a local soft-argmax or DARK's Taylor step because it needs no assumption about the heatmap's
    shape (BlazePose's sigmoid maps are not Gaussians of a known sigma) and it never leaves the argmax
    cell: ``round(refined) == argmax`` exactly, so anything that uses integer positions (PGHA, the
    tracker's boxes) is unchanged. Its error is at most a quarter cell on the grid's half-cell
    quantisation. Cells on the border, and ties between the two neighbours, are not moved on that axis.

    Args:
        heatmaps: (T, J, H, W) array.
        keypoints: (T, J, C >= 2) integer argmax positions x, y (other columns are kept).
    Returns:
        float32 keypoints shaped like ``keypoints``, x and y refined.
    """
    t, j, h, w = heatmaps.shape
    out = np.array(keypoints, dtype=np.float32, copy=True)
    x = out[..., 0].astype(np.int64)
    y = out[..., 1].astype(np.int64)
    maps = heatmaps.reshape(t * j, h, w)
    xs, ys = x.reshape(-1), y.reshape(-1)
    rows = np.arange(t * j)
    inner_x = (xs > 0) & (xs < w - 1)
    inner_y = (ys > 0) & (ys < h - 1)
    cx, cy = np.clip(xs, 1, max(w - 2, 1)), np.clip(ys, 1, max(h - 2, 1))
    dx = maps[rows, ys, np.minimum(cx + 1, w - 1)].astype(np.float64) - maps[rows, ys, cx - 1]
    dy = maps[rows, np.minimum(cy + 1, h - 1), xs].astype(np.float64) - maps[rows, cy - 1, xs]
    out[..., 0] += (0.25 * np.sign(dx) * inner_x).reshape(t, j).astype(np.float32)
    out[..., 1] += (0.25 * np.sign(dy) * inner_y).reshape(t, j).astype(np.float32)
    return out


def render_gaussians(keypoints: np.ndarray, size: tuple[int, int] = (64, 48), sigma: float = DEFAULT_SIGMA,
                     score_peak: bool = True) -> np.ndarray:
    """Keypoints drawn back into heatmaps: one isotropic Gaussian per joint ("regenerated heatmaps").

    Each map is ``peak * exp(-((u - x)^2 + (v - y)^2) / (2 sigma^2))`` over cell centres ``(u, v)``,
    centred on the exact (sub-pixel) keypoint, not on a rounded cell (mmpose's unbiased encoding), and
    not truncated. A joint with score <= 0.001, or a non-finite coordinate, gives an all-zero map.

    Args:
        keypoints: (T, J, 3) x, y, score in heatmap pixels of the ``size`` grid.
        size: (H, W) of the maps.
        sigma: standard deviation in cells (see :data:`DEFAULT_SIGMA` for the default's reason).
        score_peak: peak = the joint's score (as the paper's regenerated heatmaps); False: peak 1.
    Returns:
        (T, J, H, W) float32.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[-1] < 3:
        raise ValueError(f"keypoints must be (T, J, 3), got shape {kp.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    h, w = size
    present = np.isfinite(kp).all(axis=-1) & (kp[..., 2] > _EPS)
    peak = np.where(present, kp[..., 2] if score_peak else 1.0, 0.0)
    x = np.where(present, kp[..., 0], 0.0)
    y = np.where(present, kp[..., 1], 0.0)
    # Separable: the 2-D Gaussian is the outer product of a row and a column profile.
    gx = np.exp(-((np.arange(w) - x[..., None]) ** 2) / (2 * sigma**2)).astype(np.float32)  # (T, J, W)
    gy = np.exp(-((np.arange(h) - y[..., None]) ** 2) / (2 * sigma**2)) * peak[..., None]  # (T, J, H)
    return gy.astype(np.float32)[..., :, None] * gx[..., None, :]


def render_skeleton_maps(keypoints: np.ndarray, sigma: float = SKELETON_SIGMA, canvas: int = SKELETON_CANVAS,
                         size: int = SKELETON_SIZE, score_peak: bool = True,
                         limbs: tuple[tuple[int, int], ...] = COCO17_LIMBS) -> np.ndarray:
    """SkeletonGait's skeleton maps: a limb map and a joint map per frame.

    What is matched from OpenGait's heatmap pretreatment (read, not copied): per frame the keypoints
    are centred on the mid-hip (COCO joints 11, 12), scaled so their vertical extent spans
    ``canvas // 1.5`` px and moved to the centre of a ``canvas x canvas`` image; each joint is a
    Gaussian of ``sigma`` (peak = score), each limb a Gaussian of ``sigma`` in the distance to its
    segment (peak = the smaller end score; a limb shorter than 1 px is drawn as its first joint), both
    cut off outside the ``int(. -/+ 3 sigma)`` window OpenGait draws in, and the channels are merged by
    maximum; values are kept at 8-bit resolution (floor of x 255, as OpenGait stores images); the rows
    holding anything non-zero and a square of that height about the canvas's centre column (OpenGait's
    alignment) are area-resized to ``size x size``, and floored to 8 bits again.
    Channel 0 is the limb ("bone") map and channel 1 the joint map, in OpenGait's order.
    Differences, all for inputs OpenGait mishandles: joints with score <= 0.001 (OpenGait imputes
    zero coordinates with a KNN over the sequence first) are left out of the centring and scaling as
    well as the drawing; a frame with no drawable joint, or without both hips, is all zero; the square
    is cut inside the canvas (OpenGait's slice would wrap at a negative start).

    Args:
        keypoints: (T, J, 3) x, y, score in any pixel units with square pixels (COCO-17 order).
        sigma: Gaussian sigma in canvas pixels (OpenGait: 8).
        canvas: drawing canvas side (OpenGait: 128).
        size: output side (OpenGait: 64).
        score_peak: peak = score; False: peak 1 for every drawn joint.
        limbs: joint pairs of the limb map.
    Returns:
        (T, 2, size, size) float32 in [0, 1], multiples of 1/255.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[-1] < 3 or kp.shape[1] < 17:
        raise ValueError(f"keypoints must be (T, 17, 3) COCO-17, got shape {kp.shape}")
    out = np.zeros((len(kp), 2, size, size), np.float32)
    xy, score = _skeleton_canvas_points(kp, canvas)
    if not score_peak:
        score = (score > _EPS).astype(np.float64)
    for start in range(0, len(kp), _CHUNK):
        part = slice(start, start + _CHUNK)
        limb = _draw_limbs(xy[part], score[part], limbs, sigma, canvas)
        joint = _draw_joints(xy[part], score[part], sigma, canvas)
        for i in range(limb.shape[0]):
            out[start + i, 0] = _align_square(limb[i], size)
            out[start + i, 1] = _align_square(joint[i], size)
    return out


def _skeleton_canvas_points(kp: np.ndarray, canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints centred on the mid-hip and scaled to ``canvas // 1.5`` px tall: (T, J, 2) and scores (T, J).

    Frames that cannot be normalised (no hips, fewer than two drawable joints, zero height) get score 0.
    """
    score = np.where(np.isfinite(kp).all(axis=-1), kp[..., 2], 0.0)
    ok = score > _EPS
    xy = np.where(ok[..., None], kp[..., :2], np.nan)
    hip = (xy[:, 11] + xy[:, 12]) / 2  # (T, 2), NaN without both hips
    top = np.where(ok, kp[..., 1], np.inf).min(axis=1, initial=np.inf)
    bottom = np.where(ok, kp[..., 1], -np.inf).max(axis=1, initial=-np.inf)
    with np.errstate(all="ignore"):
        scale = (canvas // 1.5) / (bottom - top)
    good = np.isfinite(hip).all(axis=1) & np.isfinite(scale) & (ok.sum(axis=1) >= 2)
    centred = (xy - hip[:, None]) * np.where(good, scale, 0.0)[:, None, None] + canvas // 2
    score = np.where(good[:, None] & ok, score, 0.0)
    return np.nan_to_num(centred), score


def _window(lo: np.ndarray, hi: np.ndarray, sigma: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenGait's drawing window ``[max(int(lo - 3s), 0), min(int(hi + 3s) + 1, n))`` (int truncates to 0)."""
    return np.maximum(np.trunc(lo - 3 * sigma), 0), np.minimum(np.trunc(hi + 3 * sigma) + 1, n)


def _draw_joints(xy: np.ndarray, score: np.ndarray, sigma: float, canvas: int) -> np.ndarray:
    """Max over joints of windowed Gaussians: (t, J, 2), (t, J) -> (t, canvas, canvas) float64."""
    grid = np.arange(canvas, dtype=np.float64)
    x0, x1 = _window(xy[..., 0], xy[..., 0], sigma, canvas)
    y0, y1 = _window(xy[..., 1], xy[..., 1], sigma, canvas)
    inside_x = (grid >= x0[..., None]) & (grid < x1[..., None])  # (t, J, W)
    inside_y = (grid >= y0[..., None]) & (grid < y1[..., None])  # (t, J, H)
    gx = np.exp(-((grid - xy[..., 0:1]) ** 2) / (2 * sigma**2)) * inside_x
    peak = np.where(score > _EPS, score, 0.0)[..., None]
    gy = np.exp(-((grid - xy[..., 1:2]) ** 2) / (2 * sigma**2)) * inside_y * peak
    return (gy[..., :, None] * gx[..., None, :]).max(axis=1)


def _draw_limbs(xy: np.ndarray, score: np.ndarray, limbs: tuple[tuple[int, int], ...], sigma: float,
                canvas: int) -> np.ndarray:
    """Max over limbs of windowed Gaussians of the point-to-segment distance: -> (t, canvas, canvas).

    One limb at a time, vectorised over frames, so temporaries stay (t, canvas, canvas); every term
    but the clamp is a row profile plus a column profile, so it costs broadcast adds, not products.
    """
    # float32: the maps are floored to 8 bits in the end, far above float32's rounding
    grid = np.arange(canvas, dtype=np.float32)
    out = np.zeros((len(xy), canvas, canvas), np.float32)
    xy, score = xy.astype(np.float32), score.astype(np.float32)
    for i, j in limbs:
        a, b = xy[:, i], xy[:, j]  # (t, 2)
        d = b - a
        ab2 = (d**2).sum(1)  # (t,)
        short = ab2 < 1  # OpenGait draws these as the start joint, with the start joint's score
        valid = np.minimum(score[:, i], score[:, j]) > _EPS
        value = np.where(short, score[:, i], np.minimum(score[:, i], score[:, j])) * valid
        lo, hi = np.where(short[:, None], a, np.minimum(a, b)), np.where(short[:, None], a, np.maximum(a, b))
        x0, x1 = _window(lo[:, 0], hi[:, 0], sigma, canvas)
        y0, y1 = _window(lo[:, 1], hi[:, 1], sigma, canvas)
        # only the union of this limb's windows over the frames (limbs move little within a chunk)
        if not value.any():
            continue
        u0, u1 = int(x0[value > 0].min()), int(x1[value > 0].max())
        v0, v1 = int(y0[value > 0].min()), int(y1[value > 0].max())
        if u1 <= u0 or v1 <= v0:
            continue
        cols, rows = grid[u0:u1], grid[v0:v1]
        du = cols - a[:, 0, None]  # (t, w): column offsets from the start joint
        dv = rows - a[:, 1, None]  # (t, h)
        da2 = dv[:, :, None] ** 2 + du[:, None, :] ** 2
        along = dv[:, :, None] * d[:, 1, None, None] + du[:, None, :] * d[:, 0, None, None]  # (p - a) . (b - a)
        # projection onto the segment, clamped to its ends (OpenGait's start / end / segment cases)
        frac = np.clip(along / np.where(short, 1.0, ab2)[:, None, None], 0.0, 1.0) * ~short[:, None, None]
        d2 = np.maximum(da2 - frac * (2 * along - frac * ab2[:, None, None]), 0.0)
        mask_u = ((cols >= x0[:, None]) & (cols < x1[:, None])) * value[:, None]  # (t, w), the peak folded in
        mask_v = (rows >= y0[:, None]) & (rows < y1[:, None])  # (t, h)
        region = out[:, v0:v1, u0:u1]
        drawn = np.exp(d2 * np.float32(-0.5 / sigma**2)) * mask_v[:, :, None] * mask_u[:, None, :]
        np.maximum(region, drawn, out=region)
    return out


def _align_square(image: np.ndarray, size: int) -> np.ndarray:
    """8-bit floor, OpenGait's crop to the drawn rows and a centred square, area resize: (C, C) -> (size, size)."""
    import cv2

    canvas = image.shape[0]
    img = np.floor(np.clip(image, 0.0, 1.0) * 255) / 255
    rows = np.flatnonzero(img.sum(axis=1) > 0)
    if len(rows) == 0:
        return np.zeros((size, size), np.float32)
    top, bottom = int(rows[0]), int(rows[-1])
    half = (bottom - top + 1) // 2
    left, right = max(canvas // 2 - half, 0), min(canvas // 2 + half + 1, canvas)
    crop = np.ascontiguousarray(img[top:bottom + 1, left:right])
    resized = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return (np.floor(np.clip(resized, 0.0, 1.0) * 255 + 1e-6) / 255).astype(np.float32)
