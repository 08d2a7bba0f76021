"""Synthetic walkers: determinism, the CASIA-B tree, ground truth, covariates and the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from gaitheat.synth import (
    VIEWS,
    load_ground_truth,
    render_sequence,
    sample_identity,
    sequence_paths,
    subject_identity,
    write_dataset,
)


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path: Path) -> None:
    kw = dict(subjects=2, conditions=["nm-01", "bg-01"], views=["090"], frames=6, seed=3)
    write_dataset(tmp_path / "a", workers=1, progress=False, **kw)  # type: ignore[arg-type]
    write_dataset(tmp_path / "b", workers=2, progress=False, **kw)  # type: ignore[arg-type]
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(a) == 12 and a == b  # video, ground truth and body masks of 4 sequences
    write_dataset(tmp_path / "c", workers=1, progress=False, **{**kw, "seed": 4})  # type: ignore[arg-type]
    c = _digests(tmp_path / "c")
    assert set(c) == set(a) and all(c[k] != a[k] for k in a)


def test_tree_layout_video_and_ground_truth(tmp_path: Path) -> None:
    import cv2

    counts = write_dataset(tmp_path, ["007"], ["cl-02"], ["036"], frames=8, seed=1, progress=False)
    assert counts == {"written": 1, "skipped": 0}
    video, _ = sequence_paths(tmp_path, "007", "cl-02", "036")
    assert video == tmp_path / "007" / "cl-02" / "036" / "007-cl-02-036.avi"
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 8 and frames[0].shape == (240, 320, 3)
    gt = load_ground_truth(video)
    assert gt["joints"].shape == (8, 17, 2) and gt["boxes"].shape == (8, 4)
    assert (gt["subject"], gt["condition"], gt["view"]) == ("007", "cl-02", "036")
    # every joint lies inside (or within a few pixels of) the figure's box
    lo, hi = gt["boxes"][:, None, :2] - 3, gt["boxes"][:, None, 2:] + 3
    assert np.all((gt["joints"] >= lo) & (gt["joints"] <= hi))
    # rerun skips finished sequences and leaves no temporary files
    assert write_dataset(tmp_path, ["007"], ["cl-02"], ["036"], frames=8, seed=1, progress=False)["skipped"] == 1
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_render_shapes_and_anatomy() -> None:
    person = sample_identity(np.random.default_rng(0), 0.5)
    frames, joints, boxes = render_sequence(person, "nm-01", "090", frames=5, seed=2)
    assert frames.shape == (5, 240, 320, 3) and frames.dtype == np.uint8
    assert joints.shape == (5, 17, 2) and boxes.shape == (5, 4)
    y = joints[..., 1]
    # image rows grow downwards: nose above shoulders above hips above knees above ankles
    assert np.all(y[:, 0] < y[:, 5]) and np.all(y[:, 5] < y[:, 11]) and np.all(y[:, 11] < y[:, 13])
    assert np.all(y[:, 13] < y[:, 15])
    height = boxes[:, 3] - boxes[:, 1]
    assert np.all(height > 0.45 * 240) and np.all(boxes[:, 3] <= 240)


def test_walking_direction_follows_the_view() -> None:
    person = sample_identity(np.random.default_rng(1), 0.5)
    _, j90, _ = render_sequence(person, "nm-01", "090", frames=20, seed=5)
    _, j0, b0 = render_sequence(person, "nm-01", "000", frames=20, seed=5)
    assert j90[-1, 11, 0] - j90[0, 11, 0] > 40  # across the image, left to right
    assert (b0[-1, 3] - b0[-1, 1]) > (b0[0, 3] - b0[0, 1])  # towards the camera: grows
    # facing the camera, the person's left shoulder is on the image's right
    assert np.all(j0[:, 5, 0] > j0[:, 6, 0])


def test_identity_lives_in_the_body_not_the_recording(tmp_path: Path) -> None:
    write_dataset(tmp_path, 2, ["nm-01", "nm-02"], ["054"], frames=4, seed=9, progress=False)
    gts = {(s, c): load_ground_truth(sequence_paths(tmp_path, s, c, "054")[1])
           for s in ("001", "002") for c in ("nm-01", "nm-02")}
    assert gts["001", "nm-01"]["identity"] == gts["001", "nm-02"]["identity"]
    assert gts["001", "nm-01"]["identity"] != gts["002", "nm-01"]["identity"]
    assert subject_identity(9, "001", 0.5) == subject_identity(9, "001", 0.5)
    # the same person looks different in two recordings (clothes, light, camera)
    a = render_sequence(subject_identity(9, "001", 0.5), "nm-01", "054", 2, seed=1).frames
    b = render_sequence(subject_identity(9, "001", 0.5), "nm-01", "054", 2, seed=2).frames
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10


def test_difficulty_brings_people_closer() -> None:
    rng = np.random.default_rng(0)
    easy = np.array([dataclasses.astuple(sample_identity(rng, 0.0)) for _ in range(300)])
    hard = np.array([dataclasses.astuple(sample_identity(rng, 1.0)) for _ in range(300)])
    ratio = hard.std(axis=0) / easy.std(axis=0)
    assert np.all(ratio < 0.3) and np.all(ratio > 0.05)
    with pytest.raises(ValueError, match="difficulty"):
        sample_identity(rng, 1.5)


def test_covariates_change_the_silhouette_not_the_nuisance() -> None:
    person = sample_identity(np.random.default_rng(4), 0.5)
    nm = render_sequence(person, "nm-01", "090", 6, seed=8)
    bg = render_sequence(person, "bg-01", "090", 6, seed=8)
    cl = render_sequence(person, "cl-01", "090", 6, seed=8)
    np.testing.assert_allclose(nm.joints, bg.joints)  # same walk, same camera
    diff = np.abs(nm.frames.astype(int) - bg.frames.astype(int)).max(axis=-1) > 40
    assert diff.sum() > 100  # a bag appears
    x1, y1, x2, y2 = nm.boxes[0].astype(int)
    outside = diff.copy()
    outside[:, y1 - 4:y2 + 4, x1 - 30:x2 + 30] = False
    assert outside.sum() == 0  # ... next to the person, nowhere else
    nm_width = (nm.boxes[:, 2] - nm.boxes[:, 0]).mean()
    assert np.abs(cl.frames.astype(int) - nm.frames.astype(int)).mean() > 0.5
    assert (cl.boxes[:, 2] - cl.boxes[:, 0]).mean() >= nm_width - 1  # a coat is never narrower


def test_views_are_casia_b_views() -> None:
    assert VIEWS[0] == "000" and VIEWS[-1] == "180" and len(VIEWS) == 11


def test_cli_synth_writes_the_tree_and_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gaitheat.cli import main

    out = tmp_path / "synth"
    assert main(["synth", "--subjects", "1", "--out", str(out), "--views", "090", "--conditions", "bg-02",
                 "--frames", "3", "--seed", "5"]) == 0
    assert (out / "001" / "bg-02" / "090" / "001-bg-02-090.avi").is_file()
    assert main(["synth", "--subjects", "1", "--out", str(out), "--conditions", "xx-01", "--frames", "3"]) == 2
    assert "xx-01" in capsys.readouterr().err
    assert main(["synth", "--subjects", "1", "--out", str(out), "--difficulty", "2"]) == 2
