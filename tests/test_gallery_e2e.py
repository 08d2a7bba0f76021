"""Enrol and identify end to end on synthetic walker videos, through the real pipeline and the CLI.

synthetic videos (gaitheat.synth) -> extract_video (detector, tracker, BlazePose via LiteRT) -> a tiny
GaitHeat trained here on eight identities -> SQLite gallery of four of them -> open-set threshold
calibrated on unseen walks of the enrolled and on people not in the gallery -> identify. The
walks identified were seen neither in training nor in calibration, and the stranger who must come
out "unknown" was never trained on, enrolled or used for calibration.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gaitheat.cli import main

ENROLLED = ("001", "002", "003", "004")
TRAINED_ONLY = ("005", "006", "007", "008")  # in training, never enrolled: strangers for calibration
STRANGER_CAL, STRANGER_TEST = "009", "010"  # never trained on nor enrolled
VIEW = "090"
STEPS = 150  # enough for the open-set margin to be stable (60 left a known walk near the threshold)


def _video(root: Path, subject: str, condition: str) -> Path:
    from gaitheat.synth.dataset import sequence_paths

    return sequence_paths(root / "videos", subject, condition, VIEW)[0]


def _csv(path: Path, rows: list[tuple[str, Path]]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([("name", "video"), *((n, str(v)) for n, v in rows)])
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Videos of six walkers and a checkpoint trained on the four enrolled ones."""
    from gaitheat.config import load_config
    from gaitheat.experiment import ExperimentConfig
    from gaitheat.extract import ExtractConfig
    from gaitheat.extract_store import extract_to_store
    from gaitheat.synth import write_dataset
    from gaitheat.train import train

    root = tmp_path_factory.mktemp("gallery-e2e")
    write_dataset(root / "videos", [*ENROLLED, *TRAINED_ONLY, STRANGER_CAL, STRANGER_TEST],
                  ["nm-01", "nm-02", "nm-03", "nm-04"], [VIEW], frames=32, seed=11, difficulty=0.0, workers=1,
                  progress=False)
    cfg = ExtractConfig(frame_stride=2, min_frames=6)
    (root / "extract.yaml").write_text("frame_stride: 2\nmin_frames: 6\n")
    training = [_video(root, s, c) for s in (*ENROLLED, *TRAINED_ONLY) for c in ("nm-01", "nm-02")]
    summary = extract_to_store(training, root / "store", cfg, workers=1, progress=False)
    assert summary["failed"] == 0 and summary["tracks"] == len(training)
    exp = load_config(ExperimentConfig, "cpu-small", [
        f"data.root={root / 'store'}", f"train.out={root / 'run'}", f"train.steps={STEPS}",
        f"train.milestones=[{int(STEPS * 0.8)}]", f"train.checkpoint_every={STEPS}"])
    return {"root": root, "checkpoint": train(exp, device="cpu"), "extract": root / "extract.yaml"}


@pytest.mark.slow
def test_enrol_calibrate_identify_known_and_unknown(world: dict[str, Path], capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    root, ckpt = world["root"], str(world["checkpoint"])
    gallery = str(root / "people.db")
    common = ["--extract-config", str(world["extract"]), "--no-progress"]
    enrol_csv = _csv(root / "enrol.csv", [(s, _video(root, s, c)) for s in ENROLLED for c in ("nm-01", "nm-02")])
    assert main(["enrol", "--gallery", gallery, "--checkpoint", ckpt, "--from-csv", str(enrol_csv), *common]) == 0
    assert main(["gallery", "list", gallery]) == 0
    listing = capsys.readouterr().out
    assert all(s in listing for s in ENROLLED)

    # calibration: unseen nm-03 walks of the enrolled people, and a stranger's walks
    cal_csv = _csv(root / "calibrate.csv", [(s, _video(root, s, "nm-03")) for s in (*ENROLLED, *TRAINED_ONLY)]
                   + [(STRANGER_CAL, _video(root, STRANGER_CAL, c)) for c in ("nm-01", "nm-03")])
    assert main(["gallery", "calibrate", gallery, "--from-csv", str(cal_csv), *common]) == 0
    out = capsys.readouterr().out
    assert "EER" in out and "threshold" in out

    results = {}
    for subject in ("002", STRANGER_TEST):
        report = root / f"{subject}.json"
        shown = root / f"{subject}.gif"
        assert main(["identify", "--gallery", gallery, str(_video(root, subject, "nm-04")), "--top-k", "3",
                     "--json", str(report), "--show", str(shown), *common]) == 0
        data = json.loads(report.read_text())
        assert len(data["tracks"]) == 1 and len(data["tracks"][0]["matches"]) == 3
        assert shown.stat().st_size > 1000
        results[subject] = data["tracks"][0]
    assert results["002"]["label"] == "002", results
    assert results[STRANGER_TEST]["label"] == "unknown", results
    table = capsys.readouterr().out
    assert "002" in table and "unknown" in table


@pytest.mark.slow
def test_another_checkpoint_is_refused(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    root = world["root"]
    gallery = str(root / "refuse.db")
    video = str(_video(root, "001", "nm-01"))
    common = ["--extract-config", str(world["extract"]), "--no-progress"]
    assert main(["enrol", "--gallery", gallery, "--checkpoint", str(world["checkpoint"]), "--name", "001", video,
                 *common]) == 0
    other = root / "other.pt"
    payload = torch.load(world["checkpoint"], map_location="cpu", weights_only=False)
    payload["step"] = int(payload["step"]) + 1  # different bytes, different model checksum
    torch.save(payload, other)
    capsys.readouterr()
    assert main(["enrol", "--gallery", gallery, "--checkpoint", str(other), "--name", "002", video, *common]) == 2
    err = capsys.readouterr().err
    assert "embeddings of different models cannot be compared" in err
    assert main(["identify", "--gallery", gallery, "--checkpoint", str(other), video, *common]) == 2
    assert main(["gallery", "stats", gallery, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["people"] == 1 and stats["embeddings"] == 1


@pytest.mark.slow
def test_gallery_of_the_shipped_model_identifies_a_held_out_walker(
        world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    """The world's checkpoint exported as the shipped model: enrol and identify with no --checkpoint at all.

    009 and 010 were never trained on; 010's nm-04 walk was neither trained on nor enrolled.
    """
    import logging

    from gaitheat import pretrained

    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(pretrained, "_announced", set())
    info = pretrained.export_pretrained(world["checkpoint"], tmp_path / "weights")
    root, gallery = world["root"], str(tmp_path / "shipped.db")
    common = ["--extract-config", str(world["extract"]), "--no-progress"]
    people = (STRANGER_CAL, STRANGER_TEST, "001", "002")
    enrol_csv = _csv(tmp_path / "enrol.csv", [(s, _video(root, s, c)) for s in people for c in ("nm-01", "nm-02")])
    report = tmp_path / "who.json"
    with caplog.at_level(logging.INFO, logger="gaitheat.pretrained"):
        assert main(["enrol", "--gallery", gallery, "--from-csv", str(enrol_csv), *common]) == 0
        assert main(["identify", "--gallery", gallery, str(_video(root, STRANGER_TEST, "nm-04")), "--threshold",
                     "1e9", "--json", str(report), *common]) == 0
    said = [r.getMessage() for r in caplog.records if "shipped pretrained model" in r.getMessage()]
    assert len(said) == 1 and info.sha256[:12] in said[0]  # once per process
    data = json.loads(report.read_text())
    assert data["model_sha256"] == info.sha256 and len(data["tracks"]) == 1
    assert data["tracks"][0]["label"] == STRANGER_TEST, data["tracks"][0]["matches"]
    # the gallery pinned the shipped model like any checkpoint: the .pt it came from is another model
    assert main(["identify", "--gallery", gallery, "--checkpoint", str(world["checkpoint"]),
                 str(_video(root, STRANGER_TEST, "nm-04")), *common]) == 2
