"""`gaitheat gallery ...` on a real SQLite gallery filled through the library (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gaitheat.cli import main
from gaitheat.gallery.db import GalleryDB, SequenceSource
from gaitheat.gallery.simulate import EmbeddingSimulator


@pytest.fixture()
def gallery(tmp_path: Path) -> tuple[Path, EmbeddingSimulator]:
    sim = EmbeddingSimulator(dim=32, parts=4, latent=8, sequence_noise=0.3, seed=2)
    path = tmp_path / "g.db"
    with GalleryDB(path, create=True) as db:
        for p in range(5):
            vecs = sim.sequences(np.full(2, p), stream=p)
            db.enrol(f"p{p}", [(v, SequenceSource(f"p{p}-{i}.avi", 1, 20)) for i, v in enumerate(vecs)], "c" * 64)
    return path, sim


def test_list_stats_remove(gallery: tuple[Path, EmbeddingSimulator], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = gallery
    assert main(["gallery", "list", str(path)]) == 0
    out = capsys.readouterr().out
    assert "p0" in out and "p4" in out and "5 people, 10 embeddings" in out
    assert main(["gallery", "remove", str(path), "p3"]) == 0
    assert main(["gallery", "stats", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert stats["people"] == 4 and stats["embeddings"] == 8 and stats["embedding_shape"] == "32x4"
    assert main(["gallery", "remove", str(path), "nobody"]) == 2
    assert "no person named 'nobody'" in capsys.readouterr().err


def test_calibrate_from_embeddings_stores_the_threshold(gallery: tuple[Path, EmbeddingSimulator], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path, sim = gallery
    known = sim.sequences(np.arange(5).repeat(3), stream=100)  # new sequences of the enrolled people
    strangers = sim.sequences(np.arange(50, 58), stream=101)  # people never enrolled
    npz = tmp_path / "labelled.npz"
    np.savez(npz, embeddings=np.concatenate([known, strangers]),
             names=np.array([f"p{i}" for i in np.arange(5).repeat(3)] + [f"s{i}" for i in range(8)]))
    assert main(["gallery", "calibrate", str(path), "--embeddings", str(npz), "--dry-run"]) == 0
    assert GalleryDB(path).threshold is None
    assert main(["gallery", "calibrate", str(path), "--embeddings", str(npz)]) == 0
    out = capsys.readouterr().out
    assert "EER" in out and "<- chosen" in out
    with GalleryDB(path) as db:
        stats = db.stats()
        assert stats["threshold"] is not None and stats["threshold"] > 0
        assert stats["threshold_info"]["known_probes"] == 15 and stats["threshold_info"]["stranger_probes"] == 8
        assert stats["threshold_info"]["eer"] <= 0.2  # well-separated identities: a usable threshold exists


def test_user_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gallery", "list", str(tmp_path / "missing.db")]) == 2
    assert "no such gallery" in capsys.readouterr().err
    assert main(["enrol", "--gallery", str(tmp_path / "g.db"), "--name", "x"]) == 2
    assert "--name needs at least one VIDEO" in capsys.readouterr().err
    assert main(["enrol", "--gallery", str(tmp_path / "g.db"), "--name", "x", str(tmp_path / "nope.avi")]) == 2
    assert "no such video" in capsys.readouterr().err
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("alice\n")
    assert main(["enrol", "--gallery", str(tmp_path / "g.db"), "--from-csv", str(bad_csv)]) == 2
    assert "expected name,video" in capsys.readouterr().err


def test_help_is_cheap() -> None:
    import subprocess
    import sys

    code = ("import argparse, importlib, sys\n"
            "for name in ('enrol', 'identify', 'gallery'):\n"
            "    importlib.import_module(f'gaitheat.cli.{name}').add_arguments(argparse.ArgumentParser())\n"
            "print([m for m in ('torch', 'faiss', 'cv2', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_show_draws_held_boxes_on_real_video(media_dir: Path, tmp_path: Path) -> None:
    import cv2

    from gaitheat.gallery.service import Identification, Track
    from gaitheat.gallery.show import boxes_by_frame, render_identities

    box = np.array([[100, 100, 200, 300]] * 3, np.float32)
    track = Track(str(media_dir / "vtest.avi"), 3, np.array([0, 2, 4]), box, np.zeros((4, 2), np.float32))
    result = Identification(track, "alice", [("alice", 0.3)], 0.5)
    assert sorted(boxes_by_frame([result])) == [0, 1, 2, 3, 4]  # held over the stride's skipped frames
    out = render_identities(media_dir / "vtest.avi", [result], tmp_path / "shown.avi", max_frames=8)
    cap = cv2.VideoCapture(str(out))
    frames = []
    while (ok := cap.read())[0]:
        frames.append(ok[1])
    cap.release()
    assert len(frames) == 8
    source = cv2.VideoCapture(str(media_dir / "vtest.avi"))
    source.read()
    original = source.read()[1]  # frame 1
    source.release()
    changed = np.abs(frames[1].astype(int) - original.astype(int)).sum(-1) > 60
    assert changed[100:300, 98:103].mean() > 0.8  # the box's left edge is drawn on frame 1
    assert changed[400:, 500:].mean() < 0.01  # away from the box the picture is untouched (bar compression)
