"""Draw identification results on the video: each tracked person's box with its name and distance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gaitheat.gallery.service import UNKNOWN, UNVERIFIED, Identification

_KNOWN = (40, 200, 60)
_STRANGER = (230, 60, 40)
MAX_HOLD = 5  # frames a box is held until the track's next kept frame


def boxes_by_frame(results: Sequence[Identification]) -> dict[int, list[tuple[np.ndarray, str, bool]]]:
    """frame index -> [(box xyxy, caption, known)] for every track with boxes."""
    out: dict[int, list[tuple[np.ndarray, str, bool]]] = {}
    for r in results:
        if r.track.boxes is None:
            continue
        best = f" {r.matches[0][1]:.2f}" if r.matches else ""
        # unverified (no threshold): the nearest name, marked as a guess
        caption = f"{r.matches[0][0]}?{best}" if r.label == UNVERIFIED and r.matches else f"{r.label}{best}"
        frames = [int(f) for f in r.track.frame_indices]
        for i, (f, box) in enumerate(zip(frames, r.track.boxes, strict=True)):
            # hold the box over frames skipped by frame_stride (short gaps only, not lost tracks)
            stop = frames[i + 1] if i + 1 < len(frames) and frames[i + 1] - f <= MAX_HOLD else f + 1
            for g in range(f, stop):
                out.setdefault(g, []).append((box, caption, r.label not in (UNKNOWN, UNVERIFIED)))
    return out


def draw_boxes(rgb: np.ndarray, items: Sequence[tuple[np.ndarray, str, bool]]) -> np.ndarray:
    """A copy of (H, W, 3) uint8 RGB ``rgb`` with captioned boxes."""
    import cv2

    img = np.ascontiguousarray(rgb.copy())
    for box, caption, known in items:
        colour = _KNOWN if known else _STRANGER
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2)
        (tw, th), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(0, y1 - th - 6)
        cv2.rectangle(img, (x1, top), (x1 + tw + 4, top + th + 6), colour, -1)
        cv2.putText(img, caption, (x1 + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return img


def render_identities(video: str | Path, results: Sequence[Identification], out: str | Path,
                      max_frames: int | None = None) -> Path:
    """Write ``video`` with every identified track drawn, as ``.mp4``/``.avi`` (OpenCV) or ``.gif`` (Pillow)."""
    from gaitheat.video import decode_frames, probe_source

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".mp4", ".avi", ".gif"):
        raise ValueError(f"{out}: --show writes .mp4, .avi or .gif")
    fps = probe_source(video).fps or 25.0
    drawn = boxes_by_frame(results)
    frames = (draw_boxes(f.rgb, drawn.get(f.index, [])) for f in decode_frames(video, 0, max_frames))
    if suffix == ".gif":
        _write_gif(out, frames, fps)
    else:
        _write_video(out, frames, fps, suffix)
    return out


def _write_video(out: Path, frames: object, fps: float, suffix: str) -> None:
    import cv2

    from gaitheat.atomic import TMP_MARKER

    tmp = out.with_name(f".{out.stem}{TMP_MARKER}{suffix}")
    fourcc = cv2.VideoWriter.fourcc(*("mp4v" if suffix == ".mp4" else "MJPG"))
    writer = None
    try:
        for rgb in frames:  # type: ignore[attr-defined]
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), fourcc, fps, (rgb.shape[1], rgb.shape[0]))
                if not writer.isOpened():
                    raise OSError(f"{out}: OpenCV cannot write {suffix} here")
            writer.write(np.ascontiguousarray(rgb[..., ::-1]))
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        tmp.unlink(missing_ok=True)
        raise OSError(f"{out}: the video had no frames to draw")
    tmp.replace(out)


def _write_gif(out: Path, frames: object, fps: float) -> None:
    from PIL import Image

    from gaitheat.atomic import atomic_open

    images = [Image.fromarray(rgb) for rgb in frames]  # type: ignore[attr-defined]
    if not images:
        raise OSError(f"{out}: the video had no frames to draw")
    with atomic_open(out, "wb") as handle:
        images[0].save(handle, format="GIF", save_all=True, append_images=images[1:],
                       duration=round(1000 / fps), loop=0)
