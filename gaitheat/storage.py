"""Heatmap sequence store: one compressed, checksummed file per walking sequence.

Layout on disk follows the field's tree, so OpenGait-style partition files apply unchanged::

    <root>/<subject>/<condition>/<view>/<name>.ghs

A ``.ghs`` file holds one :class:`HeatmapSequence`:

* ``heatmaps`` ``(T, J, H, W)`` (J = 17 COCO joints, H x W = 64 x 48), quantised to uint8 with a
  per-frame, per-joint offset and scale (so slightly negative regression heatmaps survive), then
  zstd-compressed in chunks of frames, so reading a few frames decompresses only their chunks;
* ``keypoints`` ``(T, J, 3)`` float32 (x, y, score) in heatmap pixel coordinates;
* ``boxes`` ``(T, 4)`` float32 crop box (x1, y1, x2, y2) in source-image pixels, or absent;
* ``frame_indices`` ``(T,)`` int64 indices of the source frames;
* ``image_keypoints`` ``(T, J, 3)`` float32 keypoints in source-image pixels, or absent;
* :class:`SequenceMeta`: format version, joint layout, heatmap size, pose model name and SHA-256,
  crop padding, source path, creation time, plus free-form ``extra`` (e.g. quality records).

File format (version 1), all integers little-endian::

    b"GAITHEAT" | u32 version | u32 header_len | u32 header_crc32 | header JSON | body

The header lists every section of the body (offset, length, CRC-32). Readers check the magic,
version, header checksum, total file size, array shapes, section checksums and NaNs, and raise
:class:`StoreError` naming the file for anything wrong. Writes are atomic (:mod:`gaitheat.atomic`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from gaitheat.atomic import atomic_write_bytes, is_temporary

MAGIC = b"GAITHEAT"
FORMAT_VERSION = 1
SUFFIX = ".ghs"
DEFAULT_NAME = "heatmaps"
JOINT_LAYOUT = "coco17"
NUM_JOINTS = 17
HEATMAP_SIZE = (64, 48)
CHUNK_FRAMES = 16
ZSTD_LEVEL = 6
_PREAMBLE = struct.Struct("<8sIII")

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
        heatmap_size: (H, W) of each heatmap.
        created: ISO-8601 UTC creation time.
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


@dataclass
class HeatmapSequence:
    """One person's walking sequence as heatmaps (see the module docstring for shapes)."""

    heatmaps: np.ndarray
    keypoints: np.ndarray
    frame_indices: np.ndarray
    meta: SequenceMeta
    boxes: np.ndarray | None = None
    image_keypoints: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.heatmaps.shape[0])

    def validate(self, where: str | Path = "<sequence>") -> None:
        """Raise :class:`StoreError` unless shapes, dtypes and values are consistent."""
        hm = self.heatmaps
        if hm.ndim != 4:
            raise StoreError(where, f"heatmaps must be (T, J, H, W), got shape {hm.shape}")
        t, j, h, w = hm.shape
        if t < 1:
            raise StoreError(where, "a sequence needs at least one frame")
        if (h, w) != tuple(self.meta.heatmap_size):
            raise StoreError(where, f"heatmaps are {h}x{w} but meta says {self.meta.heatmap_size}")
        expected = {
            "keypoints": (self.keypoints, (t, j, 3)),
            "frame_indices": (self.frame_indices, (t,)),
            "boxes": (self.boxes, (t, 4)),
            "image_keypoints": (self.image_keypoints, (t, j, 3)),
        }
        for name, (arr, shape) in expected.items():
            if arr is None:
                continue
            if tuple(arr.shape) != shape:
                raise StoreError(where, f"{name} has shape {tuple(arr.shape)}, expected {shape}")
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


def encode_sequence(seq: HeatmapSequence, chunk_frames: int = CHUNK_FRAMES, level: int = ZSTD_LEVEL) -> bytes:
    """Serialise a sequence to the ``.ghs`` byte format (see module docstring)."""
    seq.validate()
    codes, offset, scale = quantise(seq.heatmaps)
    compressor = zstandard.ZstdCompressor(level=level)
    body: list[bytes] = []
    pos = 0
    chunks = []
    for start in range(0, codes.shape[0], chunk_frames):
        block = compressor.compress(np.ascontiguousarray(codes[start : start + chunk_frames]).tobytes())
        chunks.append({"start": start, "frames": min(chunk_frames, codes.shape[0] - start),
                       "offset": pos, "length": len(block), "crc32": zlib.crc32(block)})
        body.append(block)
        pos += len(block)
    aux_arrays: dict[str, np.ndarray] = {
        "keypoints": seq.keypoints.astype(np.float32),
        "frame_indices": seq.frame_indices.astype(np.int64),
        "offset": offset,
        "scale": scale,
    }
    if seq.boxes is not None:
        aux_arrays["boxes"] = seq.boxes.astype(np.float32)
    if seq.image_keypoints is not None:
        aux_arrays["image_keypoints"] = seq.image_keypoints.astype(np.float32)
    raw_aux, table = _pack_arrays(aux_arrays)
    aux = compressor.compress(raw_aux)
    meta = seq.meta
    if not meta.created:
        meta = dataclasses.replace(meta, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    t, j, h, w = seq.heatmaps.shape
    header = {
        "version": FORMAT_VERSION,
        "shape": [t, j, h, w],
        "chunk_frames": chunk_frames,
        "chunks": chunks,
        "aux": {"offset": pos, "length": len(aux), "raw_length": len(raw_aux), "crc32": zlib.crc32(aux),
                "arrays": table},
        "body_length": pos + len(aux),
        "meta": meta.to_json(),
    }
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(head), zlib.crc32(head))
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


class SequenceFile:
    """A validated ``.ghs`` file, opened lazily: the header is read at once, heatmap chunks on demand.

    Example::

        seq = SequenceFile(path)
        seq.num_frames, seq.meta.subject
        part = seq.read(frames=[3, 40, 41])   # decompresses only the chunks holding these frames
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
                if version != FORMAT_VERSION:
                    raise StoreError(self.path, f"format version {version}, this gaitheat reads {FORMAT_VERSION}")
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
            self._shape = tuple(int(v) for v in header["shape"])
            self._chunks = header["chunks"]
            self._chunk_frames = int(header["chunk_frames"])
            self._aux = header["aux"]
            body_length = int(header["body_length"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(self.path, f"malformed header ({exc})") from exc
        self._body_start = _PREAMBLE.size + head_len
        if size != self._body_start + body_length:
            raise StoreError(self.path, f"file is {size} bytes, header expects {self._body_start + body_length}"
                             " (truncated or has trailing data)")
        t, _, h, w = self._shape
        if t < 1 or (h, w) != tuple(self.meta.heatmap_size):
            raise StoreError(self.path, f"inconsistent shape {self._shape} for heatmap size {self.meta.heatmap_size}")
        self._arrays: dict[str, np.ndarray] | None = None

    @property
    def num_frames(self) -> int:
        return self._shape[0]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, J, H, W) of the stored heatmaps."""
        t, j, h, w = self._shape
        return t, j, h, w

    def _read_section(self, handle: Any, offset: int, length: int, crc: int, what: str) -> bytes:
        handle.seek(self._body_start + offset)
        data = handle.read(length)
        if len(data) != length or zlib.crc32(data) != crc:
            raise StoreError(self.path, f"{what} checksum mismatch (corrupt data)")
        return data

    def arrays(self) -> dict[str, np.ndarray]:
        """The small per-frame arrays (keypoints, frame_indices, offset, scale, boxes, image_keypoints)."""
        if self._arrays is None:
            with open(self.path, "rb") as handle:
                blob = self._read_section(handle, self._aux["offset"], self._aux["length"], self._aux["crc32"], "aux")
            try:
                raw = zstandard.ZstdDecompressor().decompress(blob, max_output_size=int(self._aux["raw_length"]))
            except zstandard.ZstdError as exc:
                raise StoreError(self.path, f"aux section does not decompress ({exc})") from exc
            t, j = self._shape[:2]
            expected = {"keypoints": (t, j, 3), "frame_indices": (t,), "offset": (t, j), "scale": (t, j),
                        "boxes": (t, 4), "image_keypoints": (t, j, 3)}
            out = {}
            for name, info in self._aux["arrays"].items():
                arr = np.frombuffer(raw, dtype=np.dtype(info["dtype"]), count=int(np.prod(info["shape"])),
                                    offset=int(info["offset"])).reshape(info["shape"])
                if name in expected and tuple(arr.shape) != expected[name]:
                    raise StoreError(self.path, f"{name} has shape {arr.shape}, expected {expected[name]}")
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise StoreError(self.path, f"{name} contain NaN or infinite values")
                out[name] = arr
            for name in ("keypoints", "frame_indices", "offset", "scale"):
                if name not in out:
                    raise StoreError(self.path, f"missing array '{name}'")
            self._arrays = out
        return self._arrays

    @property
    def keypoints(self) -> np.ndarray:
        """(T, J, 3) float32 x, y, score in heatmap pixels (no heatmap decompression)."""
        return self.arrays()["keypoints"]

    def read_heatmaps(self, frames: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Heatmaps ``(len(frames), J, H, W)`` float32 for the given frame positions (all when None).

        Only the chunks holding the requested frames are decompressed; frames may repeat and come in
        any order.
        """
        t, j, h, w = self._shape
        idx = np.arange(t) if frames is None else np.asarray(frames, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= t):
            raise IndexError(f"{self.path}: frame positions must be in [0, {t}), got {idx.min()}..{idx.max()}")
        arrays = self.arrays()
        out = np.empty((idx.size, j, h, w), dtype=np.float32)
        frame_bytes = j * h * w
        decompressor = zstandard.ZstdDecompressor()
        with open(self.path, "rb") as handle:
            for chunk_no in np.unique(idx // self._chunk_frames):
                info = self._chunks[int(chunk_no)]
                blob = self._read_section(handle, info["offset"], info["length"], info["crc32"], f"chunk {chunk_no}")
                try:
                    raw = decompressor.decompress(blob, max_output_size=info["frames"] * frame_bytes)
                except zstandard.ZstdError as exc:
                    raise StoreError(self.path, f"chunk {chunk_no} does not decompress ({exc})") from exc
                if len(raw) != info["frames"] * frame_bytes:
                    raise StoreError(self.path, f"chunk {chunk_no} has {len(raw)} bytes, expected "
                                     f"{info['frames'] * frame_bytes}")
                codes = np.frombuffer(raw, dtype=np.uint8).reshape(info["frames"], j, h, w)
                sel = np.nonzero(idx // self._chunk_frames == chunk_no)[0]
                local = idx[sel] - info["start"]
                out[sel] = dequantise(codes[local], arrays["offset"][idx[sel]], arrays["scale"][idx[sel]])
        return out

    def read(self, frames: Sequence[int] | np.ndarray | None = None) -> HeatmapSequence:
        """The stored sequence, or the given subset of its frames."""
        arrays = self.arrays()
        idx = np.arange(self.num_frames) if frames is None else np.asarray(frames, dtype=np.int64).reshape(-1)
        heatmaps = self.read_heatmaps(idx)
        boxes = arrays.get("boxes")
        image_kp = arrays.get("image_keypoints")
        return HeatmapSequence(
            heatmaps=heatmaps,
            keypoints=arrays["keypoints"][idx].copy(),
            frame_indices=arrays["frame_indices"][idx].copy(),
            meta=self.meta,
            boxes=None if boxes is None else boxes[idx].copy(),
            image_keypoints=None if image_kp is None else image_kp[idx].copy(),
        )

    def verify(self) -> None:
        """Read every section, checking all checksums (raises :class:`StoreError`)."""
        self.read_heatmaps()


def read_sequence(path: str | Path, frames: Sequence[int] | np.ndarray | None = None) -> HeatmapSequence:
    """Read a whole ``.ghs`` file (or the given frame positions); raises :class:`StoreError`."""
    return SequenceFile(path).read(frames)


def iter_sequence_files(root: str | Path) -> list[Path]:
    """All ``.ghs`` files under ``root`` at ``<subject>/<condition>/<view>/`` depth, sorted."""
    root = Path(root)
    return sorted(p for p in root.glob(f"*/*/*/*{SUFFIX}") if p.is_file() and not is_temporary(p))
