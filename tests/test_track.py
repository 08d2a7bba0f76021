"""Box geometry, the BlazePose detector's anchors and tiles, boxes files, and ByteTrack/SORT association."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gaitheat.detect import BoxesFile, BoxesFileError, iou_matrix, nms, ssd_anchors, tile_origins
from gaitheat.track import PersonTracker


def test_iou_and_nms_golden() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], np.float32)
    iou = iou_matrix(boxes, boxes)
    assert iou[0, 1] == pytest.approx(50 / 150) and iou[0, 2] == 0 and iou[1, 1] == pytest.approx(1)
    assert nms(boxes, np.array([0.5, 0.9, 0.1]), 0.3).tolist() == [1, 2]
    assert nms(boxes, np.array([0.5, 0.9, 0.1]), 0.4).tolist() == [1, 0, 2]


def test_detector_anchor_layout_matches_mediapipe() -> None:
    anchors = ssd_anchors(224)
    assert anchors.shape == (28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6, 2) == (2254, 2)
    assert np.allclose(anchors[0], [0.5 / 28, 0.5 / 28]) and np.allclose(anchors[-1], [6.5 / 7, 6.5 / 7])


def test_tiles_cover_the_frame() -> None:
    origins = tile_origins(768, 576, 224)
    covered = np.zeros((576, 768), bool)
    for x, y in origins:
        assert 0 <= x <= 768 - 224 and 0 <= y <= 576 - 224
        covered[y : y + 224, x : x + 224] = True
    assert covered.all()
    assert tile_origins(200, 150, 224) == [(0, 0)]


def test_boxes_files_json_csv_and_errors(tmp_path: Path) -> None:
    as_json = tmp_path / "boxes.json"
    as_json.write_text(json.dumps({"3": [[1, 2, 11, 42], [5, 5, 9, 30, 0.5]]}))
    source = BoxesFile(as_json)
    assert source(np.zeros((1, 1, 3), np.uint8), 3).tolist() == [[1, 2, 11, 42, 1], [5, 5, 9, 30, 0.5]]
    assert source(np.zeros((1, 1, 3), np.uint8), 4).shape == (0, 5)
    records = tmp_path / "records.json"
    records.write_text(json.dumps([{"frame": 0, "box": [0, 0, 4, 8], "score": 0.7}]))
    assert BoxesFile(records)(np.zeros((1, 1, 3), np.uint8), 0)[0, 4] == pytest.approx(0.7)
    as_csv = tmp_path / "boxes.csv"
    as_csv.write_text("frame,x1,y1,x2,y2,score\n0,1,1,5,9,0.8\n0,10,1,15,9,\n")
    assert BoxesFile(as_csv)(np.zeros((1, 1, 3), np.uint8), 0)[:, 4].tolist() == pytest.approx([0.8, 1.0])
    bad = tmp_path / "bad.csv"
    bad.write_text("frame,x,y\n0,1,2\n")
    with pytest.raises(BoxesFileError, match=r"bad\.csv.*x1"):
        BoxesFile(bad)
    inverted = tmp_path / "inverted.json"
    inverted.write_text(json.dumps({"0": [[10, 10, 5, 5]]}))
    with pytest.raises(BoxesFileError, match="x2 > x1"):
        BoxesFile(inverted)


def _walk(tracker: PersonTracker, frames: int = 12) -> list[list[int]]:
    out = []
    for k in range(frames):
        # two people crossing paths slowly, listed in a different order on odd frames
        a = [20 + 4 * k, 50, 60 + 4 * k, 150, 0.95]
        b = [200 - 4 * k, 60, 240 - 4 * k, 160, 0.9]
        boxes = np.array([a, b] if k % 2 == 0 else [b, a], np.float32)
        ids = tracker.update(boxes).tolist()
        out.append(ids if k % 2 == 0 else ids[::-1])
    return out


@pytest.mark.parametrize("method", ["bytetrack", "sort"])
def test_tracker_keeps_identities_and_renumbers_reproducibly(method: str) -> None:
    first = _walk(PersonTracker(method, fps=10))
    # ByteTrack names a track from its second frame on (SORT from its first), then it holds its id.
    assert first[0] == ([-1, -1] if method == "bytetrack" else first[1])
    assert all(ids == first[1] for ids in first[1:]) and sorted(first[1]) == [0, 1]
    # The library's id counter is process-wide; a second tracker must still number from 0.
    assert _walk(PersonTracker(method, fps=10)) == first


def test_tracker_drops_lost_tracks_and_starts_new_ids() -> None:
    tracker = PersonTracker(fps=10, lost_seconds=0.2)
    box = np.array([[10, 10, 50, 110, 0.9]], np.float32)
    ids = [int(tracker.update(box)[0]) for _ in range(3)]
    for _ in range(5):
        tracker.update(np.zeros((0, 5), np.float32))
    far = np.array([[400, 10, 440, 110, 0.9]], np.float32)
    later = [int(tracker.update(far)[0]) for _ in range(3)]
    assert ids == [-1, 0, 0] and later == [-1, 1, 1]


def test_unknown_tracker_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="bytetrack"):
        PersonTracker("hungarian")


def test_collector_recovers_each_tracks_first_frame() -> None:
    from gaitheat.track import TrackCollector

    tracker, collector = PersonTracker(fps=10), TrackCollector()
    for k in range(4):
        boxes = np.array([[20 + 4 * k, 50, 60 + 4 * k, 150, 0.95], [300, 60, 340, 160, 0.9]], np.float32)
        people = {"boxes": boxes, "value": np.array([10 * k, 10 * k + 1])}
        collector.add_frame(100 + k, people, tracker.update(boxes))
    assert collector.track_ids == [0, 1]
    frames, rows = collector.stacked(0)
    assert frames.tolist() == [100, 101, 102, 103] and rows["value"].tolist() == [0, 10, 20, 30]
    assert collector.stacked(1)[1]["value"].tolist() == [1, 11, 21, 31]
