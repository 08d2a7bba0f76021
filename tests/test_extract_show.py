"""`gaitheat show`: a stored sequence drawn to PNG and GIF, with and without its source video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gaitheat.cli import main
from gaitheat.show import pick_frames, render_preview
from gaitheat.storage import HeatmapSequence, SequenceMeta, write_sequence


def _sequence(tmp_path: Path, source: str) -> Path:
    t = 5
    heat = np.zeros((t, 17, 64, 48), np.float32)
    heat[:, :, 30, 20] = 0.9
    keypoints = np.zeros((t, 17, 3), np.float32)
    keypoints[..., 0], keypoints[..., 1], keypoints[..., 2] = 20, 30, 0.9
    boxes = np.tile(np.array([[40, 20, 115, 120]], np.float32), (t, 1))
    seq = HeatmapSequence(heat, keypoints, np.arange(t, dtype=np.int64) * 2,
                          SequenceMeta("001", "nm-01", "090", source=source), boxes=boxes)
    return write_sequence(tmp_path / "seq.ghs", seq)


def test_png_and_gif_with_source(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10, (160, 120))
    for i in range(10):
        writer.write(np.full((120, 160, 3), 20 * i, np.uint8))
    writer.release()
    path = _sequence(tmp_path, str(video))
    assert main(["show", str(path), "--out", str(tmp_path / "a.png"), "--frames", "3"]) == 0
    png = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"))
    assert png.shape[0] == 3 * 256 and png.shape[1] == round(160 * 256 / 120) + 192
    # The green crop box is drawn on the source panel.
    assert (png[:256, :340, 1] == 255).any() and (png[:256, :340, 0] == 0).any()
    assert main(["show", str(path), "--out", str(tmp_path / "a.gif")]) == 0
    assert getattr(Image.open(tmp_path / "a.gif"), "n_frames", 1) == 5


def test_missing_source_draws_heatmaps_only_and_bad_suffix_is_a_user_error(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _sequence(tmp_path, str(tmp_path / "gone.avi"))
    out = render_preview(_read(path), tmp_path / "b.png")
    assert np.asarray(Image.open(out)).shape[:2] == (5 * 256, 192)
    assert main(["show", str(path), "--out", str(tmp_path / "b.jpg")]) == 2
    assert ".png or .gif" in capsys.readouterr().err
    assert list(pick_frames(100, 3)) == [0, 50, 99] and list(pick_frames(2, 6)) == [0, 1]


def _read(path: Path) -> HeatmapSequence:
    from gaitheat.storage import read_sequence

    return read_sequence(path)
