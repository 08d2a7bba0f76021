"""The torch ``Dataset`` over a sequence store: lazy reads of a model's declared inputs, frame selection.

Rows come from the store's manifest (:func:`gaitheat.manifest.load_manifest`) filtered by a
partition's subject list (:func:`split_rows`). Nothing is cached beyond a small LRU of open file
headers, so memory does not grow with the dataset: an item reads only the chunks of its frames.

What an item holds comes from the model's spec (:mod:`gaitheat.models.spec`): ``inputs`` names the
input kinds, read through :func:`gaitheat.inputs.load_inputs` (only the sections they need), and the
:class:`~gaitheat.models.spec.FramePolicy` picks the frames. A dataset whose manifest says a file lacks
a needed section fails at construction, naming the file, the section and the model.

Frame selection (spec §2.2 for GaitHeat's ``random`` / ``all``):

* training ``random``: ``frames`` random positions per sequence, without replacement when
  ``T >= frames`` and with replacement only when the sequence is shorter (order random; GaitHeat is
  order-invariant);
* training ``window``: ``frames`` consecutive positions from a random start; a shorter sequence is
  tiled (``0..T-1, 0..T-1, ...``) from a random offset, so the window stays in walking order;
* test ``all``: every frame in order, the first ``max_frames`` at most;
* test ``window``: the centred ``window`` consecutive frames (tiled from 0 when shorter), the same
  on every run (FastPoseGait draws a random start, so its scores are not repeatable).

With ``views > 1`` a training item is ``views`` items of the same sequence and frames, each through
the model's ``augment`` with its own generator ``default_rng([seed, view])``.

Normalisation (spec §2.3, fixed): min-max over the **whole stored sequence**, also in training, where
the official code normalises only the 30 sampled frames. The whole-sequence range costs nothing here
(the store keeps a per-frame, per-joint offset and scale, so min and max come from those small arrays
without decompressing a heatmap) and makes a training frame look exactly as it does at test time.
Constant sequences map to zeros, as in :func:`gaitheat.transforms.normalise_sequence`.

GaitHeat's items carry heatmaps only: PGHA finds the neck and hip by heatmap argmax inside the
model, at training and test alike, so the stored keypoints are not read.

Training keys are ``(row index, seed)`` pairs from :class:`gaitheat.sampling.IdentityBatchSampler`:
the frame draw depends only on that seed, never on the worker process or the global RNG, which is
what makes resumed runs identical to uninterrupted ones.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.utils.data import Dataset

from gaitheat.inputs import check_sections, load_inputs
from gaitheat.inputs import stored_range as stored_range  # re-exported: its home before gaitheat.inputs
from gaitheat.manifest import ManifestRow, load_manifest
from gaitheat.models.spec import Augment, FramePolicy
from gaitheat.storage import SequenceFile
from gaitheat.transforms import EPS

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SampleKey = int | tuple[int, int]
# (inputs: keyword -> (T, *frame_shape) float32, label, row index); a list of them with views > 1
Item = tuple[dict[str, np.ndarray], int, int]
HEATMAPS_ONLY: Mapping[str, str] = {"heatmaps": "heatmaps"}
DEFAULT_POLICY = FramePolicy()  # GaitHeat's: random training draw, all test frames


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


def window_positions(num_frames: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Training window: ``count`` consecutive positions from a random start, tiled when the sequence is shorter.

    Returns:
        (count,) int64 positions in [0, num_frames), in walking order (wrapping to 0 only when short).
    """
    if num_frames < 1 or count < 1:
        raise ValueError(f"need at least one frame and one draw, got num_frames={num_frames}, count={count}")
    if num_frames >= count:
        start = int(rng.integers(0, num_frames - count + 1))
        return np.arange(start, start + count, dtype=np.int64)
    return (int(rng.integers(0, num_frames)) + np.arange(count, dtype=np.int64)) % num_frames


def centred_window_positions(num_frames: int, count: int) -> np.ndarray:
    """Test window: the centred ``count`` consecutive positions (``0..T-1`` tiled when shorter); deterministic."""
    if num_frames < 1 or count < 1:
        raise ValueError(f"need at least one frame and one position, got num_frames={num_frames}, count={count}")
    if num_frames >= count:
        start = (num_frames - count) // 2
        return np.arange(start, start + count, dtype=np.int64)
    return np.arange(count, dtype=np.int64) % num_frames


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


class GaitDataset(Dataset[Item | list[Item]]):
    """Sequences of a store as a map-style torch dataset (lazy; safe in DataLoader workers).

    An item is ``(inputs, label, row index)``: ``inputs`` maps each forward keyword of the model to a
    (T, *frame_shape) float32 array (GaitHeat: ``{"heatmaps": (T, 17, 64, 48) in [0, 1]}``); ``label``
    is the subject's index in ``subjects`` (-1 for a subject not in it, e.g. at test time). With
    ``policy.views > 1``, a training item is a list of ``views`` such items.

    Args:
        root: store root (row paths are relative to it).
        rows: the sequences, e.g. from :func:`split_rows`.
        subjects: sorted subject ids defining the labels.
        frames: training draw per sequence (keys must then be ``(index, seed)``); None for test mode.
        max_frames: test-mode cap under the ``all`` policy (first ``max_frames`` frames).
        open_files: how many file headers (and their small per-frame arrays) to keep open.
        inputs: ``spec.inputs`` (keyword -> input kind); GaitHeat's heatmaps by default.
        policy: ``spec.frames``.
        window: test frames under a ``window`` test policy (``data.frames_test``).
        augment: ``spec.augment``, applied per training view in the worker.
        needed_by: the model's name, for errors.
    Raises:
        StoreError: the manifest says a file lacks a section ``inputs`` need.
    """

    def __init__(self, root: str | Path, rows: Sequence[ManifestRow], subjects: Sequence[str],
                 frames: int | None = 30, max_frames: int = 720, open_files: int = 64, *,
                 inputs: Mapping[str, str] = HEATMAPS_ONLY, policy: FramePolicy = DEFAULT_POLICY,
                 window: int = 60, augment: Augment | None = None, needed_by: str = "") -> None:
        super().__init__()
        if frames is not None and frames < 1:
            raise ValueError(f"frames must be positive, got {frames}")
        self.root = Path(root)
        self.rows = list(rows)
        self.subjects = list(subjects)
        self.frames = frames
        self.max_frames = max_frames
        self.inputs = dict(inputs)
        self.policy = policy
        self.window = window
        self.augment = augment
        self.needed_by = needed_by
        for row in self.rows:  # before any read: a model whose input a file lacks is refused at once
            held = row.section_set
            if held is not None:
                check_sections(held, self.inputs, self.root / row.path, needed_by)
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
            if self.policy.test == "window":
                return centred_window_positions(num_frames, self.window)
            return eval_frame_positions(num_frames, self.max_frames)
        if seed is None:
            raise KeyError(f"training items need an (index, seed) key, got {key!r}")
        rng = np.random.default_rng(seed)
        if self.policy.train == "window":
            return window_positions(num_frames, self.frames, rng)
        return sample_frame_positions(num_frames, self.frames, rng)

    def __getitem__(self, key: SampleKey) -> Item | list[Item]:  # type: ignore[override]
        index = int(key if isinstance(key, int | np.integer) else key[0])
        seq = self._file(index)
        test = self.frames is None
        inputs = load_inputs(seq, self.inputs, self.positions(key), test=test, needed_by=self.needed_by)
        label = self.labels[index]
        if test or (self.policy.views == 1 and self.augment is None):
            return inputs, label, index
        seed = int(key[1])  # type: ignore[index]
        views = []
        for view in range(self.policy.views):
            copy = {k: v.copy() for k, v in inputs.items()}
            if self.augment is not None:
                copy = self.augment(copy, np.random.default_rng([seed, view]))
            views.append((copy, label, index))
        return views[0] if self.policy.views == 1 else views


@dataclass
class Batch:
    """A collated batch (:func:`collate`).

    Attributes:
        inputs: forward keyword -> (B, T, *frame_shape) float32, zeros after ``lengths``.
        lengths: (B,) long valid frames per row; None when every row has all T frames.
        labels: (B,) long, -1 outside the label set.
        indices: (B,) long dataset rows.
    """

    inputs: dict[str, torch.Tensor]
    lengths: torch.Tensor | None
    labels: torch.Tensor
    indices: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        """The batch on ``device`` (inputs, lengths and labels; indices stay where they are)."""
        return Batch({k: v.to(device, non_blocking=non_blocking) for k, v in self.inputs.items()},
                     None if self.lengths is None else self.lengths.to(device, non_blocking=non_blocking),
                     self.labels.to(device, non_blocking=non_blocking), self.indices)

    def pin_memory(self) -> Batch:
        # the DataLoader pins a custom batch type only through this method
        return Batch({k: v.pin_memory() for k, v in self.inputs.items()},
                     None if self.lengths is None else self.lengths.pin_memory(), self.labels.pin_memory(),
                     self.indices.pin_memory())

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def collate(items: Sequence[Item | list[Item] | Any]) -> Batch:
    """Batch items (views flattened into rows): zero-pad in time, with lengths when they differ.

    Returns:
        a :class:`Batch`.
    """
    import torch

    flat: list[Item] = []
    for item in items:
        flat.extend(item if isinstance(item, list) else [item])
    counts = [next(iter(x[0].values())).shape[0] for x in flat]
    longest = max(counts)
    inputs = {}
    for key in flat[0][0]:
        first = flat[0][0][key]
        out = torch.zeros((len(flat), longest, *first.shape[1:]), dtype=torch.float32)
        for b, (arrays, _, _) in enumerate(flat):
            arr = arrays[key]
            out[b, : arr.shape[0]] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        inputs[key] = out
    lengths = None if len(set(counts)) == 1 else torch.tensor(counts, dtype=torch.long)
    labels = torch.tensor([x[1] for x in flat], dtype=torch.long)
    indices = torch.tensor([x[2] for x in flat], dtype=torch.long)
    return Batch(inputs, lengths, labels, indices)


def collate_padded(items: Sequence[Item]) -> tuple[Any, ...]:
    """Test items of different lengths as ``(heatmaps (B, T_max, ...), lengths (B,), labels, indices)``.

    Kept for callers of the heatmaps-only layout; the first input of each item is padded. Use
    :func:`collate` for a :class:`Batch`.
    """
    import torch

    batch = collate(items)
    first = next(iter(batch.inputs.values()))
    lengths = batch.lengths if batch.lengths is not None else torch.full((len(batch),), first.shape[1],
                                                                         dtype=torch.long)
    return first, lengths, batch.labels, batch.indices
