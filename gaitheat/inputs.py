"""The closed table of model input kinds, and the one loading path the dataset, evaluation, the
gallery and the live buffer share.

A model declares ``spec.inputs`` (forward keyword -> kind, :mod:`gaitheat.models.spec`); this module
turns a stored or in-memory sequence into those arrays. Each kind reads only the store sections it
needs, so a silhouette model never decompresses a heatmap chunk:

==============  ========================  =============  ================================================
kind            reads                     frame shape    load
==============  ========================  =============  ================================================
heatmaps        heatmap chunks, aux       (17, 64, 48)   dequantise; min-max over the whole stored
                                                         sequence (training) or the frames used (test)
keypoints       aux only                  (17, 3)        x, y, score in heatmap pixels of the crop
regen_heatmaps  aux keypoints             (17, 64, 48)   :func:`gaitheat.heatmaps.render_gaussians`,
                                                         min-max over the frames drawn; a ``gaitheat
                                                         regen`` store's heatmap chunks as ``heatmaps``
skeleton_maps   aux keypoints             (2, 64, 64)    :func:`gaitheat.heatmaps.render_skeleton_maps`
silhouettes     silhouette chunks         (64, 44)       uint8 / 255 -> float32 in [0, 1]
==============  ========================  =============  ================================================

``heatmaps`` refuses a store whose heatmaps were regenerated (``meta.heatmap_source``), so a
checkpoint always names its true input. A source is a :class:`~gaitheat.storage.SequenceFile` or an
in-memory :class:`~gaitheat.storage.HeatmapSequence` (gallery, live); both give the same arrays up to
the store's quantisation. A missing section is one :class:`~gaitheat.storage.StoreError` naming the
file, the section and the model that needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaitheat.storage import HeatmapSequence, SequenceFile, StoreError

Source = SequenceFile | HeatmapSequence
_EPS = 1e-6


@dataclass(frozen=True)
class InputLoader:
    """How one input kind is read.

    Attributes:
        kind: the :data:`~gaitheat.models.spec.InputKind` name.
        sections: store sections it needs (one of them when ``any_of``).
        frame_shape: shape of one frame of the loaded array.
        load: ``(source, positions (n,) int64, test, where) -> (n, *frame_shape) float32``; ``test``
            selects the test-time normalisation (over the frames used, not the whole sequence).
        any_of: the sections are alternatives (regen_heatmaps: regenerated heatmaps or keypoints).
    """

    kind: str
    sections: tuple[str, ...]
    frame_shape: tuple[int, ...]
    load: Callable[[Source, np.ndarray, bool, str], np.ndarray]
    any_of: bool = False

    def missing(self, held: frozenset[str] | set[str]) -> str | None:
        """The section a source holding ``held`` lacks for this kind, or None."""
        if self.any_of:
            return None if set(self.sections) & set(held) else self.sections[-1]
        return next((s for s in self.sections if s not in held), None)


def _where(source: Source, where: str) -> str:
    return str(source.path) if isinstance(source, SequenceFile) else (where or "<sequence>")


def _minmax(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Min-max normalise with a given range; a constant range gives zeros (as transforms.normalise_sequence)."""
    x = np.asarray(x, dtype=np.float32)
    if hi - lo < _EPS:
        return np.zeros_like(x)
    return np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)


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


def _stored_heatmaps(source: Source, positions: np.ndarray, test: bool, where: str) -> np.ndarray:
    """Dequantised heatmaps normalised over the whole sequence (training) or the frames used (test)."""
    if isinstance(source, SequenceFile):
        source.require("heatmaps")
        arrays = source.arrays()
        heatmaps = source.read_heatmaps(positions)
        lo, hi = stored_range(arrays["offset"], arrays["scale"], positions if test else None)
        return _minmax(heatmaps, lo, hi)
    whole = source.require("heatmaps", where)
    picked = np.asarray(whole[positions], dtype=np.float32)
    ref = picked if test else whole
    return _minmax(picked, float(ref.min()), float(ref.max()))


def _load_heatmaps(source: Source, positions: np.ndarray, test: bool, where: str) -> np.ndarray:
    if source.meta.heatmap_source == "regenerated":
        raise StoreError(_where(source, where), "holds regenerated heatmaps (heatmap_source: regenerated); a model "
                         "on raw heatmaps refuses them: train it with model.input: regen_heatmaps")
    return _stored_heatmaps(source, positions, test, where)


def _keypoints(source: Source, positions: np.ndarray, where: str) -> np.ndarray:
    if isinstance(source, SequenceFile):
        return np.asarray(source.keypoints[positions], dtype=np.float32)
    return np.asarray(source.require("keypoints", where)[positions], dtype=np.float32)


def _load_keypoints(source: Source, positions: np.ndarray, test: bool, where: str) -> np.ndarray:
    return _keypoints(source, positions, where)


def _load_regen(source: Source, positions: np.ndarray, test: bool, where: str) -> np.ndarray:
    from gaitheat.heatmaps import render_gaussians

    if source.meta.heatmap_source == "regenerated" and "heatmaps" in source.sections:
        return _stored_heatmaps(source, positions, test, where)  # a `gaitheat regen` store: drawn already
    kp = _keypoints(source, positions, where)
    size = tuple(source.meta.heatmap_size)
    drawn = render_gaussians(kp, size=(int(size[0]), int(size[1])))
    return _minmax(drawn, float(drawn.min()), float(drawn.max()))


def _load_skeleton(source: Source, positions: np.ndarray, test: bool, where: str) -> np.ndarray:
    from gaitheat.heatmaps import render_skeleton_maps

    return render_skeleton_maps(_keypoints(source, positions, where))


def _load_silhouettes(source: Source, positions: np.ndarray, test: bool, where: str) -> np.ndarray:
    if isinstance(source, SequenceFile):
        sil = source.read_silhouettes(positions)
    else:
        sil = source.require("silhouettes", where)[positions]
    return np.asarray(sil, dtype=np.float32) * np.float32(1.0 / 255.0)


INPUTS: dict[str, InputLoader] = {
    "heatmaps": InputLoader("heatmaps", ("heatmaps",), (17, 64, 48), _load_heatmaps),
    "keypoints": InputLoader("keypoints", ("keypoints",), (17, 3), _load_keypoints),
    "regen_heatmaps": InputLoader("regen_heatmaps", ("heatmaps", "keypoints"), (17, 64, 48), _load_regen,
                                  any_of=True),
    "skeleton_maps": InputLoader("skeleton_maps", ("keypoints",), (2, 64, 64), _load_skeleton),
    "silhouettes": InputLoader("silhouettes", ("silhouettes",), (64, 44), _load_silhouettes),
}


def loader_of(kind: str) -> InputLoader:
    """The loader of an input kind (``ValueError`` for an unknown one)."""
    try:
        return INPUTS[kind]
    except KeyError:
        raise ValueError(f"unknown input kind {kind!r}; known: {sorted(INPUTS)}") from None


def needed_sections(inputs: Mapping[str, str]) -> set[str]:
    """Store sections a model's inputs read (for regen_heatmaps: keypoints, its usual source)."""
    out: set[str] = set()
    for kind in inputs.values():
        loader = loader_of(kind)
        out |= {loader.sections[-1]} if loader.any_of else set(loader.sections)
    return out


def check_sections(held: frozenset[str] | set[str], inputs: Mapping[str, str], where: str | Path,
                   needed_by: str = "") -> None:
    """Raise the missing-section :class:`StoreError` when ``held`` lacks a section ``inputs`` need."""
    from gaitheat.storage import missing_section

    for kind in inputs.values():
        section = loader_of(kind).missing(held)
        if section is not None:
            raise missing_section(where, section, held, needed_by)


def load_inputs(source: Source, inputs: Mapping[str, str], positions: np.ndarray, test: bool = True,
                where: str = "", needed_by: str = "") -> dict[str, np.ndarray]:
    """Every input of a model for the given frame positions of one sequence.

    Args:
        source: a stored sequence (only the needed sections are read) or an in-memory one.
        inputs: ``spec.inputs`` (forward keyword -> input kind).
        positions: (n,) int64 frame positions (may repeat).
        test: test-time normalisation (over the frames used) instead of training's (whole sequence).
        where: name for errors when ``source`` is in memory (a file names itself).
        needed_by: the model, for the missing-section error.
    Returns:
        keyword -> (n, *frame_shape) float32.
    Raises:
        StoreError: a section the inputs need is missing (naming the file, section and model).
    """
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    check_sections(source.sections, inputs, _where(source, where), needed_by)
    return {key: loader_of(kind).load(source, positions, test, where) for key, kind in inputs.items()}
