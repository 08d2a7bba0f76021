from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import gaussian_heatmaps

from gaitheat import storage
from gaitheat.manifest import load_manifest, read_manifest, scan_store
from gaitheat.storage import (
    HeatmapSequence,
    SequenceFile,
    SequenceMeta,
    StoreError,
    read_sequence,
    sequence_path,
    write_sequence,
)


def make_sequence(t: int = 37, seed: int = 0, **meta: str) -> HeatmapSequence:
    rng = np.random.default_rng(seed)
    heat = gaussian_heatmaps(t, rng)
    kp = rng.uniform(0, 48, size=(t, 17, 3)).astype(np.float32)
    boxes = np.tile(np.array([10, 20, 110, 220], np.float32), (t, 1))
    fields = {"subject": "001", "condition": "nm-01", "view": "090", **meta}
    return HeatmapSequence(heatmaps=heat, keypoints=kp, frame_indices=np.arange(t) * 2,
                           meta=SequenceMeta(source="clip.avi", pose_model="test", **fields), boxes=boxes,
                           image_keypoints=kp * 4)


def test_round_trip_within_one_quantisation_step(tmp_path: Path) -> None:
    seq = make_sequence()
    path = write_sequence(sequence_path(tmp_path, "001", "nm-01", "090"), seq)
    assert path == tmp_path / "001/nm-01/090/heatmaps.ghs"
    back = read_sequence(path)
    step = (seq.heatmaps.max(axis=(2, 3)) - seq.heatmaps.min(axis=(2, 3))) / 255.0
    err = np.abs(back.heatmaps - seq.heatmaps).max(axis=(2, 3))
    assert np.all(err <= step * 0.5 + 1e-6)
    np.testing.assert_array_equal(back.keypoints, seq.keypoints)
    np.testing.assert_array_equal(back.frame_indices, seq.frame_indices)
    np.testing.assert_array_equal(back.boxes, seq.boxes)
    np.testing.assert_array_equal(back.image_keypoints, seq.image_keypoints)
    assert back.meta.subject == "001" and back.meta.view == "090" and back.meta.created
    assert back.meta.heatmap_size == (64, 48)


def test_negative_values_survive(tmp_path: Path) -> None:
    seq = make_sequence(t=3)
    seq.heatmaps -= 0.2
    back = read_sequence(write_sequence(tmp_path / "a.ghs", seq))
    assert back.heatmaps.min() < -0.19
    assert np.abs(back.heatmaps - seq.heatmaps).max() < 1 / 255


def test_subset_reads_only_needed_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seq = make_sequence(t=50)
    path = write_sequence(tmp_path / "s.ghs", seq)
    file = SequenceFile(path)
    decoded: list[int] = []
    original = storage.dequantise

    def counting(codes: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
        decoded.append(codes.shape[0])
        return original(codes, offset, scale)

    monkeypatch.setattr(storage, "dequantise", counting)
    frames = [3, 3, 49, 0]
    part = file.read(frames)
    assert len(decoded) == 2  # chunks 0 and 3 of 16-frame chunks; chunks 1 and 2 untouched
    full = read_sequence(path)
    np.testing.assert_array_equal(part.heatmaps, full.heatmaps[frames])
    np.testing.assert_array_equal(part.frame_indices, seq.frame_indices[frames])
    with pytest.raises(IndexError):
        file.read([50])


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.ghs"
    path.write_bytes(b"")
    with pytest.raises(StoreError, match=r"empty\.ghs"):
        SequenceFile(path)


@pytest.mark.parametrize("cut", [10, 200, -1, -100])
def test_truncated_file(tmp_path: Path, cut: int) -> None:
    path = write_sequence(tmp_path / "t.ghs", make_sequence())
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(StoreError, match=r"t\.ghs"):
        read_sequence(path)


def test_flipped_byte_in_chunk_is_caught(tmp_path: Path) -> None:
    path = write_sequence(tmp_path / "c.ghs", make_sequence())
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="checksum"):
        read_sequence(path)


def test_wrong_version_and_magic(tmp_path: Path) -> None:
    path = write_sequence(tmp_path / "v.ghs", make_sequence(t=2))
    data = bytearray(path.read_bytes())
    data[8] = 99
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="version 99"):
        SequenceFile(path)
    path.write_bytes(b"not a sequence file at all, just text\n")
    with pytest.raises(StoreError, match="bad magic"):
        SequenceFile(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such file"):
        SequenceFile(tmp_path / "nope.ghs")


@pytest.mark.parametrize("field", ["heatmaps", "keypoints", "boxes"])
def test_nan_is_refused_and_nothing_written(tmp_path: Path, field: str) -> None:
    seq = make_sequence(t=4)
    getattr(seq, field)[1, 0] = np.nan
    target = tmp_path / "x" / "n.ghs"
    with pytest.raises(StoreError, match="NaN"):
        write_sequence(target, seq)
    assert not target.exists()
    assert not list(tmp_path.rglob("*tmp*"))


def test_nan_written_by_someone_else_is_caught_on_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seq = make_sequence(t=4)
    seq.keypoints[0, 0, 0] = np.nan
    with monkeypatch.context() as m:  # a foreign writer that does not validate
        m.setattr(HeatmapSequence, "validate", lambda self, where="": None)
        data = storage.encode_sequence(seq)
    path = tmp_path / "bad.ghs"
    path.write_bytes(data)
    with pytest.raises(StoreError, match=r"bad\.ghs: keypoints contain NaN"):
        read_sequence(path)


@pytest.mark.parametrize(("shape_field", "bad"), [
    ("heatmaps", np.zeros((4, 17, 32, 48), np.float32)),
    ("heatmaps", np.zeros((0, 17, 64, 48), np.float32)),
    ("keypoints", np.zeros((4, 17, 2), np.float32)),
    ("frame_indices", np.zeros((3,), np.int64)),
])
def test_wrong_shapes_refused(tmp_path: Path, shape_field: str, bad: np.ndarray) -> None:
    seq = make_sequence(t=4)
    setattr(seq, shape_field, bad)
    with pytest.raises(StoreError):
        write_sequence(tmp_path / "w.ghs", seq)
    assert not (tmp_path / "w.ghs").exists()


def test_killed_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_sequence(tmp_path / "k.ghs", make_sequence(t=5, seed=1))
    before = path.read_bytes()

    def boom(fd: int) -> None:
        raise OSError("disk died")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk died"):
        write_sequence(path, make_sequence(t=9, seed=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["k.ghs"]


def test_manifest_scan(tmp_path: Path) -> None:
    for subject, cond, view in [("001", "nm-01", "000"), ("001", "bg-01", "090"), ("002", "nm-01", "000")]:
        write_sequence(sequence_path(tmp_path, subject, cond, view), make_sequence(t=7, subject=subject,
                                                                                   condition=cond, view=view))
    (tmp_path / "003/nm-01/000").mkdir(parents=True)
    (tmp_path / "003/nm-01/000/heatmaps.ghs").write_bytes(b"garbage")
    rows, errors = scan_store(tmp_path)
    assert [(r.subject, r.condition, r.view, r.frames) for r in rows] == [
        ("001", "bg-01", "090", 7), ("001", "nm-01", "000", 7), ("002", "nm-01", "000", 7)]
    assert len(errors) == 1 and "003" in str(errors[0])
    loaded = load_manifest(tmp_path)
    assert loaded == rows == read_manifest(tmp_path / "manifest.csv")
    assert all((tmp_path / r.path).is_file() and r.bytes > 0 for r in rows)


def test_sigkill_mid_write_leaves_no_partial_file(tmp_path: Path) -> None:
    """A writer killed at a random moment leaves complete files or none, never a partial one."""
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import numpy as np, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_storage import make_sequence
from gaitheat.storage import write_sequence
i = 0
while True:
    write_sequence({str(tmp_path)!r} + f"/s{{i % 3}}.ghs", make_sequence(t=400, seed=i))
    print(i, flush=True)
    i += 1
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(4):  # let a few files complete, then kill in the middle of the next write
        proc.stdout.readline()
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(tmp_path.glob("s*.ghs"))
    assert finished, "the writer should have completed some files before the kill"
    for file in finished:
        assert read_sequence(file).num_frames == 400
    _rows, errors = scan_store(tmp_path)
    assert not errors


def test_atomic_files_get_normal_permissions(tmp_path: Path) -> None:
    path = write_sequence(tmp_path / "p.ghs", make_sequence(t=2))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------------------- optional sections


def silhouettes(t: int, seed: int = 0) -> np.ndarray:
    """(T, 64, 44) uint8 0/255: a walking blob whose width changes per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:44]
    widths = rng.uniform(6, 14, size=t)
    return np.stack([((np.abs(xx - 22) < w) & (yy > 4)).astype(np.uint8) * 255 for w in widths])


def test_keypoint_only_round_trip(tmp_path: Path) -> None:
    seq = make_sequence(t=21)
    seq.heatmaps = None
    path = write_sequence(tmp_path / "kp.ghs", seq)
    file = SequenceFile(path)
    assert file.sections == {"keypoints", "boxes", "image_keypoints"}
    assert file.version == 2 and file.num_frames == 21
    back = file.read([0, 20, 5])
    assert back.heatmaps is None and back.silhouettes is None
    np.testing.assert_array_equal(back.keypoints, seq.keypoints[[0, 20, 5]])
    np.testing.assert_array_equal(back.frame_indices, seq.frame_indices[[0, 20, 5]])
    np.testing.assert_array_equal(file.keypoints, seq.keypoints)
    with pytest.raises(StoreError, match=r"kp\.ghs: has no 'heatmaps' section \(needed by gaitheat\); it holds "
                                         r"boxes\+image_keypoints\+keypoints"):
        file.require("heatmaps", needed_by="gaitheat")
    with pytest.raises(StoreError, match=r"kp\.ghs: has no 'heatmaps' section"):
        file.read_heatmaps([0])
    with pytest.raises(StoreError, match=r"kp\.ghs: has no 'silhouettes' section"):
        file.read_silhouettes()
    with pytest.raises(StoreError, match=r"kp\.ghs: has no 'heatmaps' section"):
        _ = file.shape
    file.verify()


def test_silhouette_round_trip(tmp_path: Path) -> None:
    seq = make_sequence(t=40)
    seq.silhouettes = silhouettes(40)
    path = write_sequence(tmp_path / "s.ghs", seq)
    file = SequenceFile(path)
    assert file.sections == {"heatmaps", "keypoints", "silhouettes", "boxes", "image_keypoints"}
    assert file.version == 1  # heatmaps present: a version-1 reader still reads it
    np.testing.assert_array_equal(file.read_silhouettes(), seq.silhouettes)
    np.testing.assert_array_equal(file.read_silhouettes([39, 0, 0, 17]), seq.silhouettes[[39, 0, 0, 17]])
    back = file.read([2, 33])
    assert back.silhouettes is not None and back.silhouettes.dtype == np.uint8
    np.testing.assert_array_equal(back.silhouettes, seq.silhouettes[[2, 33]])
    assert back.heatmaps is not None and np.abs(back.heatmaps - seq.heatmaps[[2, 33]]).max() < 1 / 255
    # silhouette-only (no heatmaps, no keypoints), as an OpenGait silhouette import writes them
    only = HeatmapSequence(heatmaps=None, keypoints=None, frame_indices=np.arange(40), meta=seq.meta,
                           silhouettes=seq.silhouettes)
    file2 = SequenceFile(write_sequence(tmp_path / "only.ghs", only))
    assert file2.sections == {"silhouettes"} and file2.version == 2
    np.testing.assert_array_equal(file2.read().silhouettes, seq.silhouettes)
    with pytest.raises(StoreError, match=r"only\.ghs: has no 'keypoints' section"):
        _ = file2.keypoints


def test_reading_silhouettes_decompresses_no_heatmap_chunk(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seq = make_sequence(t=50)
    seq.silhouettes = silhouettes(50, seed=3)
    path = write_sequence(tmp_path / "s.ghs", seq)
    header_sizes: list[int] = []
    real = storage.zstandard.ZstdDecompressor

    class Counting:  # every decompression storage does, by its expected output size
        def __init__(self) -> None:
            self.inner = real()

        def decompress(self, data: bytes, max_output_size: int = 0) -> bytes:
            header_sizes.append(max_output_size)
            return self.inner.decompress(data, max_output_size=max_output_size)

    monkeypatch.setattr(storage.zstandard, "ZstdDecompressor", Counting)
    file = SequenceFile(path)
    got = file.read_silhouettes([3, 40])
    heat_chunk = 16 * 17 * 64 * 48
    assert header_sizes == [16 * 64 * 44, 16 * 64 * 44]  # two silhouette chunks, nothing else (not even aux)
    assert heat_chunk not in header_sizes
    np.testing.assert_array_equal(got, seq.silhouettes[[3, 40]])
    # and the proof by destruction: every heatmap chunk corrupted, silhouettes still read
    data = bytearray(path.read_bytes())
    for info in file._heatmaps.chunks:  # type: ignore[union-attr]
        start = file._body_start + info["offset"]
        data[start : start + info["length"]] = bytes(info["length"])
    path.write_bytes(bytes(data))
    broken = SequenceFile(path)
    np.testing.assert_array_equal(broken.read_silhouettes(), seq.silhouettes)
    with pytest.raises(StoreError, match="chunk 0 checksum mismatch"):
        broken.read_heatmaps([0])


def test_a_sequence_needs_one_primary_section(tmp_path: Path) -> None:
    seq = make_sequence(t=4)
    seq.heatmaps = None
    seq.keypoints = None
    with pytest.raises(StoreError, match="needs heatmaps, keypoints or silhouettes"):
        write_sequence(tmp_path / "none.ghs", seq)
    seq = make_sequence(t=4)
    seq.silhouettes = silhouettes(4).astype(np.float32)
    with pytest.raises(StoreError, match="silhouettes must be uint8"):
        write_sequence(tmp_path / "f.ghs", seq)
    seq.silhouettes = np.zeros((4, 64, 64), np.uint8)
    with pytest.raises(StoreError, match=r"silhouettes has shape \(4, 64, 64\), expected \(4, 64, 44\)"):
        write_sequence(tmp_path / "f.ghs", seq)
    assert not list(tmp_path.iterdir())


def test_heatmap_source_round_trips(tmp_path: Path) -> None:
    seq = make_sequence(t=3)
    assert seq.meta.heatmap_source == "pose_model"
    seq.meta = replace(seq.meta, heatmap_source="regenerated")
    assert read_sequence(write_sequence(tmp_path / "r.ghs", seq)).meta.heatmap_source == "regenerated"
    seq.meta = replace(seq.meta, heatmap_source="guessed")
    with pytest.raises(StoreError, match="heatmap_source 'guessed'"):
        write_sequence(tmp_path / "g.ghs", seq)


def test_version_1_file_written_before_sections_still_reads() -> None:
    """tests/data/store_v1.ghs was written by the version-1 writer (before optional sections)."""
    path = Path(__file__).parent / "data" / "store_v1.ghs"
    file = SequenceFile(path)
    assert file.version == 1 and file.num_frames == 3
    assert file.sections == {"heatmaps", "keypoints", "boxes"}
    assert file.meta.heatmap_source == "pose_model"  # the default for files older than the field
    seq = file.read()
    expected = gaussian_heatmaps(3, np.random.default_rng(7))  # what the fixture was written from
    assert seq.heatmaps is not None and np.abs(seq.heatmaps - expected).max() < 1 / 255
    np.testing.assert_array_equal(seq.frame_indices, [0, 2, 4])
    assert seq.silhouettes is None and seq.image_keypoints is None


def test_manifest_sections_column(tmp_path: Path) -> None:
    full = make_sequence(t=5)
    full.silhouettes = silhouettes(5)
    write_sequence(sequence_path(tmp_path, "001", "nm-01", "000"), full)
    kp_only = make_sequence(t=5, subject="002")
    kp_only.heatmaps = kp_only.boxes = kp_only.image_keypoints = None
    write_sequence(sequence_path(tmp_path, "002", "nm-01", "000"), kp_only)
    rows = load_manifest(tmp_path)
    assert [r.sections for r in rows] == ["boxes+heatmaps+image_keypoints+keypoints+silhouettes", "keypoints"]
    assert rows[1].section_set == {"keypoints"}
    text = (tmp_path / "manifest.csv").read_text().splitlines()
    assert text[0].endswith(",sections")
    # a manifest written before the column existed still reads, and load_manifest rebuilds it
    old = [",".join(line.split(",")[:7]) for line in text]
    (tmp_path / "manifest.csv").write_text("\n".join(old) + "\n")
    legacy = read_manifest(tmp_path)
    assert [r.sections for r in legacy] == ["", ""] and legacy[0].section_set is None
    assert load_manifest(tmp_path) == rows
    assert (tmp_path / "manifest.csv").read_text().splitlines()[0].endswith(",sections")
