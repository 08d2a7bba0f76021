"""Silhouettes end to end: a synthetic walker through the real extraction (BlazePose via LiteRT, its
own segmentation on the same invoke) into the store, checked against the renderer's true body mask;
silhouette reads that touch no heatmap chunk; `gaitheat show` with the silhouette; the OpenGait
silhouette pickle import (real restricted unpickler, a bad file included)."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gaitheat.cli import main
from gaitheat.extract import ExtractConfig
from gaitheat.extract_store import _config_digest
from gaitheat.storage import SequenceFile, StoreError


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(videos, store): one synthetic walker at view 090, extracted with default settings."""
    from gaitheat.extract_store import extract_to_store
    from gaitheat.synth import write_dataset

    root = tmp_path_factory.mktemp("silhouettes")
    videos, store = root / "videos", root / "store"
    write_dataset(videos, ["001"], ["nm-01"], ["090"], frames=24, seed=5, progress=False)
    summary = extract_to_store([videos], store, ExtractConfig())
    assert summary["done"] == 1, summary
    return videos, store


def _heatmap_chunks(path: Path) -> list[tuple[int, int]]:
    """(absolute offset, length) of every heatmap chunk, from the file's header (storage.py's format)."""
    data = path.read_bytes()
    _, _, head_len, _ = struct.unpack_from("<8sIII", data)
    header = json.loads(data[20: 20 + head_len])
    body = 20 + head_len
    return [(body + c["offset"], c["length"]) for c in header["chunks"]]


@pytest.mark.slow
def test_extracted_silhouettes_match_the_true_body_and_read_without_heatmaps(extracted: tuple[Path, Path],
                                                                           tmp_path: Path) -> None:
    from gaitheat.silhouettes import iou_with_true_masks
    from gaitheat.synth import load_body_masks, sequence_paths

    videos, store = extracted
    path = store / "001" / "nm-01" / "090" / "heatmaps.ghs"
    seq = SequenceFile(path)
    assert {"heatmaps", "keypoints", "silhouettes"} <= seq.sections
    sils = seq.read_silhouettes()
    assert sils.shape == (seq.num_frames, 64, 44) and sils.dtype == np.uint8
    assert set(np.unique(sils)) == {0, 255}
    frames = seq.arrays()["frame_indices"]
    ious = iou_with_true_masks(sils, frames, load_body_masks(sequence_paths(videos, "001", "nm-01", "090")[0]))
    assert np.nanmean(ious) >= 0.80, ious
    assert iou_with_true_masks(sils, frames[::-1], load_body_masks(sequence_paths(videos, "001", "nm-01", "090")[0])
                               ).mean() < np.nanmean(ious)  # the right frames match better than the wrong ones

    # Reading silhouettes decompresses no heatmap chunk: with every heatmap chunk corrupted, silhouettes
    # still read (identically), while a heatmap read fails on the first chunk's checksum.
    broken = tmp_path / "broken.ghs"
    data = bytearray(path.read_bytes())
    for offset, length in _heatmap_chunks(path):
        data[offset: offset + length] = bytes(length)
    broken.write_bytes(bytes(data))
    damaged = SequenceFile(broken)
    np.testing.assert_array_equal(damaged.read_silhouettes(), sils)
    np.testing.assert_array_equal(damaged.read_silhouettes([5, 1]), sils[[5, 1]])
    with pytest.raises(StoreError, match="checksum"):
        damaged.read_heatmaps([0])

    # `gaitheat show` draws the silhouette beside the heatmaps: a panel 4 x 44 = 176 pixels wider.
    assert main(["show", str(path), "--out", str(tmp_path / "s.png"), "--frames", "2"]) == 0
    png = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    frame_w = 320 * 256 // 240
    assert png.shape == (2 * 256, frame_w + 192 + 176, 3)
    panel = png[:256, frame_w + 192:]
    assert (panel == 255).all(axis=2).mean() > 0.1  # white body on black
    assert (panel == 0).all(axis=2).mean() > 0.3


def test_done_marker_digest_counts_silhouettes_only_where_they_are_written() -> None:
    import hashlib

    from gaitheat.config import to_dict

    on, off = ExtractConfig(), ExtractConfig(silhouettes=False)
    assert on.silhouettes and _config_digest(on) != _config_digest(off)
    # "off" hashes like a marker written before the setting existed (its store has no silhouettes).
    old = {k: v for k, v in to_dict(off).items() if k not in ("created", "detector_thread", "silhouettes")}
    assert _config_digest(off) == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    # The onnx backend has no mask: the setting changes nothing there, so it changes no digest.
    onnx_on = ExtractConfig(pose="onnx", pose_model="m.onnx")
    assert _config_digest(onnx_on) == _config_digest(ExtractConfig(pose="onnx", pose_model="m.onnx",
                                                                   silhouettes=False))


def test_import_opengait_silhouette_pickles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gaitheat.import_silhouettes import import_silhouette_tree

    src, store = tmp_path / "pkl", tmp_path / "store"
    rng = np.random.default_rng(0)
    square = (rng.random((7, 64, 64)) > 0.5).astype(np.uint8) * 255  # as OpenGait's pretreatment writes
    cut = rng.integers(0, 256, (5, 64, 44), dtype=np.uint8)  # already cut, grey edges kept as they are
    for rel, array in (("001/nm-01/000/000.pkl", square), ("002/bg-02/090/090.pkl", cut),
                       ("003/cl-01/180/180.pkl", np.zeros((4, 17, 3), np.float32))):  # a pose pickle: bad
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(pickle.dumps(array))
    evil = src / "004" / "nm-01" / "000" / "000.pkl"
    evil.parent.mkdir(parents=True)
    evil.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # os.system("echo pwned")
    (src / "001" / "nm-01" / "000" / "float_000.pkl").write_bytes(b"left to import-pkl")
    summary = import_silhouette_tree(src, store)
    assert len(summary.written) == 2 and set(summary.failed) == {str(src / "003/cl-01/180/180.pkl"), str(evil)}
    assert "(T, 64, 64) or (T, 64, 44)" in summary.failed[str(src / "003/cl-01/180/180.pkl")]
    assert "refusing" in summary.failed[str(evil)] and "pwned" not in capsys.readouterr().out
    first = SequenceFile(store / "001" / "nm-01" / "000" / "000.ghs")
    assert first.sections == {"silhouettes"} and first.num_frames == 7
    np.testing.assert_array_equal(first.read_silhouettes(), square[:, :, 10:54])
    np.testing.assert_array_equal(SequenceFile(store / "002" / "bg-02" / "090" / "090.ghs").read_silhouettes(), cut)
    with pytest.raises(StoreError, match="heatmaps"):
        first.read_heatmaps()
    # The CLI: the same tree again skips what is there, reports the bad files, exits 1; a silhouette-only
    # file shows as its silhouettes.
    assert main(["import-silhouettes", str(src), str(store)]) == 1
    err = capsys.readouterr()
    assert "imported 0, skipped 2" in err.out and "180.pkl" in err.err
    assert main(["show", str(store / "001" / "nm-01" / "000" / "000.ghs"), "--out", str(tmp_path / "o.png"),
                 "--frames", "1"]) == 0
    assert np.asarray(Image.open(tmp_path / "o.png")).shape[:2] == (256, 176)
    assert main(["import-silhouettes", str(tmp_path / "nothing"), str(store)]) == 2
