"""gaitheat import-keypoints on small files of every format written here, one bad file of each kind,
and the keypoint-only store it makes (round trip, crop frame, regenerated heatmaps)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from gaitheat.cli import main
from gaitheat.crop import heatmap_to_image
from gaitheat.heatmaps import keypoints_from_heatmaps
from gaitheat.import_keypoints import OPENPOSE18_TO_COCO17, import_keypoints
from gaitheat.regen import regen_store
from gaitheat.storage import SequenceFile, read_sequence, sequence_path

# A standing person in source pixels (COCO-17), 160 px from the eyes to the ankles.
PERSON = np.array([[300, 100], [305, 95], [295, 95], [310, 100], [290, 100], [320, 140], [280, 140], [325, 180],
                   [275, 180], [328, 215], [272, 215], [315, 220], [285, 220], [316, 260], [284, 260], [317, 255],
                   [283, 255]], np.float64)


def walker(t: int, rng: np.random.Generator, score: float = 0.9, shift: float = 0.0) -> np.ndarray:
    """(T, 17, 3) source-pixel keypoints of someone walking right."""
    xy = PERSON[None] + np.array([4.0, 0.0]) * np.arange(t)[:, None, None] + rng.normal(0, 1.5, (t, 17, 2))
    xy[..., 0] += shift
    return np.concatenate([xy, np.full((t, 17, 1), score)], axis=-1)


def to_openpose18(kp: np.ndarray) -> np.ndarray:
    """COCO-17 -> OpenPose-18 (neck = shoulder midpoint), the inverse of the importer's mapping."""
    out = np.zeros((*kp.shape[:-2], 18, 3))
    out[..., list(OPENPOSE18_TO_COCO17), :] = kp
    out[..., 1, :] = (kp[..., 5, :] + kp[..., 6, :]) / 2
    return out


def detections(kp: np.ndarray, frames: list[int], image_id: str = "{:06d}.jpg", **extra: object) -> list[dict]:
    return [{"image_id": image_id.format(f) if image_id else f, "category_id": 1,
             "keypoints": [round(float(v), 3) for v in kp[i].reshape(-1)],
             "score": float(kp[i, :, 2].mean()) * 3, **extra} for i, f in enumerate(frames)]


def write_all(src: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One good input of every format (plus one bad input of every kind); returns the good keypoints."""
    good = {}
    # pose pickles: COCO-17 and OpenPose-18, a heatmap pickle import-pkl owns, and bad ones
    for subject, cond, view, kp in (("001", "nm-01", "090", walker(14, rng)),
                                    ("002", "bg-02", "072", to_openpose18(walker(12, rng)))):
        folder = src / "pkl" / subject / cond / view
        folder.mkdir(parents=True)
        (folder / f"{view}.pkl").write_bytes(pickle.dumps(kp.astype(np.float32), protocol=4))
        good[f"{subject}/{cond}/{view}/{view}"] = kp if kp.shape[1] == 17 else kp[:, list(OPENPOSE18_TO_COCO17)]
    (src / "pkl/001/nm-01/090/float_090.pkl").write_bytes(pickle.dumps(np.zeros((2, 17, 64, 48), np.float16)))
    fpg = src / "pkl/005/nm-02/108"  # FastPoseGait's float_/pose_ pair: the pose pickle is stored as "108"
    fpg.mkdir(parents=True)
    good["005/nm-02/108/108"] = walker(8, rng)
    (fpg / "pose_108.pkl").write_bytes(pickle.dumps(good["005/nm-02/108/108"].astype(np.float32)))
    bad = src / "pkl/009/nm-01/000"
    bad.mkdir(parents=True)
    (bad / "joints16.pkl").write_bytes(pickle.dumps(np.ones((5, 16, 3), np.float32)))
    nan = np.ones((5, 17, 3), np.float32)
    nan[2, 4, 0] = np.nan
    (bad / "nan.pkl").write_bytes(pickle.dumps(nan))
    (bad / "evil.pkl").write_bytes(pickle.dumps(os.system))
    (bad / "empty.pkl").write_bytes(pickle.dumps(np.zeros((0, 17, 3), np.float32)))

    # COCO results / AlphaPose: two people per frame, the walker's track is the longest
    results = src / "json"
    results.mkdir()
    main_kp, other = walker(10, rng), walker(10, rng, score=0.95, shift=200)
    dets = detections(main_kp, list(range(3, 13)), idx=[7]) + detections(other[:4], [3, 4, 5, 6], idx=[8])
    (results / "003-cl-01-180.json").write_text(json.dumps(dets))
    good["003/cl-01/180/003-cl-01-180"] = main_kp
    # no track ids: the highest-scoring person per frame; integer image ids; the COCO "annotations" form
    plain = detections(main_kp, list(range(10)), image_id="") + detections(main_kp[:3] * [1, 1, 0.5], [0, 1, 2],
                                                                             image_id="")
    (results / "walk_a.json").write_text(json.dumps({"annotations": plain}))
    good["104/nm-05/036/walk_a"] = main_kp
    (src / "mapping.csv").write_text("source,subject,condition,view\nwalk_a.json,104,nm-05,036\n")
    (results / "broken.json").write_text('[{"image_id": 1, "keypoints": [1, 2')
    (results / "fifty.json").write_text(json.dumps([{"image_id": 1, "keypoints": [1.0] * 50, "score": 1}]))
    (results / "nan.json").write_text('[{"image_id": 1, "keypoints": [' + ", ".join(["NaN"] * 51) + '], "score": 1}]')
    (results / "noframe.json").write_text(json.dumps(detections(main_kp[:2], [0, 1], image_id="camera.jpg")))
    (results / "empty.json").write_text("[]")

    # OUMVLP-Pose: <subject>/<view>_<seq>/<frame>_keypoints.json, OpenPose-18, one frame with nobody
    oumvlp = src / "oumvlp/00017/030_01"
    oumvlp.mkdir(parents=True)
    kp = walker(9, rng)
    for i, frame in enumerate(range(21, 30)):
        people = [{"pose_keypoints_2d": to_openpose18(kp[i]).reshape(-1).tolist()}]
        (oumvlp / f"{frame:04d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    (oumvlp / "0030_keypoints.json").write_text(json.dumps({"version": 1.3, "people": []}))
    good["00017/01/030/030"] = kp
    broken = src / "oumvlp/00018/000_00"
    broken.mkdir(parents=True)
    (broken / "0001_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [0.5] * 54}]}))
    (broken / "0002_keypoints.json").write_text("{not json")
    return good


@pytest.fixture
def imported(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray], object]:
    good = write_all(tmp_path / "src", np.random.default_rng(0))
    summary = import_keypoints(tmp_path / "src", tmp_path / "store", progress=False)
    return tmp_path, good, summary


def test_every_format_imports_and_every_bad_file_fails_alone(imported: tuple[Path, dict, object]) -> None:
    tmp_path, good, summary = imported
    failed = {Path(k).name: v for k, v in summary.failed.items()}  # type: ignore[attr-defined]
    assert "expected keypoints (T, 17, 3) COCO or (T, 18, 3) OpenPose, got shape (5, 16, 3)" in failed["joints16.pkl"]
    assert "NaN" in failed["nan.pkl"] and "refusing to load global" in failed["evil.pkl"]
    assert "empty sequence" in failed["empty.pkl"] and "empty sequence" in failed["empty.json"]
    assert "malformed JSON" in failed["broken.json"] and "broken.json" in failed["broken.json"]
    assert "expected 51 (17 joints x 3) keypoint numbers, got 50" in failed["fifty.json"]
    assert "NaN is not a number JSON allows" in failed["nan.json"]
    assert "has no frame number" in failed["noframe.json"]
    assert "0002_keypoints.json: malformed JSON" in failed["000_00"]
    assert len(failed) == 10 and not summary.skipped  # type: ignore[attr-defined]
    # the store holds the good ones only (walk_a.json has a non-dataset name and no mapping: its stem)
    assert len(summary.written) == 6  # type: ignore[attr-defined]
    for key, kp in good.items():
        if key.startswith("104/"):
            key = "walk_a/00/000/walk_a"
        subject, condition, view, name = key.split("/")
        seq = read_sequence(sequence_path(tmp_path / "store", subject, condition, view, name))
        assert seq.heatmaps is None and seq.sections == {"keypoints", "boxes", "image_keypoints"}
        np.testing.assert_allclose(seq.image_keypoints, kp, atol=2e-3)
        assert seq.meta.pose_model.startswith("imported:") and seq.meta.extra["frames_without_box"] == 0
    oumvlp = read_sequence(sequence_path(tmp_path / "store", "00017", "01", "030", "030"))
    np.testing.assert_array_equal(oumvlp.frame_indices, np.arange(21, 30))
    assert oumvlp.meta.extra["joints_in"] == 18
    coco = read_sequence(sequence_path(tmp_path / "store", "003", "cl-01", "180", "003-cl-01-180"))
    np.testing.assert_array_equal(coco.frame_indices, np.arange(3, 13))  # the longest track, not the higher score
    assert coco.meta.extra["people_dropped"] == 4


def test_keypoints_are_stored_in_the_padded_crop_frame(imported: tuple[Path, dict, object]) -> None:
    tmp_path = imported[0]
    file = SequenceFile(sequence_path(tmp_path / "store", "001", "nm-01", "090", "090"))
    seq = file.read()
    assert seq.boxes is not None and seq.keypoints is not None and seq.image_keypoints is not None
    w, h = seq.boxes[:, 2] - seq.boxes[:, 0], seq.boxes[:, 3] - seq.boxes[:, 1]
    np.testing.assert_allclose(w / h, 0.75, rtol=1e-5)
    # the heatmap-pixel keypoints map back to the source through the crop box, as extracted ones do
    np.testing.assert_allclose(heatmap_to_image(seq.keypoints, seq.boxes, (64, 48)), seq.image_keypoints, atol=1e-3)
    # the box is the keypoints' box +12 % above, +6 % below, padded 1.25x: the joints span 64/(1.25*1.18) rows,
    # and sit 6 % lower than centred (more head room than foot room)
    span = seq.keypoints[..., 1].max(1) - seq.keypoints[..., 1].min(1)
    np.testing.assert_allclose(span, 64 / (1.25 * 1.18), rtol=1e-4)
    top, bottom = seq.keypoints[..., 1].min(1), 64 - seq.keypoints[..., 1].max(1)
    np.testing.assert_allclose(top - bottom, 0.06 * span, rtol=1e-3)


def test_round_trip_regen_mapping_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_all(tmp_path / "src", np.random.default_rng(1))
    src, store = tmp_path / "src", tmp_path / "store"
    # the CLI: a mapping CSV names walk_a; --regen stores heatmaps; exit status 1 because some inputs failed
    assert main(["import-keypoints", str(src / "json"), str(store), "--regen", "--no-progress",
                 "--mapping", str(src / "mapping.csv")]) == 1
    err = capsys.readouterr()
    assert "imported 1, skipped 0 (already there), failed 6" in err.out and "not in the mapping CSV" in err.err
    seq = read_sequence(sequence_path(store, "104", "nm-05", "036", "walk_a"))
    np.testing.assert_allclose(seq.image_keypoints, good["104/nm-05/036/walk_a"], atol=2e-3)
    assert seq.heatmaps is not None and seq.meta.heatmap_source == "regenerated"
    back = keypoints_from_heatmaps(seq.heatmaps)
    assert np.abs(back[..., :2] - seq.keypoints[..., :2]).max() <= 0.26  # peaks on the keypoints
    # without a mapping: everything, keypoint-only; a rerun skips what is there
    assert main(["import-keypoints", str(src), str(tmp_path / "plain"), "--no-progress"]) == 1
    assert main(["import-keypoints", str(src), str(tmp_path / "plain"), "--no-progress"]) == 1
    assert "imported 0, skipped 6" in capsys.readouterr().out
    file = sequence_path(tmp_path / "plain", "001", "nm-01", "090", "090")
    before = read_sequence(file)
    # regen of a keypoint-only store: same frames, boxes and keypoints, heatmaps added
    summary = regen_store(tmp_path / "plain", tmp_path / "regen", progress=False)
    assert len(summary.written) == 6 and not summary.failed
    after = read_sequence(tmp_path / "regen" / file.relative_to(tmp_path / "plain"))
    for name in ("keypoints", "frame_indices", "boxes", "image_keypoints"):
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name))
    assert after.heatmaps is not None and after.heatmaps.shape == (14, 17, 64, 48)
    assert after.meta.extra["regenerated"]["sigma"] == 2.0
    cells = keypoints_from_heatmaps(after.heatmaps, subpixel=False)[..., :2]
    # the stored (8-bit) peak is the keypoint's cell, or its neighbour for a keypoint within a hair of a cell edge
    assert np.abs(cells - before.keypoints[..., :2]).max() <= 0.55
    assert (cells == np.round(before.keypoints[..., :2])).mean() > 0.97
    assert main(["regen", str(tmp_path / "plain"), str(tmp_path / "regen"), "--no-progress"]) == 0
    assert "regenerated 0, skipped 6" in capsys.readouterr().out
    assert main(["import-keypoints", str(tmp_path / "nowhere"), str(store)]) == 2
