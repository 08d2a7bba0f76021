"""Real decoding of vtest.avi, frame folders and images; clear errors for unreadable sources."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitheat.video import VideoError, decode_frames, probe_source


def test_vtest_probe_and_strided_decode(media_dir: Path) -> None:
    info = probe_source(media_dir / "vtest.avi")
    assert (info.kind, info.width, info.height) == ("video", 768, 576) and info.fps == pytest.approx(10, abs=0.5)
    assert info.num_frames > 700
    frames = list(decode_frames(media_dir / "vtest.avi", start=3, stop=12, stride=4))
    assert [f.index for f in frames] == [3, 7, 11]
    assert frames[0].rgb.shape == (576, 768, 3) and frames[0].rgb.dtype == np.uint8
    # OpenCV decodes BGR; frames must come out RGB.
    bgr = cv2.VideoCapture(str(media_dir / "vtest.avi"))
    for _ in range(4):
        ok, raw = bgr.read()
    bgr.release()
    assert ok and np.array_equal(frames[0].rgb, raw[:, :, ::-1])


def test_frame_folder_and_single_image(media_dir: Path, tmp_path: Path) -> None:
    image = cv2.imread(str(media_dir / "messi5.jpg"))
    assert image is not None
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.roll(image, 5 * i, axis=1))
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = list(decode_frames(tmp_path))
    assert [f.index for f in frames] == [0, 1, 2]
    assert np.array_equal(frames[2].rgb, np.roll(image, 10, axis=1)[:, :, ::-1])
    assert probe_source(tmp_path).num_frames == 3
    single = list(decode_frames(media_dir / "messi5.jpg"))
    assert len(single) == 1 and single[0].rgb.shape == (342, 548, 3)


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.avi", b"", "empty file"),
    ("text.avi", b"this is not a video\n" * 20, "cannot open it as a video"),
    ("broken.png", b"\x89PNG garbage", "cannot decode"),
    ("notes.txt", b"hello", "unsupported file type"),
])
def test_bad_sources_raise_naming_the_file(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(VideoError, match=reason) as info:
        list(decode_frames(path))
    assert name in str(info.value)
    with pytest.raises(VideoError):
        probe_source(path)


def test_missing_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such file"):
        probe_source(tmp_path / "nope.avi")
    with pytest.raises(VideoError, match="no frame images"):
        probe_source(tmp_path)


def test_prefetch_keeps_order_reraises_errors_and_stops_early(media_dir: Path, tmp_path: Path) -> None:
    from gaitheat.video import prefetch

    direct = [f.index for f in decode_frames(media_dir / "vtest.avi", 0, 10)]
    assert [f.index for f in prefetch(decode_frames(media_dir / "vtest.avi", 0, 10), depth=2)] == direct
    early = prefetch(decode_frames(media_dir / "vtest.avi", 0, 100), depth=2)
    assert next(early).index == 0
    early.close()  # must not hang on the blocked decoder thread
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(VideoError, match="empty file"):
        list(prefetch(decode_frames(tmp_path / "empty.avi")))
