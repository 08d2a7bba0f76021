"""GaitDataset over a real (tiny) store: splits, frame selection, normalisation, laziness."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from gaitheat.datasets.sequences import (
    GaitDataset,
    collate,
    collate_padded,
    eval_frame_positions,
    normalise_range,
    sample_frame_positions,
    split_rows,
    stored_range,
)
from gaitheat.manifest import load_manifest
from gaitheat.storage import HeatmapSequence, SequenceFile, SequenceMeta, sequence_path, write_sequence
from gaitheat.transforms import normalise_sequence


def write_store(root: Path, spec: dict[str, list[int]], seed: int = 0, chunk_frames: int = 4) -> Path:
    """Store with one sequence per entry: subject -> list of frame counts (conditions nm-01, nm-02...)."""
    rng = np.random.default_rng(seed)
    for subject, lengths in spec.items():
        for i, t in enumerate(lengths):
            heat = rng.normal(0.2, 0.3, size=(t, 17, 64, 48)).astype(np.float32)
            seq = HeatmapSequence(
                heatmaps=heat, keypoints=np.zeros((t, 17, 3), np.float32), frame_indices=np.arange(t),
                meta=SequenceMeta(subject=subject, condition=f"nm-{i + 1:02d}", view="090"))
            write_sequence(sequence_path(root, subject, f"nm-{i + 1:02d}", "090"), seq, chunk_frames=chunk_frames)
    return root


def test_training_positions_without_replacement_when_long_enough() -> None:
    rng = np.random.default_rng(0)
    pos = sample_frame_positions(40, 30, rng)
    assert pos.shape == (30,) and pos.dtype == np.int64
    assert len(set(pos.tolist())) == 30 and pos.min() >= 0 and pos.max() < 40
    exact = sample_frame_positions(30, 30, rng)
    assert sorted(exact.tolist()) == list(range(30))  # T == 30: every frame exactly once


def test_training_positions_with_replacement_only_when_short() -> None:
    pos = sample_frame_positions(7, 30, np.random.default_rng(1))
    assert pos.shape == (30,) and pos.max() < 7 and len(set(pos.tolist())) <= 7
    with pytest.raises(ValueError):
        sample_frame_positions(0, 30, np.random.default_rng(1))


def test_test_positions_are_ordered_and_capped() -> None:
    assert eval_frame_positions(5, 720).tolist() == [0, 1, 2, 3, 4]
    capped = eval_frame_positions(1000, 720)
    assert capped.shape == (720,) and capped[0] == 0 and capped[-1] == 719
    assert eval_frame_positions(9, 0).shape == (9,)


def test_normalise_range_guards_constant_input() -> None:
    x = np.full((3, 17, 64, 48), 0.7, np.float32)
    out = normalise_range(x, 0.7, 0.7)
    assert out.dtype == np.float32 and not out.any() and np.isfinite(out).all()
    assert not normalise_sequence(x).any()


def test_stored_range_equals_dequantised_min_max(tmp_path: Path) -> None:
    write_store(tmp_path, {"001": [11]})
    seq = SequenceFile(tmp_path / "001/nm-01/090/heatmaps.ghs")
    full = seq.read_heatmaps()
    lo, hi = stored_range(seq.arrays()["offset"], seq.arrays()["scale"])
    assert lo == pytest.approx(float(full.min()), abs=1e-6)
    assert hi == pytest.approx(float(full.max()), abs=1e-5)


def test_split_rows_filters_by_partition_and_warns_with_numbers(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                                 ) -> None:
    # CASIA-B: train 001-074, test 075-124; the store holds two train and one test subject
    write_store(tmp_path, {"001": [5, 6], "002": [4], "080": [5]})
    with caplog.at_level(logging.WARNING):
        rows, subjects = split_rows(tmp_path, "casia-b", "", "train")
    assert subjects == ["001", "002"] and len(rows) == 3
    assert "72 of 74 subjects" in caplog.text
    rows, subjects = split_rows(tmp_path, "casia-b", "", "test")
    assert subjects == ["080"] and [r.frames for r in rows] == [5]
    rows, subjects = split_rows(tmp_path, "custom", "", "train")
    assert subjects == ["001", "002", "080"]
    with pytest.raises(ValueError, match="no sequences"):
        split_rows(tmp_path, "ccpg", "", "test")


def test_training_items_are_lazy_normalised_and_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    write_store(tmp_path, {"001": [40], "002": [7]}, chunk_frames=4)
    rows = load_manifest(tmp_path)
    ds = GaitDataset(tmp_path, rows, ["001", "002"], frames=30)
    assert ds.labels == [0, 1]
    # count chunk decompressions: a 40-frame sequence in 4-frame chunks has 10 chunks
    # spy on the real reader: the item must ask for exactly its 30 frames, never the whole sequence
    requested: list[np.ndarray | None] = []
    original = SequenceFile.read_heatmaps

    def spy(self: SequenceFile, frames: np.ndarray | None = None) -> np.ndarray:
        requested.append(None if frames is None else np.asarray(frames).copy())
        return original(self, frames)

    monkeypatch.setattr(SequenceFile, "read_heatmaps", spy)
    item, label, index = ds[(0, 123)]
    assert set(item) == {"heatmaps"}
    x = item["heatmaps"]
    assert x.shape == (30, 17, 64, 48) and x.dtype == np.float32 and (label, index) == (0, 0)
    assert len(requested) == 1 and requested[0] is not None
    np.testing.assert_array_equal(requested[0], ds.positions((0, 123)))
    monkeypatch.undo()
    # normalised with the whole sequence's range: equal to normalising everything, then selecting
    whole = normalise_sequence(SequenceFile(tmp_path / rows[0].path).read_heatmaps())
    np.testing.assert_allclose(x, whole[ds.positions((0, 123))], atol=1e-6)
    assert x.min() >= 0.0 and x.max() <= 1.0
    again, _, _ = ds[(0, 123)]
    np.testing.assert_array_equal(x, again["heatmaps"])  # same seed, same frames
    other, _, _ = ds[(0, 124)]
    assert not np.array_equal(x, other["heatmaps"])
    short, label, _ = ds[(1, 5)]
    assert short["heatmaps"].shape[0] == 30 and label == 1  # 7 frames drawn with replacement
    with pytest.raises(KeyError):
        ds[0]


def test_test_items_use_all_frames_in_order_capped(tmp_path: Path) -> None:
    write_store(tmp_path, {"001": [12], "002": [5]})
    rows = load_manifest(tmp_path)
    ds = GaitDataset(tmp_path, rows, ["001"], frames=None, max_frames=10)
    x, label, _ = ds[0]
    full = SequenceFile(tmp_path / rows[0].path).read_heatmaps()
    np.testing.assert_allclose(x["heatmaps"], normalise_sequence(full[:10]), atol=1e-6)
    y, label2, _ = ds[1]
    assert y["heatmaps"].shape[0] == 5 and (label, label2) == (0, -1)
    heat, lengths, labels, indices = collate_padded([ds[0], ds[1]])
    assert tuple(heat.shape) == (2, 10, 17, 64, 48) and lengths.tolist() == [10, 5]
    assert not heat[1, 5:].any() and labels.tolist() == [0, -1] and indices.tolist() == [0, 1]


def test_bad_file_error_names_the_file(tmp_path: Path) -> None:
    write_store(tmp_path, {"001": [6]})
    rows = load_manifest(tmp_path)
    path = tmp_path / rows[0].path
    path.write_bytes(path.read_bytes()[:-10])  # truncated after indexing
    ds = GaitDataset(tmp_path, rows, ["001"], frames=None)
    with pytest.raises(Exception, match=r"heatmaps\.ghs"):
        ds[0]


def test_dataloader_workers_batch_training_items(tmp_path: Path) -> None:
    import torch

    from gaitheat.sampling import IdentityBatchSampler

    write_store(tmp_path, {"001": [8, 9], "002": [6], "003": [10]})
    rows = load_manifest(tmp_path)
    ds = GaitDataset(tmp_path, rows, ["001", "002", "003"], frames=4)
    sampler = IdentityBatchSampler(ds.labels, p=2, k=2, seed=3)
    loader: torch.utils.data.DataLoader = torch.utils.data.DataLoader(
        ds, batch_sampler=sampler, num_workers=2, generator=torch.Generator(), collate_fn=collate)
    it = iter(loader)
    first = [next(it) for _ in range(3)]
    batch = first[0]
    heat, labels, indices = batch.inputs["heatmaps"], batch.labels, batch.indices
    assert tuple(heat.shape) == (4, 4, 17, 64, 48) and heat.dtype == torch.float32 and batch.lengths is None
    assert labels.tolist() == [ds.labels[i] for i in indices.tolist()]
    # workers give exactly what the main process computes from the same keys
    for b, got in enumerate(first):
        expect = np.stack([ds[key][0]["heatmaps"] for key in sampler.local_batch(b)])
        np.testing.assert_array_equal(got.inputs["heatmaps"].numpy(), expect)
