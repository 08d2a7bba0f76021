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
needs to rebuild a plain ``ndarray`` (no object arrays, no callables), each replaced by a checked
stand-in, and checks the result is a numeric array. Memory stays bounded by the file: an array may
not claim more bytes than the file carries (``numpy.ndarray(shape, dtype)`` alone would allocate any
size, uninitialised, from a 100-byte file), and every opcode's declared length is checked against
the file before the unpickler allocates by it. A file that needs anything else is rejected with
:class:`PickleRejected`; :func:`import_pkl_tree` records it (or a ``MemoryError``) per file and goes on.
"""

from __future__ import annotations

import io
import pickle
import pickletools
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

_FLOAT_RE = re.compile(r"^float_(.+)\.pkl$")
# numpy's own pickles only ever create an empty placeholder with _reconstruct(ndarray, (0,), b'b')
# and then fill it from the file's bytes (BUILD -> __setstate__); anything else is not numpy's doing
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_SCALAR = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}
_FROMBUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}


class PickleRejected(ValueError):
    """A pickle that is not a plain numeric numpy array, or needs globals we refuse to load."""


class _Budget:
    """Bytes the globals of one pickle may create: what the file can hold, not what it claims.

    A real array pickle carries every byte of its data, so its arrays never exceed the file's size
    (protocol 2 passes them through ``_codecs.encode`` first: twice the file bounds both copies).
    """

    def __init__(self, file_bytes: int) -> None:
        self.left = 2 * file_bytes + 4096

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise PickleRejected(f"{what} claims {nbytes} bytes, more than the file can hold")
        self.left -= nbytes


def _plain_dtype(dtype: Any) -> np.dtype:
    """A plain numeric or bool dtype, or PickleRejected (no objects, records or sub-arrays)."""
    if not isinstance(dtype, np.dtype):
        try:
            dtype = np.dtype(dtype)
        except (TypeError, ValueError) as exc:
            raise PickleRejected(f"not a numpy dtype: {dtype!r}") from exc
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None or dtype.hasobject:
        raise PickleRejected(f"dtype {dtype} is not a plain numeric type")
    return dtype


def _nbytes(shape: Any, dtype: np.dtype) -> int:
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise PickleRejected(f"not an array shape: {shape!r}")
    return int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: no overflow


class _ArrayToken:
    """Stands in for ``numpy.ndarray``: only :func:`_reconstruct` may use it, never a direct call."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise PickleRejected("numpy.ndarray called directly (it would allocate memory the file does not hold)")


class _PickledArray(np.ndarray):
    """The placeholder numpy's pickles fill; its ``__setstate__`` checks the data against the budget."""

    _budget: _Budget

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise PickleRejected("numpy.ndarray called directly (it would allocate memory the file does not hold)")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise PickleRejected("malformed array state")
        shape, dtype, _, data = state[-4:]
        nbytes = _nbytes(shape, _plain_dtype(dtype))
        if not isinstance(data, bytes | bytearray) or len(data) != nbytes:
            raise PickleRejected(f"array {shape} of {dtype} needs {nbytes} bytes of data, "
                                 f"the file gives {len(data) if isinstance(data, bytes | bytearray) else 'none'}")
        self._budget.take(nbytes, f"array {shape} of {dtype}")
        super().__setstate__(state)


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds plain numeric arrays only, each bounded by the bytes the file holds.

    Every global is replaced by a checked stand-in: ``numpy.ndarray(shape, dtype)`` would otherwise
    allocate any size (uninitialised) from a 100-byte file.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.budget = _Budget(len(data))

    def find_class(self, module: str, name: str) -> Any:
        key, budget = (module, name), self.budget
        if key == ("numpy", "ndarray"):
            return _ArrayToken
        if key == ("numpy", "dtype"):

            def dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
                try:
                    made = np.dtype(spec, align=bool(align), copy=bool(copy))
                except (TypeError, ValueError) as exc:
                    raise PickleRejected(f"not a numpy dtype: {spec!r}") from exc
                return _plain_dtype(made)  # checked again where it is used: BUILD may still change it
            return dtype
        if key in _RECONSTRUCT:
            real = super().find_class(module, name)

            def reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
                if subtype is not _ArrayToken or shape != (0,):
                    raise PickleRejected(f"unexpected array reconstruction {shape!r}")
                array = real(_PickledArray, (0,), typecode)
                array._budget = budget
                return array  # type: ignore[no-any-return]
            return reconstruct
        if key in _FROMBUFFER:
            real = super().find_class(module, name)

            def frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
                if not isinstance(buffer, bytes | bytearray | pickle.PickleBuffer):
                    raise PickleRejected("array data is not bytes")
                nbytes = _nbytes(tuple(shape), _plain_dtype(dtype))
                if len(memoryview(buffer)) != nbytes:
                    raise PickleRejected(f"array {tuple(shape)} of {dtype} needs {nbytes} bytes of data")
                budget.take(nbytes, f"array {tuple(shape)}")
                return real(buffer, dtype, shape, order)  # type: ignore[no-any-return]
            return frombuffer
        if key in _SCALAR:
            real = super().find_class(module, name)

            def scalar(dtype: Any, data: Any = None) -> Any:
                dtype = _plain_dtype(dtype)
                if not isinstance(data, bytes) or len(data) != dtype.itemsize:
                    raise PickleRejected(f"malformed {dtype} scalar")
                return real(dtype, data)
            return scalar
        if key == ("_codecs", "encode"):  # protocol-2 pickles carry raw bytes as a latin-1 string

            def encode(text: Any, encoding: Any = "utf-8") -> bytes:
                if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
                    raise PickleRejected("unexpected _codecs.encode call")
                budget.take(len(text), "a byte string")
                return text.encode("latin1")
            return encode
        raise PickleRejected(f"refusing to load global {module}.{name} (only plain numpy arrays are accepted)")


def _check_opcodes(data: bytes) -> None:
    """Every opcode's declared length within the file, before the unpickler allocates by it.

    (The C unpickler allocates a ``BYTEARRAY8`` at its declared size before reading it.)
    """
    try:
        for _ in pickletools.genops(data):
            pass
    except (ValueError, EOFError, UnicodeDecodeError) as exc:
        raise PickleRejected(f"not a readable pickle ({exc})") from exc


def load_array_pickle(path: str | Path, max_bytes: int = 8 << 30) -> np.ndarray:
    """Load a pickled numeric ``ndarray`` without executing anything else.

    Memory stays bounded by the file: no array may claim more bytes than the file holds.

    Raises:
        PickleRejected: the file is not a plain numeric array, is too large or is malformed.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise PickleRejected(f"{path}: empty file")
    if size > max_bytes:
        raise PickleRejected(f"{path}: {size} bytes is over the {max_bytes}-byte limit")
    data = path.read_bytes()
    try:
        _check_opcodes(data)
        obj = _ArrayUnpickler(data).load()
    except PickleRejected as exc:
        raise PickleRejected(f"{path}: {exc}") from exc
    except MemoryError as exc:
        raise PickleRejected(f"{path}: not enough memory to load it") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, RecursionError) as exc:
        raise PickleRejected(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, np.ndarray) or obj.dtype.kind not in "fiu":
        raise PickleRejected(f"{path}: expected a numeric numpy array, got {type(obj).__name__}")
    return np.asarray(obj)  # a plain ndarray, not the placeholder subclass


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
        except MemoryError:  # one file too large for this machine: the rest still imports
            summary.failed[str(float_pkl)] = f"{float_pkl}: not enough memory to import it"
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
            heatmaps = seq.require("heatmaps", file, needed_by="export-pkl")
            keypoints = seq.image_keypoints if seq.image_keypoints is not None else \
                seq.require("keypoints", file, needed_by="export-pkl")
        except StoreError as exc:
            summary.failed[str(file)] = str(exc)
            continue
        # pose first: a float_ file without its pose_ partner is what a resumed export redoes
        dump_array_pickle(pose_pkl, keypoints.astype(np.float32))
        dump_array_pickle(float_pkl, heatmaps.astype(np.float16))
        summary.written.append(str(float_pkl))
    return summary
