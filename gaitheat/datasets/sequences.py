"""The torch ``Dataset`` over a heatmap store: lazy reads, frame selection, per-sequence normalisation.

Rows come from the store's manifest (:func:`gaitheat.manifest.load_manifest`) filtered by a
partition's subject list (:func:`split_rows`). Nothing is cached beyond a small LRU of open file
headers, so memory does not grow with the dataset: an item reads only the chunks of its frames.

Frame selection (spec §2.2):

* training: ``frames`` random positions per sequence, without replacement when ``T >= frames`` and
  with replacement only when the sequence is shorter (order random; the network is order-invariant);
* test: every frame in order, the first ``max_frames`` at most.

Normalisation (spec §2.3, fixed): min-max over the **whole stored sequence**, also in training, where
the official code normalises only the 30 sampled frames. The whole-sequence range costs nothing here
(the store keeps a per-frame, per-joint offset and scale, so min and max come from those small arrays
without decompressing a heatmap) and makes a training frame look exactly as it does at test time.
Constant sequences map to zeros, as in :func:`gaitheat.transforms.normalise_sequence`.

Items carry heatmaps only: PGHA finds the neck and hip by heatmap argmax inside the model, at training
and test alike, so the stored keypoints are not read.

Training keys are ``(row index, seed)`` pairs from :class:`gaitheat.sampling.IdentityBatchSampler`:
the frame draw depends only on that seed, never on the worker process or the global RNG, which is
what makes resumed runs identical to uninterrupted ones.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from gaitheat.manifest import ManifestRow, load_manifest
from gaitheat.storage import SequenceFile
from gaitheat.transforms import EPS

log = logging.getLogger(__name__)

SampleKey = int | tuple[int, int]


def sample_frame_positions(num_frames: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Training frame positions: ``count`` random ones, with replacement only when ``num_frames < count``.

    Returns:
        (count,) int64 positions in [0, num_frames), in random order.
    """
    if num_frames < 1 or count < 1:
        raise ValueError(f"need at least one frame and one draw, got num_frames={num_frames}, count={count}")
    return rng.choice(num_frames, size=count, replace=num_frames < count).astype(np.int64)


def eval_frame_positions(num_frames: int, max_frames: int) -> np.ndarray:
    """Test frame positions: all frames in order, the first ``max_frames`` at most (``<= 0``: no cap)."""
    stop = num_frames if max_frames <= 0 else min(num_frames, max_frames)
    return np.arange(stop, dtype=np.int64)


def stored_range(offset: np.ndarray, scale: np.ndarray, frames: np.ndarray | None = None) -> tuple[float, float]:
    """Min and max of the dequantised heatmaps, from the store's quantisation arrays alone.

    Each frame-joint map is stored as ``offset + code * scale`` with codes spanning 0..255, so its
    minimum is ``offset`` and its maximum ``offset + 255 * scale``.

    Args:
        offset: (T, J) per-frame, per-joint offsets.
        scale: (T, J) per-frame, per-joint steps.
        frames: positions to restrict to (None: the whole sequence).
    """
    if frames is not None:
        offset, scale = offset[frames], scale[frames]
    lo = float(offset.min())
    hi = float((offset + np.float32(255.0) * scale).max())
    return lo, hi


def normalise_range(heatmaps: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Min-max normalise ``heatmaps`` (any shape) with a given range; a constant range gives zeros."""
    x = np.asarray(heatmaps, dtype=np.float32)
    if hi - lo < EPS:
        return np.zeros_like(x)
    return np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)


def select_subjects(rows: Sequence[ManifestRow], subjects: Sequence[str], what: str
                    ) -> tuple[list[ManifestRow], list[str]]:
    """Rows of the given subjects and the sorted subjects present; warns with numbers when some are missing.

    Args:
        rows: manifest rows of the whole store.
        subjects: subject ids wanted (e.g. a partition's train set).
        what: name of the set for messages, e.g. ``"casia-b train"``.
    """
    wanted = set(subjects)
    kept = [r for r in rows if r.subject in wanted]
    present = sorted({r.subject for r in kept})
    missing = len(wanted) - len(present)
    if missing:
        examples = sorted(wanted - set(present))[:5]
        log.warning("%s: %d of %d subjects have no sequences in the store (e.g. %s); using the %d present",
                    what, missing, len(wanted), ", ".join(examples), len(present))
    return kept, present


def split_rows(root: str | Path, dataset: str, partition: str, split: str) -> tuple[list[ManifestRow], list[str]]:
    """Manifest rows and sorted subjects of one split of a store.

    Args:
        root: store root.
        dataset: ``casia-b`` | ``ccpg`` | ``sustech1k`` pick the shipped partition; ``custom`` with no
            ``partition`` uses every subject in the store (for both splits).
        partition: a partition JSON path overriding the shipped one ("" = shipped).
        split: ``train`` or ``test``.
    Raises:
        ValueError: unknown split or partition, or no sequence of the split in the store.
    """
    from gaitheat.datasets.partition import load_partition

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    rows = load_manifest(root)
    if not partition and dataset == "custom":
        subjects = sorted({r.subject for r in rows})
        name = f"{root} (all subjects)"
    else:
        train, test = load_partition(partition or dataset)
        subjects = train if split == "train" else test
        name = f"{partition or dataset} {split}"
    kept, present = select_subjects(rows, subjects, name)
    if not kept:
        raise ValueError(f"{root}: no sequences of the {name} subjects ({len(subjects)} listed, "
                         f"{len(rows)} sequences in the store)")
    return kept, present


class GaitDataset(Dataset[tuple[np.ndarray, int, int]]):
    """Sequences of a store as a map-style torch dataset (lazy; safe in DataLoader workers).

    An item is ``(heatmaps (T, J, H, W) float32 in [0, 1], label int, row index int)``; ``label`` is
    the subject's index in ``subjects`` (-1 for a subject not in it, e.g. at test time).

    Args:
        root: store root (row paths are relative to it).
        rows: the sequences, e.g. from :func:`split_rows`.
        subjects: sorted subject ids defining the labels.
        frames: training draw per sequence (keys must then be ``(index, seed)``); None for test mode.
        max_frames: test-mode cap (first ``max_frames`` frames).
        open_files: how many file headers (and their small per-frame arrays) to keep open.
    """

    def __init__(self, root: str | Path, rows: Sequence[ManifestRow], subjects: Sequence[str],
                 frames: int | None = 30, max_frames: int = 720, open_files: int = 64) -> None:
        super().__init__()
        if frames is not None and frames < 1:
            raise ValueError(f"frames must be positive, got {frames}")
        self.root = Path(root)
        self.rows = list(rows)
        self.subjects = list(subjects)
        self.frames = frames
        self.max_frames = max_frames
        self._label_of = {s: i for i, s in enumerate(self.subjects)}
        self.labels = [self._label_of.get(r.subject, -1) for r in self.rows]
        self._open_files = open_files
        self._files: OrderedDict[int, SequenceFile] = OrderedDict()

    def __len__(self) -> int:
        return len(self.rows)

    def _file(self, index: int) -> SequenceFile:
        seq = self._files.pop(index, None)
        if seq is None:
            seq = SequenceFile(self.root / self.rows[index].path)
            while len(self._files) >= self._open_files:
                self._files.popitem(last=False)
        self._files[index] = seq
        return seq

    def positions(self, key: SampleKey) -> np.ndarray:
        """The frame positions an item reads (see the module docstring)."""
        index, seed = (key, None) if isinstance(key, int | np.integer) else key
        num_frames = self.rows[int(index)].frames
        if self.frames is None:
            return eval_frame_positions(num_frames, self.max_frames)
        if seed is None:
            raise KeyError(f"training items need an (index, seed) key, got {key!r}")
        return sample_frame_positions(num_frames, self.frames, np.random.default_rng(seed))

    def __getitem__(self, key: SampleKey) -> tuple[np.ndarray, int, int]:  # type: ignore[override]
        index = int(key if isinstance(key, int | np.integer) else key[0])
        seq = self._file(index)
        positions = self.positions(key)
        arrays = seq.arrays()
        heatmaps = seq.read_heatmaps(positions)
        if self.frames is None:
            lo, hi = stored_range(arrays["offset"], arrays["scale"], positions)
        else:
            lo, hi = stored_range(arrays["offset"], arrays["scale"])
        return normalise_range(heatmaps, lo, hi), self.labels[index], index


def collate_padded(items: Sequence[tuple[np.ndarray, int, int]]) -> tuple:
    """Batch test items of different lengths: zero-pad in time and return the lengths.

    Returns:
        (heatmaps (B, T_max, J, H, W) float32 tensor, lengths (B,) long, labels (B,) long, indices (B,) long).
    """
    import torch

    lengths = torch.tensor([x[0].shape[0] for x in items], dtype=torch.long)
    first = items[0][0]
    out = torch.zeros((len(items), int(lengths.max()), *first.shape[1:]), dtype=torch.float32)
    for b, (heatmaps, _, _) in enumerate(items):
        out[b, : heatmaps.shape[0]] = torch.from_numpy(heatmaps)
    labels = torch.tensor([x[1] for x in items], dtype=torch.long)
    indices = torch.tensor([x[2] for x in items], dtype=torch.long)
    return out, lengths, labels, indices
