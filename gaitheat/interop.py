"""OpenGait / FastPoseGait interop: ``float_*.pkl`` + ``pose_*.pkl`` trees <-> the gaitheat store.

The field's heatmap layout (FastPoseGait ``misc/pretreatment_heatmap_pose.py``) is::

    <root>/<subject>/<condition>/<view>/float_<x>.pkl   # pickled np.float16 (T, 17, 64, 48)
    <root>/<subject>/<condition>/<view>/pose_<x>.pkl    # pickled np.float32 (T, 17, 3), image pixels

Importing turns each pair into ``<store>/<subject>/<condition>/<view>/<x>.ghs``. The pose pickle's
keypoints are in *source-image* pixels (the official code's trap, spec §1.4), so they are kept as
``image_keypoints`` and the store's ``keypoints`` (heatmap pixels) are recomputed from the heatmap
argmax, with the peak value as score. Exporting writes the pair back (``pose_`` from
``image_keypoints`` when present, else the heatmap-pixel keypoints).

**Pickles are untrusted input.** A pickle can run arbitrary code when loaded, so
:func:`load_array_pickle` uses an unpickler that refuses every global except the handful numpy
needs to rebuild a plain ``ndarray`` (no object arrays, no callables), and checks the result is a
numeric array. A file that needs anything else is rejected with :class:`PickleRejected`.
"""

from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gaitheat.atomic import atomic_write_bytes
from gaitheat.heatmaps import keypoints_from_heatmaps
from gaitheat.storage import (
    HEATMAP_SIZE,
    NUM_JOINTS,
    HeatmapSequence,
    SequenceFile,
    SequenceMeta,
    StoreError,
    iter_sequence_files,
    sequence_path,
    write_sequence,
)

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles encode raw bytes through it
}
_FLOAT_RE = re.compile(r"^float_(.+)\.pkl$")


class PickleRejected(ValueError):
    """A pickle that is not a plain numeric numpy array, or needs globals we refuse to load."""


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise PickleRejected(f"refusing to load global {module}.{name} (only plain numpy arrays are accepted)")
        return super().find_class(module, name)


def load_array_pickle(path: str | Path, max_bytes: int = 8 << 30) -> np.ndarray:
    """Load a pickled numeric ``ndarray`` without executing anything else.

    Raises:
        PickleRejected: the file is not a plain numeric array, is too large or is malformed.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise PickleRejected(f"{path}: empty file")
    if size > max_bytes:
        raise PickleRejected(f"{path}: {size} bytes is over the {max_bytes}-byte limit")
    try:
        obj = _ArrayUnpickler(io.BytesIO(path.read_bytes())).load()
    except PickleRejected as exc:
        raise PickleRejected(f"{path}: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise PickleRejected(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, np.ndarray) or obj.dtype.kind not in "fiu":
        raise PickleRejected(f"{path}: expected a numeric numpy array, got {type(obj).__name__}")
    return obj


def dump_array_pickle(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as a plain pickled ndarray (the field's format), atomically."""
    atomic_write_bytes(path, pickle.dumps(np.ascontiguousarray(array), protocol=4))


@dataclass
class TransferSummary:
    """What an import or export did."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already present (resume)
    failed: dict[str, str] = field(default_factory=dict)  # path -> reason


def _sequence_from_pickles(float_pkl: Path, pose_pkl: Path | None, subject: str, condition: str,
                           view: str) -> HeatmapSequence:
    heatmaps = load_array_pickle(float_pkl).astype(np.float32)
    expected = (NUM_JOINTS, *HEATMAP_SIZE)
    if heatmaps.ndim != 4 or heatmaps.shape[1:] != expected or heatmaps.shape[0] < 1:
        raise PickleRejected(f"{float_pkl}: expected heatmaps (T, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {heatmaps.shape}")
    if not np.isfinite(heatmaps).all():
        raise PickleRejected(f"{float_pkl}: heatmaps contain NaN or infinite values")
    image_kp = None
    if pose_pkl is not None:
        image_kp = load_array_pickle(pose_pkl).astype(np.float32)
        if image_kp.shape != (heatmaps.shape[0], NUM_JOINTS, 3):
            raise PickleRejected(f"{pose_pkl}: expected keypoints ({heatmaps.shape[0]}, {NUM_JOINTS}, 3) "
                                 f"to match {float_pkl.name}, got {image_kp.shape}")
        if not np.isfinite(image_kp).all():
            raise PickleRejected(f"{pose_pkl}: keypoints contain NaN or infinite values")
    meta = SequenceMeta(subject=subject, condition=condition, view=view, source=str(float_pkl),
                        pose_model="imported-pkl", crop_padding=1.25, extra={"imported_from": "opengait-pkl"})
    return HeatmapSequence(heatmaps=heatmaps, keypoints=keypoints_from_heatmaps(heatmaps),
                           frame_indices=np.arange(heatmaps.shape[0], dtype=np.int64), meta=meta,
                           image_keypoints=image_kp)


def import_pkl_tree(src: str | Path, dst: str | Path, overwrite: bool = False) -> TransferSummary:
    """Import every ``float_*.pkl`` (+ matching ``pose_*.pkl``) under ``src/<s>/<c>/<v>/`` into store ``dst``.

    Existing sequences are skipped unless ``overwrite``; bad files are recorded in ``failed`` and the
    rest of the tree is still imported.
    """
    src, summary = Path(src), TransferSummary()
    for float_pkl in sorted(src.glob("*/*/*/float_*.pkl")):
        match = _FLOAT_RE.match(float_pkl.name)
        if match is None:
            continue
        subject, condition, view = float_pkl.relative_to(src).parts[:3]
        name = match.group(1)
        target = sequence_path(dst, subject, condition, view, name)
        if target.exists() and not overwrite:
            summary.skipped.append(str(target))
            continue
        pose_pkl = float_pkl.with_name(f"pose_{name}.pkl")
        try:
            seq = _sequence_from_pickles(float_pkl, pose_pkl if pose_pkl.exists() else None, subject, condition, view)
            write_sequence(target, seq)
        except (PickleRejected, StoreError, OSError) as exc:
            summary.failed[str(float_pkl)] = str(exc)
            continue
        summary.written.append(str(target))
    return summary


def export_pkl_tree(store: str | Path, dst: str | Path, overwrite: bool = False) -> TransferSummary:
    """Export every stored sequence to ``dst/<s>/<c>/<v>/float_<name>.pkl`` + ``pose_<name>.pkl``."""
    store, dst, summary = Path(store), Path(dst), TransferSummary()
    for file in iter_sequence_files(store):
        subject, condition, view = file.relative_to(store).parts[:3]
        name = file.stem
        folder = dst / subject / condition / view
        float_pkl, pose_pkl = folder / f"float_{name}.pkl", folder / f"pose_{name}.pkl"
        if float_pkl.exists() and pose_pkl.exists() and not overwrite:
            summary.skipped.append(str(float_pkl))
            continue
        try:
            seq = SequenceFile(file).read()
        except StoreError as exc:
            summary.failed[str(file)] = str(exc)
            continue
        keypoints = seq.image_keypoints if seq.image_keypoints is not None else seq.keypoints
        # pose first: a float_ file without its pose_ partner is what a resumed export redoes
        dump_array_pickle(pose_pkl, keypoints.astype(np.float32))
        dump_array_pickle(float_pkl, seq.heatmaps.astype(np.float16))
        summary.written.append(str(float_pkl))
    return summary
