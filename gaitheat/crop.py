"""RGB-space person crops, as in the paper's pretreatment (mmpose ``GetBBoxCenterScale`` + ``TopdownAffine``).

A person box is padded 1.25x about its centre, its short side is grown until the box has the model's
aspect ratio (W:H = 3:4 for 256x192 models), and the box is warped to the model input with bilinear
interpolation; parts outside the image are zero (black). The person is never distorted.

Coordinates: a crop box is ``(x1, y1, x2, y2)`` in source pixels, and crop pixel ``(u, v)`` shows
source point ``(x1 + u / s, y1 + v / s)`` with ``s = input_w / box_w = input_h / box_h``. Heatmap cell
``(row i, column j)`` of a stride-4 model sits at crop pixel ``(4j, 4i)`` (measured for BlazePose, and
mmpose's classic decoding), so heatmap point ``(x, y)`` is source point ``(x1 + x * box_w / W,
y1 + y * box_h / H)`` for an ``H x W`` heatmap covering the crop. All functions are pure.
"""

from __future__ import annotations

import numpy as np

PADDING = 1.25
ASPECT = 0.75  # width / height of the model input (192 / 256)


def pad_box(box: np.ndarray, padding: float = PADDING, aspect: float = ASPECT) -> np.ndarray:
    """Crop box for a person box: scaled by ``padding`` about its centre, short side grown to ``aspect``.

    Args:
        box: ``(4,)`` or ``(N, 4)`` person boxes ``x1, y1, x2, y2`` in source pixels.
        padding: scale factor applied to width and height.
        aspect: target width / height.
    Returns:
        float32 crop boxes of the same shape, with ``w / h == aspect`` exactly.
    """
    b = np.asarray(box, dtype=np.float64)
    cx, cy = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
    w = np.maximum(b[..., 2] - b[..., 0], 1.0) * padding
    h = np.maximum(b[..., 3] - b[..., 1], 1.0) * padding
    # Grow the short side (never shrink): mmpose's _fix_aspect_ratio.
    h = np.where(w > aspect * h, w / aspect, h)
    w = aspect * h
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1).astype(np.float32)


def crop_affine(crop_box: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """The ``(2, 3)`` map from source pixels to crop pixels for one crop box of the model's aspect."""
    x1, y1, _x2, y2 = (float(v) for v in crop_box)
    scale = input_hw[0] / max(y2 - y1, 1e-6)
    return np.array([[scale, 0.0, -x1 * scale], [0.0, scale, -y1 * scale]], dtype=np.float64)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine map (crop -> source for the output of :func:`crop_affine`)."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(..., 2)`` points with a ``(2, 3)`` affine map."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def crop_person(rgb: np.ndarray, crop_box: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Warp one crop box of ``rgb`` to the model input, zero outside the image.

    Args:
        rgb: ``(H, W, 3)`` uint8 frame.
        crop_box: ``(4,)`` crop box from :func:`pad_box` (aspect already fixed).
        input_hw: model input ``(h, w)``, e.g. ``(256, 192)``.
    Returns:
        crop ``(h, w, 3)`` uint8 and the ``(2, 3)`` source -> crop map.
    """
    import cv2

    matrix = crop_affine(crop_box, input_hw)
    crop = cv2.warpAffine(rgb, matrix, (input_hw[1], input_hw[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, matrix


def heatmap_to_image(points: np.ndarray, crop_box: np.ndarray, heatmap_hw: tuple[int, int]) -> np.ndarray:
    """Map heatmap-pixel keypoints to source pixels; the score column (if any) is kept.

    Args:
        points: ``(..., J, 2 or 3)`` keypoints ``(x=column, y=row[, score])`` on the heatmap grid.
        crop_box: ``(..., 4)`` crop boxes the heatmaps cover (one per leading index of ``points``).
        heatmap_hw: ``(H, W)`` of the heatmaps, e.g. ``(64, 48)``.
    Returns:
        float32 array shaped like ``points``.
    """
    pts = np.asarray(points, dtype=np.float64)
    box = np.asarray(crop_box, dtype=np.float64)[..., None, :]
    out = pts.copy()
    out[..., 0] = box[..., 0] + pts[..., 0] * (box[..., 2] - box[..., 0]) / heatmap_hw[1]
    out[..., 1] = box[..., 1] + pts[..., 1] * (box[..., 3] - box[..., 1]) / heatmap_hw[0]
    return out.astype(np.float32)


def keypoints_box(image_keypoints: np.ndarray, min_score: float = 0.3, min_joints: int = 6,
                  head_margin: float = 0.12, foot_margin: float = 0.06) -> np.ndarray | None:
    """A person box around confident keypoints, widened to reach the head top and the soles.

    Used to re-use one frame's pose as the next frame's region (as MediaPipe tracks people) and as the
    box handed to the tracker. Keypoints stop at the eyes and ankles, so the box grows by
    ``head_margin`` / ``foot_margin`` of its height above and below.

    Args:
        image_keypoints: ``(J, 3)`` keypoints ``(x, y, score)`` in source pixels.
    Returns:
        ``(4,)`` float32 box, or None when fewer than ``min_joints`` joints reach ``min_score``.
    """
    kp = np.asarray(image_keypoints, dtype=np.float64)
    good = kp[kp[:, 2] >= min_score]
    if len(good) < min_joints:
        return None
    x1, y1 = good[:, 0].min(), good[:, 1].min()
    x2, y2 = good[:, 0].max(), good[:, 1].max()
    h = max(y2 - y1, 1.0)
    return np.array([x1, y1 - head_margin * h, x2, y2 + foot_margin * h], dtype=np.float32)


def mask_box(mask: np.ndarray, crop_box: np.ndarray) -> np.ndarray | None:
    """The box around a person's segmentation mask, in source pixels: their whole body as the pose model saw it.

    The box around the joints (:func:`keypoints_box`) stops at joint centres (wrists, ankles, eyes), so it is
    narrower than the body and its head and foot margins are guesses; the mask reaches the body's outline.
    Used for the boxes a track reports (MOTChallenge rows), which are compared with full-body boxes.

    Args:
        mask: ``(h, w)`` bool person mask over the crop (the model input, e.g. 256x192).
        crop_box: ``(4,)`` the crop box the mask covers (aspect ``w / h``, as :func:`pad_box` gives).
    Returns:
        ``(4,)`` float32 box ``x1, y1, x2, y2``, or None for an empty mask.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    b = np.asarray(crop_box, dtype=np.float64)
    scale = (b[3] - b[1]) / mask.shape[0]  # source pixels per mask pixel (the same both ways: aspect kept)
    return np.array([b[0] + cols[0] * scale, b[1] + rows[0] * scale, b[0] + (cols[-1] + 1) * scale,
                     b[1] + (rows[-1] + 1) * scale], dtype=np.float32)


def erase_people(rgb: np.ndarray, masks: np.ndarray, crop_boxes: np.ndarray, region: np.ndarray,
                 grow: float = 0.02, image_keypoints: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``rgb`` in which the people's segmentation masks are painted over from their surroundings.

    Someone walking beside or behind a person is hard to find while that person is in view: a detector and a
    top-down pose model both lock on to the most prominent body in their window. With the people already
    found painted out (OpenCV's Telea inpainting, which fills a hole from its border inwards), the one they
    hid becomes the most prominent. Only ``region`` is painted (inpainting costs in proportion to the hole).

    Args:
        rgb: ``(H, W, 3)`` uint8 frame.
        masks: ``(N, h, w)`` bool person masks over each person's crop (the pose model's input).
        crop_boxes: ``(N, 4)`` the crop boxes the masks cover (aspect of the model input).
        region: ``(4,)`` ``x1, y1, x2, y2`` source pixels to paint in (clipped to the frame).
        grow: the masks are dilated by this fraction of each crop's height (their edges are soft).
        image_keypoints: ``(N, 17, 3)`` the people's joints in source pixels: each mask is kept only near its
            person's limbs (:func:`body_band`), as a person mask can also cover someone overlapping them.
    Returns:
        ``(H, W, 3)`` uint8 frame, equal to ``rgb`` outside ``region``.
    """
    import cv2

    out = rgb.copy()
    height, width = rgb.shape[:2]
    x1, y1 = max(0, int(np.floor(region[0]))), max(0, int(np.floor(region[1])))
    x2, y2 = min(width, int(np.ceil(region[2]))), min(height, int(np.ceil(region[3])))
    if x2 <= x1 or y2 <= y1 or not len(masks):
        return out
    hole = np.zeros((y2 - y1, x2 - x1), np.uint8)
    for index, (mask, box) in enumerate(zip(masks, np.asarray(crop_boxes, np.float64), strict=True)):
        inverse = invert_affine(crop_affine(box, mask.shape))
        inverse[:, 2] -= (x1, y1)  # into the region's pixels
        own = cv2.warpAffine(mask.astype(np.uint8), inverse, (x2 - x1, y2 - y1), flags=cv2.INTER_NEAREST)
        radius = max(1, round(grow * (box[3] - box[1])))
        own = cv2.dilate(own, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
        if image_keypoints is not None:
            own = np.minimum(own, body_band(image_keypoints[index], own.shape, (x1, y1)))
        hole |= own
    if hole.any():
        out[y1:y2, x1:x2] = cv2.inpaint(np.ascontiguousarray(rgb[y1:y2, x1:x2]), hole, 3, cv2.INPAINT_TELEA)
    return out


# Limbs, torso sides and neck lines (nose to shoulders); unlike heatmaps.COCO17_LIMBS no eye or ear edges, whose band
# around a head whose nose is not confident moved the crowd benchmark (IDF1 0.835 -> 0.810 on its seed-1 scenes).
BODY_LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12), (5, 11),
              (6, 12), (0, 5), (0, 6))


def body_band(image_keypoints: np.ndarray, shape: tuple[int, ...], origin: tuple[int, int] = (0, 0),
              width: float = 0.14, min_score: float = 0.3) -> np.ndarray:
    """``shape`` uint8 mask (1 inside) of the band around one person's confident limbs, torso and head: where their
    body can be. Lines ``width`` of the pose's height thick; pixel ``(0, 0)`` is source point ``origin``."""
    import cv2

    kp = np.asarray(image_keypoints, np.float64)
    good = kp[:, 2] >= min_score
    band = np.zeros(shape[:2], np.uint8)
    if good.sum() < 2:
        return band + 1  # nothing to go by: the whole mask
    pts = np.round(kp[:, :2] - origin).astype(np.int32)
    height = max(float(np.ptp(kp[good, 1])), 10.0)
    thick = max(2, round(width * height))
    for a, b in BODY_LIMBS:
        if good[a] and good[b]:
            cv2.line(band, (int(pts[a, 0]), int(pts[a, 1])), (int(pts[b, 0]), int(pts[b, 1])), 1, thick)
    torso = [i for i in (5, 6, 12, 11) if good[i]]
    if len(torso) >= 3:
        cv2.fillPoly(band, [pts[torso]], 1)
    if good[0]:  # the head reaches above the eyes
        cv2.circle(band, (int(pts[0, 0]), int(pts[0, 1])), round(0.1 * height) + thick // 2, 1, -1)
    return band


def same_pose(image_keypoints: np.ndarray, min_score: float = 0.3, tolerance: float = 0.15) -> np.ndarray:
    """``(N, N)`` bool: poses ``i`` and ``j`` put their joints in the same places, i.e. show the same person.

    Two people who overlap in the image (one walking behind the other) can have boxes that overlap a
    lot; their joints still differ. Poses are the same when the median distance between the joints
    confident in both (at least 3) is under ``tolerance`` times the taller pose's height.

    Args:
        image_keypoints: ``(N, J, 3)`` keypoints ``(x, y, score)`` in source pixels.
    """
    kp = np.asarray(image_keypoints, dtype=np.float64)
    n = len(kp)
    out = np.eye(n, dtype=bool)
    good = kp[..., 2] >= min_score
    height = np.array([np.ptp(k[g, 1]) if g.any() else 0.0 for k, g in zip(kp, good, strict=True)])
    for i in range(n):
        for j in range(i + 1, n):
            both = good[i] & good[j]
            if both.sum() < 3:
                continue
            dist = np.median(np.linalg.norm(kp[i, both, :2] - kp[j, both, :2], axis=1))
            out[i, j] = out[j, i] = bool(dist < tolerance * max(height[i], height[j], 1.0))
    return out


def crowded(image_keypoints: np.ndarray, boxes: np.ndarray, min_joints: int = 4, min_score: float = 0.3) -> np.ndarray:
    """``(N,)`` bool: person ``i``'s box holds at least ``min_joints`` confident joints of another person.

    Such a crop shows two people, and the pose model's heatmaps mix them.

    Args:
        image_keypoints: ``(N, J, 3)`` keypoints of the people found in one frame, source pixels.
        boxes: ``(N, 4+)`` their person boxes (xyxy).
    """
    kp = np.asarray(image_keypoints, dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64)
    out = np.zeros(len(kp), bool)
    for i in range(len(kp)):
        for j in range(len(kp)):
            if i == j:
                continue
            x, y, ok = kp[j, :, 0], kp[j, :, 1], kp[j, :, 2] >= min_score
            inside = ok & (x >= b[i, 0]) & (x <= b[i, 2]) & (y >= b[i, 1]) & (y <= b[i, 3])
            if inside.sum() >= min_joints:
                out[i] = True
                break
    return out
