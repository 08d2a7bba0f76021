"""Pictures of a stored sequence, to check extraction by eye: each frame shows the source image with
the crop box, and the person crop with the heatmaps (max over joints) and the skeleton overlaid, and,
when the file has silhouettes, the frame's 64 x 44 silhouette beside them (white on black, 4x).

If the source video is no longer where ``SequenceMeta.source`` says, the heatmaps are drawn on black.
A file with silhouettes but no heatmaps (an OpenGait silhouette import) shows its silhouettes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from gaitheat.storage import HeatmapSequence

PANEL_H, PANEL_W = 256, 192
SILHOUETTE_PANEL_W = 176  # 44 columns at the panel's 4x (64 rows -> 256)
# COCO-17 limbs for the skeleton drawing.
SKELETON = ((0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12),
            (11, 12), (11, 13), (13, 15), (12, 14), (14, 16))


def pick_frames(num_frames: int, count: int) -> np.ndarray:
    """``count`` evenly spaced positions in ``range(num_frames)`` (all of them if fewer)."""
    if num_frames <= count:
        return np.arange(num_frames)
    return np.unique(np.linspace(0, num_frames - 1, count).round().astype(np.int64))


def _source_frames(seq: HeatmapSequence, wanted: np.ndarray, source: Path | None) -> dict[int, np.ndarray]:
    """Source RGB frames by frame index, or {} if the source cannot be read."""
    from gaitheat.video import VideoError, decode_frames

    path = source or Path(seq.meta.source)
    indices = {int(seq.frame_indices[i]) for i in wanted}
    if not indices or not path.exists():
        return {}
    out: dict[int, np.ndarray] = {}
    try:
        for frame in decode_frames(path, 0, max(indices) + 1):
            if frame.index in indices:
                out[frame.index] = frame.rgb
    except VideoError:
        return {}
    return out


def draw_frame(seq: HeatmapSequence, i: int, rgb: np.ndarray | None) -> np.ndarray:
    """Panels for position ``i``: ``(256, W, 3)`` uint8 RGB."""
    import cv2

    panels = []
    if seq.heatmaps is not None or seq.silhouettes is None:
        panels.append(_heatmap_panel(seq, i, rgb))
    if seq.silhouettes is not None:
        grey = cv2.resize(seq.silhouettes[i], (SILHOUETTE_PANEL_W, PANEL_H), interpolation=cv2.INTER_NEAREST)
        panels.append(np.repeat(grey[..., None], 3, axis=2))
    person = np.concatenate(panels, axis=1)
    box = seq.boxes[i] if seq.boxes is not None else None
    if rgb is None:
        return person
    view = rgb.copy()
    if box is not None:
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(view, (x1, y1), (x2, y2), (0, 255, 0), max(1, rgb.shape[0] // 200))
    width = round(view.shape[1] * PANEL_H / view.shape[0])
    view = cv2.resize(view, (width, PANEL_H), interpolation=cv2.INTER_AREA)
    return np.concatenate([view, person], axis=1)


def _heatmap_panel(seq: HeatmapSequence, i: int, rgb: np.ndarray | None) -> np.ndarray:
    """The person crop (or black) with heatmaps and skeleton: ``(256, 192, 3)`` uint8 RGB."""
    import cv2

    from gaitheat.crop import crop_person

    heatmaps = seq.require("heatmaps", needed_by="show")
    heat = heatmaps[i].max(axis=0)
    heat = np.clip((heat - heat.min()) / max(float(np.ptp(heat)), 1e-6), 0, 1)
    colour = cv2.applyColorMap((cv2.resize(heat, (PANEL_W, PANEL_H)) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = colour[:, :, ::-1]
    box = seq.boxes[i] if seq.boxes is not None else None
    if rgb is not None and box is not None:
        crop, _ = crop_person(rgb, box, (PANEL_H, PANEL_W))
        person = cv2.addWeighted(crop, 0.55, colour, 0.45, 0)
    else:
        person = (colour * 0.8).astype(np.uint8)
    scale = PANEL_W / heatmaps.shape[3]
    points = seq.require("keypoints", needed_by="show")[i]
    for a, b in SKELETON:
        pa, pb = (points[[a, b], :2] * scale).astype(int)
        cv2.line(person, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), (255, 255, 255), 1, cv2.LINE_AA)
    score = float(points[:, 2].mean())
    cv2.putText(person, f"f{int(seq.frame_indices[i])} s{score:.2f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1, cv2.LINE_AA)
    return person


def render_preview(seq: HeatmapSequence, out: str | Path, frames: int = 6, source: str | Path | None = None,
                   fps: float = 8.0) -> Path:
    """Write a PNG (``frames`` evenly spaced frames, stacked) or a GIF (up to 200 frames, animated).

    Args:
        seq: the sequence to draw.
        out: ``.png`` or ``.gif`` path, written atomically.
        frames: frames in a PNG.
        source: the video or frame folder, when it moved since extraction.
        fps: GIF frame rate.
    """
    from PIL import Image

    from gaitheat.atomic import atomic_write_bytes

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".gif"):
        raise ValueError(f"{out}: output must end in .png or .gif")
    wanted = pick_frames(seq.num_frames, frames if suffix == ".png" else 200)
    images = _source_frames(seq, wanted, Path(source) if source else None)
    panels = [draw_frame(seq, int(i), images.get(int(seq.frame_indices[i]))) for i in wanted]
    width = max(p.shape[1] for p in panels)
    panels = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0))) for p in panels]
    buffer = io.BytesIO()
    if suffix == ".png":
        Image.fromarray(np.concatenate(panels, axis=0)).save(buffer, format="PNG")
    else:
        first, *rest = [Image.fromarray(p) for p in panels]
        first.save(buffer, format="GIF", save_all=True, append_images=rest, duration=int(1000 / fps), loop=0)
    atomic_write_bytes(out, buffer.getvalue())
    return out
