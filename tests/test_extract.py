"""Extraction end to end on real video: dataset naming, quality records, bad inputs, resumability,
reproducibility, and a SIGKILL in the middle of ``gaitheat extract`` followed by a rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitheat.config import ConfigError, load_config
from gaitheat.extract import ExtractConfig, parse_dataset_name
from gaitheat.extract_store import DONE_DIR, discover_inputs, extract_to_store, shard_inputs
from gaitheat.quality import filter_frames, frame_scores
from gaitheat.storage import read_sequence, sequence_path

REPO = Path(__file__).resolve().parent.parent
FAST = ["min_frames=8"]  # short clips keep the suite quick; the default is 20


def write_clip(src: Path, out: Path, start: int, frames: int) -> Path:
    """Copy ``frames`` frames of a real video from ``start`` into an MJPG AVI (deterministic decode)."""
    capture = cv2.VideoCapture(str(src))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    for _ in range(frames):
        ok, frame = capture.read()
        assert ok, f"{src} ended early"
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    capture.release()
    assert writer is not None
    writer.release()
    return out


def write_nobody(out: Path, frames: int = 12) -> Path:
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), 10, (320, 240))
    for i in range(frames):
        writer.write(np.full((240, 320, 3), 60 + 3 * i, np.uint8))
    writer.release()
    return out


def store_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.ghs"))}


# ------------------------------------------------------------------------------------------ naming


@pytest.mark.parametrize(("path", "expected"), [
    ("data/001-nm-01-090.avi", ("001", "nm-01", "090")),
    ("CASIA-B/001/nm-01/090/001-nm-01-090.avi", ("001", "nm-01", "090")),
    ("frames/124-cl-02-180", ("124", "cl-02", "180")),
    ("CASIA-B/012/bg-01/036", ("012", "bg-01", "036")),
    ("CCPG/005/U0_D0_BG/01", ("005", "U0_D0_BG", "01")),
    ("SUSTech1K/0001/01-bg/090", ("0001", "01-bg", "090")),
    ("clips/vtest.avi", None),
    ("x/001-xx-01-090.avi", None),
])
def test_parse_dataset_name(path: str, expected: tuple[str, str, str] | None) -> None:
    assert parse_dataset_name(path) == expected


def test_quality_filter_records_what_was_dropped_and_why() -> None:
    kp = np.zeros((6, 17, 3), np.float32)
    kp[..., 2] = np.array([0.9, 0.3, 0.5, 0.39, 0.41, 0.8])[:, None]
    result = filter_frames(frame_scores(kp), np.arange(10, 16), min_score=0.4, min_frames=3)
    assert result.keep.tolist() == [True, False, True, False, True, True] and result.accepted
    assert result.record["dropped_frames"] == [11, 13] and "0.4" in result.record["dropped_reason"]
    short = filter_frames(frame_scores(kp), np.arange(6), min_score=0.4, min_frames=5)
    assert not short.accepted and "too short" in short.record["rejected"]


def test_config_is_strict_and_validated(tmp_path: Path) -> None:
    assert load_config(ExtractConfig, None, ["min_score=0.5"]).min_score == 0.5
    with pytest.raises(ConfigError, match="min_score"):
        load_config(ExtractConfig, None, ["min_scor=0.5"])
    with pytest.raises(ConfigError, match="boxes_file"):
        load_config(ExtractConfig, None, ["detector=boxes"])
    with pytest.raises(ConfigError, match="bytetrack"):
        load_config(ExtractConfig, None, ["tracker=deepsort"])
    with pytest.raises(ConfigError, match="blazepose"):
        load_config(ExtractConfig, None, ["pose=openpose"])


def test_discover_and_shard(tmp_path: Path) -> None:
    (tmp_path / "001" / "nm-01" / "090").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "001" / "nm-01" / "090" / f"{i:03d}.png").write_bytes(b"")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / ".c.tmp-1.avi").write_bytes(b"")  # a writer's temporary: ignored
    for name in ("b.avi", "a.mp4", "notes.txt"):
        (tmp_path / "videos" / name).write_bytes(b"")
    found = discover_inputs([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["001/nm-01/090", "videos/a.mp4", "videos/b.avi"]
    shards = [shard_inputs(found, (i, 2)) for i in range(2)]
    assert sorted(shards[0] + shards[1]) == found and not set(shards[0]) & set(shards[1])
    with pytest.raises(ValueError, match="shard"):
        shard_inputs(found, (2, 2))


# ---------------------------------------------------------------------------------- batches, real video


@pytest.fixture(scope="module")
def clips(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three 24-frame CASIA-B-named clips of vtest.avi (one stored walker each)."""
    folder = tmp_path_factory.mktemp("clips")
    return [write_clip(media_dir / "vtest.avi", folder / f"{i + 1:03d}-nm-01-090.avi", 150 * i, 24) for i in range(3)]


@pytest.mark.slow
def test_bad_inputs_fail_clearly_and_the_batch_goes_on(clips: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.avi").write_bytes(b"")
    (bad / "text.avi").write_text("definitely not a video\n" * 50)
    write_nobody(bad / "nobody.avi")
    data = clips[2].read_bytes()
    (bad / "005-nm-01-090.avi").write_bytes(data[: len(data) // 2])  # truncated mid-stream
    cfg = load_config(ExtractConfig, None, FAST)
    summary = extract_to_store([bad / "zero.avi", bad / "text.avi", bad / "nobody.avi", bad / "005-nm-01-090.avi",
                                clips[0]], tmp_path / "store", cfg)
    assert (summary["videos"], summary["done"] + summary["failed"]) == (5, 5) and summary["failed"] >= 3
    truncated = next(r for r in summary["inputs"] if r["source"].endswith("005-nm-01-090.avi"))
    assert "truncated" in truncated["warning"] and truncated["frames"] < 24
    assert summary["warnings"] == [truncated["warning"]]  # what `gaitheat extract` prints
    errors = {Path(f["source"]).name: f["error"] for f in summary["failures"]}
    assert "zero.avi" in errors["zero.avi"] and "empty file" in errors["zero.avi"]
    assert "cannot open it as a video" in errors["text.avi"]
    assert "no person" in errors["nobody.avi"]
    seq = read_sequence(sequence_path(tmp_path / "store", "001", "nm-01", "090"))
    assert seq.num_frames >= 8 and seq.boxes is not None and seq.image_keypoints is not None
    assert seq.meta.pose_model == "blazepose-full" and len(seq.meta.pose_model_sha256) == 64
    assert "quality" in seq.meta.extra and seq.meta.extra["quality"]["min_score"] == 0.4
    # Image keypoints are the heatmap keypoints mapped through the stored crop boxes.
    b = seq.boxes[:, None, :]
    x = b[..., 0] + seq.keypoints[..., 0] * (b[..., 2] - b[..., 0]) / 48
    assert np.allclose(seq.image_keypoints[..., 0], x, atol=1e-3)
    # The rerun skips the finished input and retries only the failures.
    again = extract_to_store([bad / "zero.avi", clips[0]], tmp_path / "store", cfg)
    assert (again["skipped"], again["failed"], again["done"]) == (1, 1, 0)


@pytest.mark.slow
def test_same_input_twice_gives_identical_files(clips: list[Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(ExtractConfig, None, FAST)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    extract_to_store([clips[1]], tmp_path / "a", cfg)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    extract_to_store([clips[1]], tmp_path / "b", cfg)
    extract_to_store([clips[1]], tmp_path / "c", cfg)
    a, b, c = (store_files(tmp_path / n) for n in "abc")
    assert b and b == c  # byte-identical with a fixed creation time
    path = next(iter(a))
    sa, sb = read_sequence(tmp_path / "a" / path), read_sequence(tmp_path / "b" / path)
    assert sb.meta.created == "2023-11-14T22:13:20+00:00"
    for field in ("heatmaps", "keypoints", "frame_indices", "boxes", "image_keypoints"):
        assert np.array_equal(getattr(sa, field), getattr(sb, field)), field
    assert {**sa.meta.to_json(), "created": ""} == {**sb.meta.to_json(), "created": ""}


@pytest.mark.slow
def test_kill_during_extract_then_rerun_equals_one_clean_run(clips: list[Path], tmp_path: Path) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    command = [sys.executable, "-m", "gaitheat", "extract", *map(str, clips), "--no-progress",
               *[arg for s in FAST for arg in ("--set", s)]]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*command, "--out", str(killed)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Kill once the first input is finished and the second is under way.
    while time.monotonic() < deadline and not list((killed / DONE_DIR).glob("*.json")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = store_files(killed)
    assert 1 <= len(partial) < len(clips)
    for name in partial:  # whatever exists is complete (a torn write would stay a hidden .tmp- file)
        assert read_sequence(killed / name).num_frames >= 8
    rerun = subprocess.run([*command, "--out", str(killed)], env=env, cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads((killed / "extract-summary.json").read_text())
    assert summary["skipped"] >= 1 and summary["done"] + summary["skipped"] == len(clips)
    clean = tmp_path / "clean"
    assert subprocess.run([*command, "--out", str(clean)], env=env, cwd=REPO).returncode == 0
    assert store_files(killed) == store_files(clean) and len(store_files(clean)) == len(clips)


@pytest.mark.slow
def test_workers_and_shards_give_the_same_store(clips: list[Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    cfg = load_config(ExtractConfig, None, FAST)
    pooled = extract_to_store(clips[:2], tmp_path / "pooled", cfg, workers=2)
    assert pooled["done"] == 2
    for shard in ((0, 2), (1, 2)):
        part = extract_to_store(clips[:2], tmp_path / "sharded", cfg, shard=shard)
        assert (part["videos"], part["done"]) == (1, 1)
    assert store_files(tmp_path / "pooled") == store_files(tmp_path / "sharded")


@pytest.mark.slow
def test_background_subtraction_and_boxes_file_sources(media_dir: Path, tmp_path: Path) -> None:
    from gaitheat.detect import BackgroundSubtractionDetector, BoxesFile
    from gaitheat.extract import extract_video
    from gaitheat.video import decode_frames

    mog2 = BackgroundSubtractionDetector()
    found = [mog2(f.rgb, f.index) for f in decode_frames(media_dir / "vtest.avi", 0, 30)]
    assert found[0].shape == (0, 5)  # still learning the background
    last = found[-1]
    heights = last[:, 3] - last[:, 1]
    assert len(last) >= 2 and np.all(heights >= 40) and np.all(heights < 300)
    # A boxes file from "another detector": MOG2's boxes, written as JSON, drive the extraction.
    boxes = {str(i): b[:, :4].tolist() for i, b in enumerate(found) if len(b)}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    clip = write_clip(media_dir / "vtest.avi", tmp_path / "clip.avi", 0, 30)
    cfg = load_config(ExtractConfig, None, ["min_frames=10", f"boxes_file={tmp_path / 'boxes.json'}",
                                            "detector=boxes"])
    tracks = extract_video(clip, cfg)
    assert len(tracks) >= 1 and all(t.sequence.meta.extra["detector"] == "boxes" for t in tracks)
    assert isinstance(BoxesFile(tmp_path / "boxes.json")(found[-1], 29), np.ndarray)


@pytest.mark.slow
def test_synthetic_casia_b_tree_gives_one_full_sequence_per_video(tmp_path: Path) -> None:
    """The demo's path: a CASIA-B tree of single-walker videos -> one sequence per video, every frame,
    joints where the renderer put them."""
    from gaitheat import synth
    synth.write_dataset(tmp_path / "raw", ["001"], ["nm-01"], ["090", "180"], frames=24, progress=False)
    summary = extract_to_store([tmp_path / "raw"], tmp_path / "store", load_config(ExtractConfig, None, FAST))
    assert (summary["videos"], summary["done"]) == (2, 2)
    for view in ("090", "180"):
        seq = read_sequence(sequence_path(tmp_path / "store", "001", "nm-01", view))
        # The track's first frame is recovered (the tracker names tracks from their second frame).
        assert seq.frame_indices.tolist() == list(range(24))
        truth = synth.load_ground_truth(tmp_path / "raw" / "001" / "nm-01" / view / f"001-nm-01-{view}.avi")
        assert seq.image_keypoints is not None
        error = np.linalg.norm(seq.image_keypoints[..., :2] - truth["joints"], axis=-1)
        height = np.median(truth["boxes"][:, 3] - truth["boxes"][:, 1])
        assert np.median(error) < 0.06 * height  # about 2 heatmap cells


def test_inputs_that_would_overwrite_each_other_fail_clearly(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "clip.avi").write_bytes(b"")
    summary = extract_to_store([tmp_path / "a", tmp_path / "b"], tmp_path / "store", ExtractConfig())
    errors = {Path(f["source"]).parent.name: f["error"] for f in summary["failures"]}
    assert "same store sequences" in errors["b"] and "empty file" in errors["a"]


def test_cli_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gaitheat.cli import main

    assert main(["extract", str(tmp_path), "--out", str(tmp_path / "s"), "--pose", "onnx"]) == 2
    assert "--pose-model" in capsys.readouterr().err
    assert main(["extract", str(tmp_path), "--out", str(tmp_path / "s"), "--shard", "2/2"]) == 2
    assert main(["extract", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    assert "no videos" in capsys.readouterr().err
    assert main(["extract", str(tmp_path), "--out", str(tmp_path / "s"), "--set", "min_fames=3"]) == 2
    assert "min_frames" in capsys.readouterr().err


def test_people_carried_over_are_posed_before_the_detector_is_waited_for(media_dir: Path) -> None:
    """The detector may still be running while carried people are posed; the people found are the same."""
    from gaitheat.detect import BlazePoseDetector
    from gaitheat.extract import ExtractConfig, _estimate_people
    from gaitheat.pose.blazepose import BlazePoseBackend

    rgb = cv2.cvtColor(cv2.imread(str(media_dir / "messi5.jpg")), cv2.COLOR_BGR2RGB)
    cfg = ExtractConfig()
    detector, backend = BlazePoseDetector(), BlazePoseBackend()
    detected = detector(rgb, 0)
    assert len(detected)
    carried = _estimate_people(rgb, np.zeros((0, 5), np.float32), detected, backend, cfg)["boxes"]
    # the carried person, plus a detection far from them that must be posed after the wait
    far = np.array([[0, 0, 40, 60, 0.5]], np.float32)
    events: list[str] = []

    def pose(crops: np.ndarray) -> object:
        events.append(f"pose {len(crops)}")
        return backend(crops)

    pose_fn = type("Pose", (), {"input_size": backend.input_size, "__call__": staticmethod(pose)})()

    def wait() -> np.ndarray:
        events.append("detector")
        return np.concatenate([detected, far])

    waited = _estimate_people(rgb, carried, wait, pose_fn, cfg)
    direct = _estimate_people(rgb, carried, np.concatenate([detected, far]), backend, cfg)
    assert events[:2] == [f"pose {len(carried)}", "detector"] and len(events) == 3  # then the new proposals
    assert waited.keys() == direct.keys()
    for name in waited:
        np.testing.assert_array_equal(waited[name], direct[name], err_msg=name)
    from gaitheat.detect import iou_matrix

    assert iou_matrix(waited["boxes"][:1], carried[:1])[0, 0] > 0.8  # the carried person, found again


def test_a_search_split_over_two_threads_finds_the_same_boxes(media_dir: Path) -> None:
    """The whole-frame search of a frame nobody is followed in is split over the detector thread and the caller."""
    from concurrent.futures import ThreadPoolExecutor

    from gaitheat.detect import BlazePoseDetector

    capture = cv2.VideoCapture(str(media_dir / "vtest.avi"))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    detector = BlazePoseDetector()
    views = detector.views(rgb.shape[1], rgb.shape[0])
    assert len(views) > 2  # the letterboxed frame and its tiles
    alone = detector(rgb, 0)
    with ThreadPoolExecutor(1) as helper:
        split = detector.scan(rgb, views, helper=helper)
    assert len(alone) >= 3  # vtest's first frame shows several people
    np.testing.assert_array_equal(split, alone)


def test_a_replaced_input_is_extracted_again(tmp_path: Path) -> None:
    import json

    from gaitheat.extract_store import _config_digest, _finished, _marker_path, input_stamp

    source, root = tmp_path / "001-nm-01-090.avi", tmp_path / "store"
    source.write_bytes(b"x" * 100)
    digest = _config_digest(ExtractConfig())
    marker = _marker_path(root, source)
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"source": str(source), "status": "done", "sequences": [], "config": digest,
                                  "input": input_stamp(source)}))
    assert _finished(root, source, digest) is not None  # unchanged: skipped on resume
    os.utime(source, ns=(1, 1))
    assert _finished(root, source, digest) is None  # same size, another modification time
    source.write_bytes(b"y" * 101)
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "input": [100, input_stamp(source)[1]]}))
    assert _finished(root, source, digest) is None  # same time, another size
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0001.png").write_bytes(b"a")
    before = input_stamp(frames)
    (frames / "0002.png").write_bytes(b"b")
    assert input_stamp(frames) != before and input_stamp(frames)[:2] == [2, 2]
