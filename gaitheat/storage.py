"""Sequence store: one compressed, checksummed file per walking sequence.

Layout on disk follows the field's tree, so OpenGait-style partition files apply unchanged::

    <root>/<subject>/<condition>/<view>/<name>.ghs

A ``.ghs`` file holds one :class:`HeatmapSequence`. Its array *sections* are each optional, but a
file holds at least one of ``heatmaps``, ``keypoints`` and ``silhouettes``:

* ``heatmaps`` ``(T, J, H, W)`` (J = 17 COCO joints, H x W = 64 x 48), quantised to uint8 with a
  per-frame, per-joint offset and scale (so slightly negative regression heatmaps survive), then
  zstd-compressed in chunks of frames, so reading a few frames decompresses only their chunks;
* ``silhouettes`` ``(T, 64, 44)`` uint8 (0/255, OpenGait's layout), zstd-compressed in chunks of
  frames of their own, so reading silhouettes decompresses no heatmap chunk (and the reverse);
* ``keypoints`` ``(T, J, 3)`` float32 (x, y, score) in heatmap pixel coordinates of the crop;
* ``boxes`` ``(T, 4)`` float32 crop box (x1, y1, x2, y2) in source-image pixels, or absent;
* ``image_keypoints`` ``(T, J, 3)`` float32 keypoints in source-image pixels, or absent;
* ``frame_indices`` ``(T,)`` int64 indices of the source frames (always present);
* :class:`SequenceMeta`: joint layout, heatmap size, pose model name and SHA-256, crop padding,
  source path, creation time, where the heatmaps came from (``heatmap_source``: ``pose_model`` or
  ``regenerated``), plus free-form ``extra`` (e.g. quality records).

File format, all integers little-endian::

    b"GAITHEAT" | u32 version | u32 header_len | u32 header_crc32 | header JSON | body

The header (JSON) lists every section of the body (offset, length, CRC-32):

* ``frames``, ``joints``: T and J;
* heatmaps, when present: ``shape`` [T, J, H, W], ``chunk_frames`` and ``chunks`` (a list of
  ``{start, frames, offset, length, crc32}``), at the top level exactly as version 1 wrote them;
* ``silhouettes``, when present: ``{"shape": [T, 64, 44], "chunk_frames", "chunks"}``, chunks as above;
* ``aux``: one zstd block of the small arrays (``keypoints``, ``frame_indices``, ``offset``/``scale``
  of the heatmap quantisation, ``boxes``, ``image_keypoints``), each with dtype, shape and offset;
* ``body_length`` and ``meta``.

Versions: a file with heatmaps is written as **version 1**, because a version-1 reader reads it
correctly (it ignores ``silhouettes``, ``frames``, ``joints`` and unknown meta keys), so stores
stay readable by older gaitheat. A file without heatmaps is written as **version 2**, so an older
reader refuses it with "format version 2" instead of misreading it. This reader reads both.

Readers check the magic, version, header checksum, total file size, array shapes, section
checksums and NaNs, and raise :class:`StoreError` naming the file for anything wrong, including a
read of a section the file does not hold. Every header field is validated when the file is opened
(chunk tables, offsets and lengths inside the body, array dtypes and shapes, at most the bytes T
frames can need), so a tampered header with a recomputed checksum is a :class:`StoreError` too;
joint counts other than 17 and heatmap sizes other than 64 x 48 are refused there, at load; and a
compressed section that declares a decompressed size other than the header's is refused before
it is decompressed (zstd would otherwise allocate whatever the frame declares). Memory stays bounded
by what the header allows, whatever a file claims. Writes are atomic (:mod:`gaitheat.atomic`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from gaitheat.atomic import atomic_write_bytes, is_temporary

MAGIC = b"GAITHEAT"
FORMAT_VERSION = 2  # the newest version written (files without heatmaps); see the module docstring
READ_VERSIONS = (1, 2)
SUFFIX = ".ghs"
DEFAULT_NAME = "heatmaps"
JOINT_LAYOUT = "coco17"
NUM_JOINTS = 17
HEATMAP_SIZE = (64, 48)
SILHOUETTE_SIZE = (64, 44)
# sections a file may hold; at least one of PRIMARY_SECTIONS, "frame_indices" always
SECTION_NAMES = ("heatmaps", "keypoints", "silhouettes", "boxes", "image_keypoints")
PRIMARY_SECTIONS = ("heatmaps", "keypoints", "silhouettes")
HEATMAP_SOURCES = ("pose_model", "regenerated")
CHUNK_FRAMES = 16
ZSTD_LEVEL = 6
_PREAMBLE = struct.Struct("<8sIII")
_CHUNK_KEYS = ("start", "frames", "offset", "length", "crc32")

COCO17_JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip


class StoreError(Exception):
    """A heatmap sequence file that is missing, truncated, corrupt, of another version or invalid."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[type[StoreError], tuple[str, str]]:
        # rebuilt from both arguments, so it crosses process boundaries (DataLoader workers) intact
        return StoreError, (self.path, self.reason)


@dataclass(frozen=True)
class SequenceMeta:
    """What a stored sequence says about itself.

    Attributes:
        subject: identity label (folder level 1).
        condition: walking condition / type, e.g. ``nm-01`` (folder level 2).
        view: camera view, e.g. ``090`` (folder level 3).
        source: path (or description) of the video or frames the sequence came from.
        pose_model: pose backend / model name, e.g. ``blazepose-full``.
        pose_model_sha256: SHA-256 of the pose model file ("" when unknown, e.g. imported data).
        crop_padding: box padding factor used before cropping (1.25 in GaitHeat).
        joint_layout: joint order of the J axis.
        heatmap_size: (H, W) of each heatmap, and of the crop frame keypoints are given in.
        created: ISO-8601 UTC creation time.
        heatmap_source: ``pose_model`` (the pose model's own heatmaps) or ``regenerated`` (drawn
            back from keypoints, ``gaitheat regen``); models trained on raw heatmaps refuse the latter.
        extra: free-form JSON-serialisable details (track id, quality filter record, ...).
    """

    subject: str
    condition: str
    view: str
    source: str = ""
    pose_model: str = ""
    pose_model_sha256: str = ""
    crop_padding: float = 1.25
    joint_layout: str = JOINT_LAYOUT
    heatmap_size: tuple[int, int] = HEATMAP_SIZE
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    heatmap_source: str = "pose_model"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["heatmap_size"] = list(self.heatmap_size)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SequenceMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["heatmap_size"] = tuple(kwargs.get("heatmap_size", HEATMAP_SIZE))
        return cls(**kwargs)


def missing_section(path: str | Path, section: str, held: Iterable[str], needed_by: str = "") -> StoreError:
    """The one error for a read of a section a file does not hold (``needed_by``: e.g. a model name)."""
    who = f" (needed by {needed_by})" if needed_by else ""
    have = "+".join(sorted(held)) or "nothing"
    return StoreError(path, f"has no '{section}' section{who}; it holds {have}")


@dataclass
class HeatmapSequence:
    """One person's walking sequence (see the module docstring for shapes).

    ``heatmaps``, ``keypoints`` and ``silhouettes`` are each optional, but at least one is present;
    ``frame_indices`` always is. Use :meth:`require` where a section must be there.
    """

    heatmaps: np.ndarray | None
    keypoints: np.ndarray | None
    frame_indices: np.ndarray
    meta: SequenceMeta
    boxes: np.ndarray | None = None
    image_keypoints: np.ndarray | None = None
    silhouettes: np.ndarray | None = None

    @property
    def sections(self) -> frozenset[str]:
        """Names of the array sections present (from :data:`SECTION_NAMES`)."""
        return frozenset(name for name in SECTION_NAMES if getattr(self, name) is not None)

    @property
    def num_frames(self) -> int:
        return int(self.frame_indices.shape[0])

    def require(self, section: str, where: str | Path = "<sequence>", needed_by: str = "") -> np.ndarray:
        """The array of ``section``; :class:`StoreError` naming ``where`` when the sequence lacks it."""
        arr = getattr(self, section, None) if section in SECTION_NAMES else None
        if arr is None:
            raise missing_section(where, section, self.sections, needed_by)
        return np.asarray(arr)

    def validate(self, where: str | Path = "<sequence>") -> None:
        """Raise :class:`StoreError` unless shapes, dtypes and values are consistent."""
        if not any(getattr(self, name) is not None for name in PRIMARY_SECTIONS):
            raise StoreError(where, "a sequence needs heatmaps, keypoints or silhouettes (it has none)")
        if self.frame_indices.ndim != 1:
            raise StoreError(where, f"frame_indices must be (T,), got shape {self.frame_indices.shape}")
        t = self.frame_indices.shape[0]
        j = NUM_JOINTS
        hm = self.heatmaps
        if hm is not None:
            if hm.ndim != 4:
                raise StoreError(where, f"heatmaps must be (T, J, H, W), got shape {hm.shape}")
            t, j, h, w = hm.shape
            if (h, w) != tuple(self.meta.heatmap_size):
                raise StoreError(where, f"heatmaps are {h}x{w} but meta says {self.meta.heatmap_size}")
        elif self.keypoints is not None and self.keypoints.ndim == 3:
            t, j = self.keypoints.shape[:2]
        elif self.silhouettes is not None and self.silhouettes.ndim == 3:
            t = self.silhouettes.shape[0]
        if t < 1:
            raise StoreError(where, "a sequence needs at least one frame")
        if self.meta.heatmap_source not in HEATMAP_SOURCES:
            raise StoreError(where, f"heatmap_source {self.meta.heatmap_source!r} is not one of {HEATMAP_SOURCES}")
        expected = {
            "keypoints": (self.keypoints, (t, j, 3)),
            "frame_indices": (self.frame_indices, (t,)),
            "boxes": (self.boxes, (t, 4)),
            "image_keypoints": (self.image_keypoints, (t, j, 3)),
            "silhouettes": (self.silhouettes, (t, *SILHOUETTE_SIZE)),
        }
        for name, (arr, shape) in expected.items():
            if arr is None:
                continue
            if tuple(arr.shape) != shape:
                raise StoreError(where, f"{name} has shape {tuple(arr.shape)}, expected {shape}")
        if self.silhouettes is not None and self.silhouettes.dtype != np.uint8:
            raise StoreError(where, f"silhouettes must be uint8 (0/255), got {self.silhouettes.dtype}")
        for name, arr in (("heatmaps", hm), ("keypoints", self.keypoints), ("boxes", self.boxes),
                          ("image_keypoints", self.image_keypoints)):
            if arr is not None and not np.isfinite(arr).all():
                raise StoreError(where, f"{name} contain NaN or infinite values")


def sequence_path(root: str | Path, subject: str, condition: str, view: str, name: str = DEFAULT_NAME) -> Path:
    """``<root>/<subject>/<condition>/<view>/<name>.ghs``."""
    for part, label in ((subject, "subject"), (condition, "condition"), (view, "view"), (name, "name")):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"invalid {label} {part!r} for a store path")
    return Path(root) / subject / condition / view / f"{name}{SUFFIX}"


# --------------------------------------------------------------------------------------------- write


def quantise(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame, per-joint uint8 quantisation.

    Args:
        heatmaps: (T, J, H, W) float array.
    Returns:
        codes (T, J, H, W) uint8, offset (T, J) float32 and scale (T, J) float32 such that
        ``offset + codes * scale`` reconstructs the input within ``scale / 2`` (half a step).
    """
    x = heatmaps.astype(np.float32, copy=False)
    lo = x.min(axis=(2, 3))
    hi = x.max(axis=(2, 3))
    scale = ((hi - lo) / 255.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    # In place on one float32 buffer: the same arithmetic as (x - lo) / safe, rounded, clipped.
    work = np.subtract(x, lo[..., None, None])
    np.divide(work, safe[..., None, None], out=work)
    np.rint(work, out=work)
    np.clip(work, 0, 255, out=work)
    return work.astype(np.uint8), lo.astype(np.float32), scale


def dequantise(codes: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantise`: (T, J, H, W) float32."""
    return offset[..., None, None] + codes.astype(np.float32) * scale[..., None, None]


def _pack_arrays(arrays: dict[str, np.ndarray]) -> tuple[bytes, dict[str, Any]]:
    table, blobs, offset = {}, [], 0
    for name, arr in arrays.items():
        data = np.ascontiguousarray(arr).tobytes()
        table[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset, "length": len(data)}
        blobs.append(data)
        offset += len(data)
    return b"".join(blobs), table


def _compress_chunks(codes: np.ndarray, chunk_frames: int, compressor: zstandard.ZstdCompressor, pos: int,
                     body: list[bytes]) -> tuple[list[dict[str, int]], int]:
    """Compress ``codes`` (T, ...) uint8 in chunks of frames, appending to ``body`` from offset ``pos``."""
    chunks = []
    for start in range(0, codes.shape[0], chunk_frames):
        block = compressor.compress(np.ascontiguousarray(codes[start : start + chunk_frames]).tobytes())
        chunks.append({"start": start, "frames": min(chunk_frames, codes.shape[0] - start),
                       "offset": pos, "length": len(block), "crc32": zlib.crc32(block)})
        body.append(block)
        pos += len(block)
    return chunks, pos


def encode_sequence(seq: HeatmapSequence, chunk_frames: int = CHUNK_FRAMES, level: int = ZSTD_LEVEL) -> bytes:
    """Serialise a sequence to the ``.ghs`` byte format (see module docstring)."""
    seq.validate()
    compressor = zstandard.ZstdCompressor(level=level)
    body: list[bytes] = []
    pos = 0
    header: dict[str, Any] = {"version": 1 if seq.heatmaps is not None else 2}
    aux_arrays: dict[str, np.ndarray] = {}
    if seq.heatmaps is not None:
        codes, offset, scale = quantise(seq.heatmaps)
        chunks, pos = _compress_chunks(codes, chunk_frames, compressor, pos, body)
        header.update(shape=list(seq.heatmaps.shape), chunk_frames=chunk_frames, chunks=chunks)
    if seq.keypoints is not None:
        aux_arrays["keypoints"] = seq.keypoints.astype(np.float32)
    aux_arrays["frame_indices"] = seq.frame_indices.astype(np.int64)
    if seq.heatmaps is not None:
        aux_arrays["offset"] = offset
        aux_arrays["scale"] = scale
    if seq.boxes is not None:
        aux_arrays["boxes"] = seq.boxes.astype(np.float32)
    if seq.image_keypoints is not None:
        aux_arrays["image_keypoints"] = seq.image_keypoints.astype(np.float32)
    if seq.silhouettes is not None:
        chunks, pos = _compress_chunks(seq.silhouettes, chunk_frames, compressor, pos, body)
        header["silhouettes"] = {"shape": list(seq.silhouettes.shape), "chunk_frames": chunk_frames,
                                 "chunks": chunks}
    raw_aux, table = _pack_arrays(aux_arrays)
    aux = compressor.compress(raw_aux)
    meta = seq.meta
    if not meta.created:
        meta = dataclasses.replace(meta, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    joints = seq.heatmaps.shape[1] if seq.heatmaps is not None else (
        seq.keypoints.shape[1] if seq.keypoints is not None else NUM_JOINTS)
    header.update(
        frames=seq.num_frames,
        joints=int(joints),
        aux={"offset": pos, "length": len(aux), "raw_length": len(raw_aux), "crc32": zlib.crc32(aux),
             "arrays": table},
        body_length=pos + len(aux),
        meta=meta.to_json(),
    )
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    preamble = _PREAMBLE.pack(MAGIC, header["version"], len(head), zlib.crc32(head))
    return b"".join([preamble, head, *body, aux])


def write_sequence(path: str | Path, seq: HeatmapSequence, chunk_frames: int = CHUNK_FRAMES) -> Path:
    """Validate, encode and atomically write ``seq`` to ``path``; returns the path.

    Raises:
        StoreError: if the sequence is invalid (wrong shapes, NaNs); nothing is written then.
    """
    path = Path(path)
    seq.validate(path)  # before anything touches the disk, so an invalid sequence leaves nothing behind
    atomic_write_bytes(path, encode_sequence(seq, chunk_frames))
    return path


# ---------------------------------------------------------------------------------------------- read


@dataclass(frozen=True)
class _Chunked:
    """A chunked section: (T, *frame_shape) uint8 codes in zstd chunks of ``chunk_frames`` frames."""

    shape: tuple[int, ...]
    chunk_frames: int
    chunks: list[dict[str, int]]

    @classmethod
    def parse(cls, data: dict[str, Any]) -> _Chunked:
        return cls(tuple(int(v) for v in data["shape"]), int(data["chunk_frames"]), list(data["chunks"]))


class SequenceFile:
    """A validated ``.ghs`` file, opened lazily: the header is read at once, chunks on demand.

    Example::

        seq = SequenceFile(path)
        seq.num_frames, seq.meta.subject, seq.sections
        part = seq.read(frames=[3, 40, 41])   # decompresses only the chunks holding these frames
        sil = seq.read_silhouettes([3, 4])    # silhouette chunks only, no heatmap chunk
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as handle:
                pre = handle.read(_PREAMBLE.size)
                if len(pre) < _PREAMBLE.size:
                    raise StoreError(self.path, f"truncated or empty file ({size} bytes)")
                magic, version, head_len, head_crc = _PREAMBLE.unpack(pre)
                if magic != MAGIC:
                    raise StoreError(self.path, "not a gaitheat sequence file (bad magic)")
                if head_len > size - _PREAMBLE.size:  # read() would allocate what the field claims
                    raise StoreError(self.path, f"header claims {head_len} bytes, the file has "
                                     f"{size - _PREAMBLE.size} after the preamble (truncated or corrupt)")
                if version not in READ_VERSIONS:
                    raise StoreError(self.path, f"format version {version}, this gaitheat reads "
                                     f"{' and '.join(map(str, READ_VERSIONS))}")
                head = handle.read(head_len)
        except FileNotFoundError as exc:
            raise StoreError(self.path, "no such file") from exc
        except IsADirectoryError as exc:
            raise StoreError(self.path, "is a directory") from exc
        if len(head) != head_len or zlib.crc32(head) != head_crc:
            raise StoreError(self.path, "header checksum mismatch (truncated or corrupt)")
        try:
            header = json.loads(head)
            self.meta = SequenceMeta.from_json(header["meta"])
            # version 1 always holds heatmaps, at the top level; version 2 only when "chunks" is there
            self._heatmaps = _Chunked.parse(header) if version == 1 or "chunks" in header else None
            self._silhouettes = _Chunked.parse(header["silhouettes"]) if "silhouettes" in header else None
            if self._heatmaps is not None:
                frames, joints = self._heatmaps.shape[:2]
            else:
                frames, joints = int(header["frames"]), int(header["joints"])
            self._aux = header["aux"]
            names = set(self._aux["arrays"])
            body_length = int(header["body_length"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise StoreError(self.path, f"malformed header ({type(exc).__name__}: {exc})") from exc
        self._frames, self._joints, self._version = frames, joints, int(version)
        _check_header(self.path, self.meta, frames, joints, self._heatmaps, self._silhouettes, self._aux,
                      body_length)
        self._body_start = _PREAMBLE.size + head_len
        if size != self._body_start + body_length:
            raise StoreError(self.path, f"file is {size} bytes, header expects {self._body_start + body_length}"
                             " (truncated or has trailing data)")
        if frames < 1:
            raise StoreError(self.path, f"a sequence needs at least one frame (header says {frames})")
        if self._heatmaps is not None:
            shape = self._heatmaps.shape
            if len(shape) != 4 or shape[2:] != tuple(self.meta.heatmap_size):
                raise StoreError(self.path, f"inconsistent shape {shape} for heatmap size {self.meta.heatmap_size}")
        if self._silhouettes is not None and self._silhouettes.shape != (frames, *SILHOUETTE_SIZE):
            raise StoreError(self.path, f"silhouettes have shape {self._silhouettes.shape}, expected "
                             f"{(frames, *SILHOUETTE_SIZE)}")
        held = {n for n in ("keypoints", "boxes", "image_keypoints") if n in names}
        held |= {"heatmaps"} if self._heatmaps is not None else set()
        held |= {"silhouettes"} if self._silhouettes is not None else set()
        if not held & set(PRIMARY_SECTIONS):
            raise StoreError(self.path, "holds none of heatmaps, keypoints and silhouettes")
        self._sections = frozenset(held)
        self._arrays: dict[str, np.ndarray] | None = None

    @property
    def num_frames(self) -> int:
        return self._frames

    @property
    def sections(self) -> frozenset[str]:
        """The array sections the file holds, from ``heatmaps``, ``keypoints``, ``silhouettes``,
        ``boxes`` and ``image_keypoints`` (header only, nothing decompressed)."""
        return self._sections

    @property
    def version(self) -> int:
        """The format version the file was written in (1 with heatmaps, 2 without)."""
        return self._version

    def require(self, section: str, needed_by: str = "") -> None:
        """Raise the missing-section :class:`StoreError` unless the file holds ``section``."""
        if section not in self._sections:
            raise missing_section(self.path, section, self._sections, needed_by)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, J, H, W) of the stored heatmaps (:class:`StoreError` when the file has none)."""
        self.require("heatmaps")
        assert self._heatmaps is not None
        t, j, h, w = self._heatmaps.shape
        return t, j, h, w

    def _read_section(self, handle: Any, offset: int, length: int, crc: int, what: str) -> bytes:
        handle.seek(self._body_start + offset)
        data = handle.read(length)
        if len(data) != length or zlib.crc32(data) != crc:
            raise StoreError(self.path, f"{what} checksum mismatch (corrupt data)")
        return data

    def arrays(self) -> dict[str, np.ndarray]:
        """The small per-frame arrays (frame_indices, and keypoints, offset, scale, boxes,
        image_keypoints when held)."""
        if self._arrays is None:
            with open(self.path, "rb") as handle:
                blob = self._read_section(handle, self._aux["offset"], self._aux["length"], self._aux["crc32"], "aux")
            raw = _decompress(self.path, zstandard.ZstdDecompressor(), blob, self._aux["raw_length"], "aux section")
            t, j = self._frames, self._joints
            expected = {"keypoints": (t, j, 3), "frame_indices": (t,), "offset": (t, j), "scale": (t, j),
                        "boxes": (t, 4), "image_keypoints": (t, j, 3)}
            out = {}
            for name, info in self._aux["arrays"].items():  # dtypes, shapes and offsets checked with the header
                arr = np.frombuffer(raw, dtype=np.dtype(info["dtype"]), count=math.prod(info["shape"]),
                                    offset=int(info["offset"])).reshape(info["shape"])
                if name in expected and tuple(arr.shape) != expected[name]:
                    raise StoreError(self.path, f"{name} has shape {arr.shape}, expected {expected[name]}")
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise StoreError(self.path, f"{name} contain NaN or infinite values")
                out[name] = arr
            needed = ["frame_indices"] + (["offset", "scale"] if self._heatmaps is not None else [])
            for name in needed:
                if name not in out:
                    raise StoreError(self.path, f"missing array '{name}'")
            self._arrays = out
        return self._arrays

    @property
    def keypoints(self) -> np.ndarray:
        """(T, J, 3) float32 x, y, score in heatmap pixels (no chunk decompression)."""
        self.require("keypoints")
        return self.arrays()["keypoints"]

    def _positions(self, frames: Sequence[int] | np.ndarray | None) -> np.ndarray:
        t = self._frames
        idx = np.arange(t) if frames is None else np.asarray(frames, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= t):
            raise IndexError(f"{self.path}: frame positions must be in [0, {t}), got {idx.min()}..{idx.max()}")
        return idx

    def _iter_chunks(self, section: _Chunked, name: str, idx: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (positions into ``idx``, their frames' uint8 codes) per chunk holding requested frames."""
        frame_bytes = int(np.prod(section.shape[1:]))
        decompressor = zstandard.ZstdDecompressor()
        prefix = "chunk" if name == "heatmaps" else f"{name} chunk"
        with open(self.path, "rb") as handle:
            for chunk_no in np.unique(idx // section.chunk_frames):
                info = section.chunks[int(chunk_no)]
                what = f"{prefix} {chunk_no}"
                blob = self._read_section(handle, info["offset"], info["length"], info["crc32"], what)
                raw = _decompress(self.path, decompressor, blob, info["frames"] * frame_bytes, what)
                if len(raw) != info["frames"] * frame_bytes:
                    raise StoreError(self.path, f"{what} has {len(raw)} bytes, expected {info['frames'] * frame_bytes}")
                codes = np.frombuffer(raw, dtype=np.uint8).reshape(info["frames"], *section.shape[1:])
                sel = np.nonzero(idx // section.chunk_frames == chunk_no)[0]
                yield sel, codes[idx[sel] - info["start"]]

    def read_heatmaps(self, frames: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Heatmaps ``(len(frames), J, H, W)`` float32 for the given frame positions (all when None).

        Only the chunks holding the requested frames are decompressed; frames may repeat and come in
        any order. :class:`StoreError` when the file holds no heatmaps.
        """
        self.require("heatmaps")
        section = self._heatmaps
        assert section is not None
        idx = self._positions(frames)
        arrays = self.arrays()
        out = np.empty((idx.size, *section.shape[1:]), dtype=np.float32)
        for sel, codes in self._iter_chunks(section, "heatmaps", idx):
            out[sel] = dequantise(codes, arrays["offset"][idx[sel]], arrays["scale"][idx[sel]])
        return out

    def read_silhouettes(self, frames: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Silhouettes ``(len(frames), 64, 44)`` uint8 (0/255) for the given frame positions (all when None).

        Decompresses only the silhouette chunks holding the requested frames, never a heatmap chunk.
        :class:`StoreError` when the file holds no silhouettes.
        """
        self.require("silhouettes")
        section = self._silhouettes
        assert section is not None
        idx = self._positions(frames)
        out = np.empty((idx.size, *section.shape[1:]), dtype=np.uint8)
        for sel, codes in self._iter_chunks(section, "silhouettes", idx):
            out[sel] = codes
        return out

    def read(self, frames: Sequence[int] | np.ndarray | None = None) -> HeatmapSequence:
        """The stored sequence with every section the file holds, or the given subset of its frames."""
        arrays = self.arrays()
        idx = self._positions(frames)

        def pick(name: str) -> np.ndarray | None:
            arr = arrays.get(name)
            return None if arr is None else arr[idx].copy()

        return HeatmapSequence(
            heatmaps=self.read_heatmaps(idx) if "heatmaps" in self._sections else None,
            keypoints=pick("keypoints"),
            frame_indices=arrays["frame_indices"][idx].copy(),
            meta=self.meta,
            boxes=pick("boxes"),
            image_keypoints=pick("image_keypoints"),
            silhouettes=self.read_silhouettes(idx) if "silhouettes" in self._sections else None,
        )

    def verify(self) -> None:
        """Read every section, checking all checksums (raises :class:`StoreError`)."""
        self.arrays()
        if "heatmaps" in self._sections:
            self.read_heatmaps()
        if "silhouettes" in self._sections:
            self.read_silhouettes()


def _decompress(path: Path, decompressor: zstandard.ZstdDecompressor, blob: bytes, expected: int, what: str) -> bytes:
    """Decompress one zstd frame of ``expected`` bytes, refusing before any allocation if it declares more.

    ``max_output_size`` only applies to frames that do not state their size: a frame that states one
    is decompressed into a buffer of the stated size, whatever the header says (a 12 KB chunk can
    state 426 MB).
    """
    try:
        declared = zstandard.frame_content_size(blob)
    except zstandard.ZstdError as exc:
        raise StoreError(path, f"{what} is not a zstd frame ({exc})") from exc
    if declared not in (-1, expected):
        raise StoreError(path, f"{what} declares {declared} decompressed bytes, the header expects {expected}")
    try:
        return decompressor.decompress(blob, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise StoreError(path, f"{what} does not decompress ({exc})") from exc


def _is_int(value: Any, low: int = 0, high: int = 2**63 - 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_chunks(path: Path, name: str, section: _Chunked, frames: int, frame_shape: tuple[int, ...],
                  body_length: int) -> None:
    """A chunked section's shape and chunk table agree with the frame count and stay inside the body."""
    if section.shape != (frames, *frame_shape):
        raise StoreError(path, f"{name} have shape {list(section.shape)}, expected {[frames, *frame_shape]}")
    step = section.chunk_frames
    if not _is_int(step, 1):
        raise StoreError(path, f"malformed header ({name} chunk_frames {step!r})")
    if len(section.chunks) != -(-frames // step):
        raise StoreError(path, f"malformed header ({len(section.chunks)} {name} chunks for {frames} frames "
                         f"of {step})")
    for i, chunk in enumerate(section.chunks):
        if not isinstance(chunk, dict) or not all(_is_int(chunk.get(k)) for k in _CHUNK_KEYS):
            raise StoreError(path, f"malformed header ({name} chunk {i} is {chunk!r:.80})")
        if (chunk["start"], chunk["frames"]) != (i * step, min(step, frames - i * step)):
            raise StoreError(path, f"malformed header ({name} chunk {i} covers frames {chunk['start']}.."
                             f"{chunk['start'] + chunk['frames'] - 1}, expected {i * step}..)")
        if chunk["offset"] + chunk["length"] > body_length or chunk["crc32"] >= 2**32:
            raise StoreError(path, f"malformed header ({name} chunk {i} lies outside the body)")


def _check_header(path: Path, meta: SequenceMeta, frames: int, joints: int, heatmaps: _Chunked | None,
                  silhouettes: _Chunked | None, aux: Any, body_length: int) -> None:
    """Every field a reader will use, checked once at open: a tampered header whose checksum was
    recomputed still gives a :class:`StoreError` naming the file, never an ``IndexError`` later.

    Joint counts and heatmap sizes other than gaitheat's (17 COCO joints, 64 x 48) are refused here,
    at load, rather than deep inside a model.
    """
    if not _is_int(frames, 1, 10**8) or not _is_int(body_length):
        raise StoreError(path, f"malformed header (frames {frames!r}, body_length {body_length!r})")
    if joints != NUM_JOINTS or meta.joint_layout != JOINT_LAYOUT:
        raise StoreError(path, f"holds {joints} joints ({meta.joint_layout}); gaitheat reads {NUM_JOINTS} "
                         f"({JOINT_LAYOUT})")
    size = tuple(meta.heatmap_size)
    if size != HEATMAP_SIZE:
        raise StoreError(path, f"heatmap size {'x'.join(map(str, size))}; gaitheat reads "
                         f"{HEATMAP_SIZE[0]}x{HEATMAP_SIZE[1]} heatmaps")
    if heatmaps is not None:
        _check_chunks(path, "heatmaps", heatmaps, frames, (NUM_JOINTS, *HEATMAP_SIZE), body_length)
    if silhouettes is not None:
        _check_chunks(path, "silhouettes", silhouettes, frames, SILHOUETTE_SIZE, body_length)
    if not isinstance(aux, dict) or not all(_is_int(aux.get(k)) for k in ("offset", "length", "raw_length", "crc32")):
        raise StoreError(path, "malformed header (aux section)")
    if aux["offset"] + aux["length"] > body_length:
        raise StoreError(path, "malformed header (aux section lies outside the body)")
    # the small arrays of T frames: keypoints, image keypoints, offset/scale, boxes, frame indices
    most = frames * (NUM_JOINTS * 32 + 24) + 4096
    if aux["raw_length"] > most:
        raise StoreError(path, f"aux section claims {aux['raw_length']} bytes, at most {most} for {frames} frames")
    arrays = aux.get("arrays")
    if not isinstance(arrays, dict):
        raise StoreError(path, "malformed header (aux arrays)")
    for name, info in arrays.items():
        try:
            dtype = np.dtype(info["dtype"])
            shape = info["shape"]
            ok = (dtype.kind in "fiu" and dtype.fields is None and dtype.subdtype is None
                  and isinstance(shape, list) and all(_is_int(n) for n in shape) and _is_int(info["offset"])
                  and info["offset"] + math.prod(shape) * dtype.itemsize <= aux["raw_length"])
        except (TypeError, ValueError, KeyError) as exc:
            raise StoreError(path, f"malformed header (aux array {name!r}: {exc})") from exc
        if not ok:
            raise StoreError(path, f"malformed header (aux array {name!r}: {info!r:.120})")


def read_sequence(path: str | Path, frames: Sequence[int] | np.ndarray | None = None) -> HeatmapSequence:
    """Read a whole ``.ghs`` file (or the given frame positions); raises :class:`StoreError`."""
    return SequenceFile(path).read(frames)


def iter_sequence_files(root: str | Path) -> list[Path]:
    """All ``.ghs`` files under ``root`` at ``<subject>/<condition>/<view>/`` depth, sorted."""
    root = Path(root)
    return sorted(p for p in root.glob(f"*/*/*/*{SUFFIX}") if p.is_file() and not is_temporary(p))
