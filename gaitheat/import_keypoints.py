"""Keypoint-only data -> the store: pose pickles, COCO / AlphaPose results, OpenPose / OUMVLP-Pose JSON.

Most gait data one can obtain ships keypoints only. ``gaitheat import-keypoints SRC STORE`` turns
each sequence found under ``SRC`` into ``STORE/<subject>/<condition>/<view>/<name>.ghs`` holding
``keypoints`` (no heatmaps unless ``--regen``), ``image_keypoints``, ``boxes`` and ``frame_indices``.
Three layouts are recognised, all in source-image pixels, COCO-17 order (or OpenPose-18, converted):

* **pose pickles** (OpenGait / FastPoseGait): ``SRC/<subject>/<condition>/<view>/<name>.pkl`` holding
  ``(T, 17, 3)`` (or ``(T, 18, 3)`` OpenPose) x, y, score, read through the same restricted,
  allocation-bounded unpickler as ``import-pkl`` (:func:`gaitheat.interop.load_array_pickle`);
  ``float_*.pkl`` heatmap pickles are ``import-pkl``'s and are left alone, and ``pose_<x>.pkl`` is
  stored as ``<x>``, the name ``import-pkl`` gives its heatmap partner;
* **COCO-format keypoint results / AlphaPose JSON**: one ``.json`` per video or frame folder, a list
  of ``{"image_id", "keypoints": [51 numbers], "score", optional "idx" or "track_id"}`` (or a dict
  with such a list under ``"annotations"``). ``image_id`` is the frame number, or a file name whose
  last run of digits is. Per frame one person is kept: the one whose track (``idx`` / ``track_id``)
  has the most frames in the file, ties and untracked people going to the highest ``score`` (the
  mean joint score when ``score`` is absent);
* **OpenPose per-frame JSON** (OUMVLP-Pose): a folder of ``<frame>_keypoints.json`` files
  (``{"people": [{"pose_keypoints_2d": [54 or 51 numbers]}]}``), one sequence per folder, the
  highest-scoring person per frame; OUMVLP-Pose's tree ``<subject>/<view>_<seq>/`` names it.

Subject, condition and view come from a user mapping CSV when given (columns ``source, subject,
condition, view``; ``source`` is the path relative to ``SRC``, or the file / folder name), else from
dataset-style names (:func:`gaitheat.extract.parse_dataset_name`: CASIA-B, CCPG, SUSTech1K; and the
OUMVLP-Pose and pickle trees), else the source's stem with condition ``00`` and view ``000`` (as
extraction does).

**The crop frame.** Stored keypoints live in heatmap pixels of a 64 x 48 crop, as extracted ones
do, so models and :mod:`gaitheat.regen` treat both alike. Each frame's crop box is built from that
frame's keypoints the way extraction follows people (:func:`gaitheat.crop.keypoints_box` then
:func:`gaitheat.crop.pad_box`): the box around the joints scoring >= 0.3 (all joints scoring > 0 when
fewer than 6 do), raised by 12 % of its height above the top joint (the eyes/ears stop short of
the head top) and lowered by 6 % below the bottom one (the ankles stop short of the soles), then
padded 1.25x about its centre and grown to 3:4. Frames with fewer than 2 scoring joints are dropped
(counted in ``meta.extra``).

OpenPose-18 -> COCO-17 (the neck, OpenPose 1, has no COCO joint and is dropped)::

    COCO  nose l_eye r_eye l_ear r_ear l_sho r_sho l_elb r_elb l_wri r_wri l_hip r_hip l_kne r_kne l_ank r_ank
    OP18  0    15    14    17    16    5     2     6     3     7     4     11    8     12    9     13    10

Bad input (malformed JSON, a wrong number of joints, NaN, an ``image_id`` without a frame number, a
sequence with no usable frame) fails that file with one clear reason; the batch goes on and the
summary lists every failure.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaitheat.crop import keypoints_box, pad_box
from gaitheat.heatmaps import DEFAULT_SIGMA
from gaitheat.interop import PickleRejected, TransferSummary, load_array_pickle
from gaitheat.progress import Progress
from gaitheat.storage import HEATMAP_SIZE, HeatmapSequence, SequenceMeta, StoreError, sequence_path, write_sequence

log = logging.getLogger(__name__)

# COCO-17 joint j is OpenPose-18 joint OPENPOSE18_TO_COCO17[j] (see the module docstring).
OPENPOSE18_TO_COCO17 = (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)
MAX_JSON_BYTES = 128 << 20  # a results file beyond this is refused: parsed, JSON grows about 4-8x in memory
MIN_BOX_JOINTS = 2
_OPENPOSE_FRAME = re.compile(r"^(.*?)(\d+)_keypoints?\.json$")
_OUMVLP_VIEW_SEQ = re.compile(r"^(\d{3})_(\d{2})$")
_DIGITS = re.compile(r"\d+")


class KeypointImportError(ValueError):
    """One input that cannot be imported; the message names the file and the reason."""


@dataclass(frozen=True)
class KeypointSource:
    """One sequence to import: where it is, its format, and the name it gets in the store."""

    path: Path  # a file (pickle, results JSON) or a folder (OpenPose frame files)
    kind: str  # "pickle" | "results" | "openpose"
    name: str  # file stem in the store


@dataclass(frozen=True)
class RawKeypoints:
    """Decoded keypoints of one source, before cropping: ``(T, 17, 3)`` source pixels and ``(T,)`` frame numbers."""

    keypoints: np.ndarray
    frames: np.ndarray
    joints_in: int  # 17 or 18 (converted)
    people_dropped: int = 0  # detections not kept (other people in the same frame)


# ------------------------------------------------------------------------------------------- pure parts


def to_coco17(keypoints: np.ndarray, where: str | Path) -> tuple[np.ndarray, int]:
    """``(T, 17 or 18, 3)`` -> ``(T, 17, 3)`` float64 COCO-17, and the joint count it came with."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[2] != 3 or kp.shape[1] not in (17, 18):
        raise KeypointImportError(f"{where}: expected keypoints (T, 17, 3) COCO or (T, 18, 3) OpenPose, "
                                  f"got shape {kp.shape}")
    if kp.shape[0] == 0:
        raise KeypointImportError(f"{where}: empty sequence (no frames)")
    if not np.isfinite(kp).all():
        raise KeypointImportError(f"{where}: keypoints contain NaN or infinite values")
    joints = kp.shape[1]
    return (kp[:, list(OPENPOSE18_TO_COCO17)] if joints == 18 else kp), joints


def crop_frame(image_keypoints: np.ndarray, size: tuple[int, int] = HEATMAP_SIZE,
               padding: float = 1.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame crop boxes around keypoints and the keypoints in that crop's heatmap pixels.

    Args:
        image_keypoints: (T, 17, 3) x, y, score in source pixels.
        size: (H, W) of the heatmap grid the keypoints are expressed on.
        padding: box padding (1.25, as extraction).
    Returns:
        boxes (t, 4) float32 crop boxes, keypoints (t, 17, 3) float32 in heatmap pixels (scores kept),
        and keep (T,) bool: the frames that had enough scoring joints for a box (t of them).
    """
    boxes, keep = [], []
    for frame in image_keypoints:
        box = keypoints_box(frame)
        if box is None:  # fewer than 6 joints >= 0.3: every scoring joint, if there are 2
            box = keypoints_box(frame, min_score=1e-6, min_joints=MIN_BOX_JOINTS)
        keep.append(box is not None)
        if box is not None:
            boxes.append(box)
    mask = np.array(keep, bool)
    crop = pad_box(np.array(boxes, np.float64).reshape(-1, 4), padding)
    kp = np.asarray(image_keypoints, np.float64)[mask].copy()
    x1, y1, x2, y2 = (crop[:, i, None] for i in range(4))
    kp[..., 0] = (kp[..., 0] - x1) * size[1] / (x2 - x1)
    kp[..., 1] = (kp[..., 1] - y1) * size[0] / (y2 - y1)
    return crop.astype(np.float32), kp.astype(np.float32), mask


def frame_number(image_id: Any, where: str | Path) -> int:
    """The frame number of a COCO / AlphaPose ``image_id``: an int, or the last digits of a file name."""
    if isinstance(image_id, bool):
        raise KeypointImportError(f"{where}: image_id {image_id!r} is not a frame number or file name")
    if isinstance(image_id, int) and image_id >= 0:
        return image_id
    if isinstance(image_id, float) and image_id.is_integer() and image_id >= 0:
        return int(image_id)
    if isinstance(image_id, str):
        digits = _DIGITS.findall(Path(image_id).stem)
        if digits:
            return int(digits[-1])
    raise KeypointImportError(f"{where}: image_id {image_id!r} has no frame number "
                              "(expected an integer or a file name ending in digits)")


def _flat_keypoints(values: Any, where: str, allowed: tuple[int, ...] = (17,)) -> np.ndarray:
    """A flat ``[x1, y1, c1, ...]`` list -> ``(J, 3)``, J in ``allowed``."""
    if not isinstance(values, list) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                               for v in values):
        raise KeypointImportError(f"{where}: keypoints must be a flat list of numbers")
    if len(values) not in tuple(3 * j for j in allowed):
        want = " or ".join(f"{3 * j} ({j} joints x 3)" for j in allowed)
        raise KeypointImportError(f"{where}: expected {want} keypoint numbers, got {len(values)}")
    kp = np.array(values, np.float64).reshape(-1, 3)
    if not np.isfinite(kp).all():
        raise KeypointImportError(f"{where}: keypoints contain NaN or infinite values")
    return kp


def _track_id(det: dict[str, Any]) -> str | None:
    """AlphaPose ``idx`` (int, float or a one-element list) or ``track_id``, as a string; None if absent."""
    value = det.get("idx", det.get("track_id"))
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def select_people(detections: list[dict[str, Any]], where: str | Path) -> RawKeypoints:
    """One person per frame from COCO / AlphaPose detections (see the module docstring's rule).

    Args:
        detections: dicts with ``image_id``, ``keypoints`` (51 numbers), optional ``score``, ``idx`` /
            ``track_id``.
    Returns:
        the kept person's keypoints per frame, frames sorted.
    """
    if not detections:
        raise KeypointImportError(f"{where}: empty sequence (no detections)")
    parsed = []
    for n, det in enumerate(detections):
        if not isinstance(det, dict) or "keypoints" not in det or "image_id" not in det:
            raise KeypointImportError(f"{where}: detection {n} is not an object with image_id and keypoints")
        kp = _flat_keypoints(det["keypoints"], f"{where}: detection {n}")
        score = det.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            if score is not None:
                raise KeypointImportError(f"{where}: detection {n} has score {score!r}, not a number")
            score = float(kp[:, 2].mean())
        parsed.append((frame_number(det["image_id"], f"{where}: detection {n}"), _track_id(det), float(score), kp))
    lengths = Counter(track for _, track, _, _ in parsed if track is not None)
    best: dict[int, tuple[tuple[int, float], np.ndarray]] = {}
    for frame, track, score, kp in parsed:
        key = (lengths[track] if track is not None else 0, score)
        if frame not in best or key > best[frame][0]:
            best[frame] = (key, kp)
    frames = np.array(sorted(best), np.int64)
    return RawKeypoints(np.stack([best[int(f)][1] for f in frames]), frames, 17, len(parsed) - len(frames))


def build_sequence(raw: RawKeypoints, subject: str, condition: str, view: str, source: str, kind: str,
                   regen: bool = False, sigma: float = DEFAULT_SIGMA) -> HeatmapSequence:
    """A stored sequence from decoded keypoints: crop frame, meta, and regenerated heatmaps if ``regen``."""
    boxes, keypoints, keep = crop_frame(raw.keypoints)
    if not keep.any():
        raise KeypointImportError(f"{source}: empty sequence (no frame has {MIN_BOX_JOINTS} joints with a score)")
    extra = {"imported_from": kind, "joints_in": raw.joints_in, "frames_in": len(keep),
             "frames_without_box": int((~keep).sum()), "people_dropped": raw.people_dropped,
             "crop": "keypoints_box (head +12%, feet +6%) padded 1.25x to 3:4"}
    meta = SequenceMeta(subject=subject, condition=condition, view=view, source=source,
                        pose_model=f"imported:{kind}", crop_padding=1.25, extra=extra)
    seq = HeatmapSequence(heatmaps=None, keypoints=keypoints, frame_indices=raw.frames[keep].astype(np.int64),
                          meta=meta, boxes=boxes, image_keypoints=raw.keypoints[keep].astype(np.float32))
    if regen:
        from gaitheat.regen import regenerate_sequence

        seq = regenerate_sequence(seq, sigma=sigma)
    seq.validate(source)
    return seq


# ------------------------------------------------------------------------------------------------ readers


def _load_json(path: Path) -> Any:
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise KeypointImportError(f"{path}: {size} bytes is over the {MAX_JSON_BYTES}-byte limit for a JSON file")
    try:
        # NaN / Infinity literals are not JSON; refuse them here rather than as float('nan') later
        return json.loads(path.read_bytes(), parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeypointImportError(f"{path}: malformed JSON ({exc})") from exc
    except KeypointImportError as exc:
        raise KeypointImportError(f"{path}: {exc}") from exc
    except RecursionError as exc:
        raise KeypointImportError(f"{path}: malformed JSON (nested too deeply)") from exc


def _refuse_constant(name: str) -> Any:
    raise KeypointImportError(f"{name} is not a number JSON allows")


def read_pickle(path: Path) -> RawKeypoints:
    """A pose pickle ``(T, 17|18, 3)`` through the restricted unpickler."""
    try:
        array = load_array_pickle(path)
    except PickleRejected as exc:
        raise KeypointImportError(str(exc)) from exc
    kp, joints = to_coco17(array, path)
    return RawKeypoints(kp, np.arange(len(kp), dtype=np.int64), joints)


def read_results(path: Path) -> RawKeypoints:
    """A COCO-format results / AlphaPose JSON file (one video or frame folder)."""
    data = _load_json(path)
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise KeypointImportError(f"{path}: expected a list of detections (COCO results / AlphaPose), "
                                  f"got a JSON {type(data).__name__}")
    return select_people(data, path)


def read_openpose_folder(folder: Path, files: list[Path]) -> RawKeypoints:
    """OpenPose per-frame JSON files of one folder (OUMVLP-Pose): the highest-scoring person per frame."""
    frames, people = [], []
    dropped = 0
    joints_in = 17
    for file in files:
        match = _OPENPOSE_FRAME.match(file.name)
        assert match is not None  # discover() only groups matching names
        data = _load_json(file)
        if not isinstance(data, dict) or not isinstance(data.get("people"), list):
            raise KeypointImportError(f"{file}: expected an OpenPose object with a 'people' list")
        candidates = []
        for n, person in enumerate(data["people"]):
            if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
                raise KeypointImportError(f"{file}: person {n} has no pose_keypoints_2d")
            kp = _flat_keypoints(person["pose_keypoints_2d"], f"{file}: person {n}", allowed=(17, 18))
            candidates.append(kp)
        if not candidates:
            continue  # OpenPose writes frames where it found nobody; they are just not part of the walk
        kept = max(candidates, key=lambda k: float(k[:, 2].mean()))
        joints_in = max(joints_in, len(kept))
        if len(kept) == 18:
            kept = kept[list(OPENPOSE18_TO_COCO17)]
        dropped += len(candidates) - 1
        frames.append(int(match.group(2)))
        people.append(kept)
    if not people:
        raise KeypointImportError(f"{folder}: empty sequence (no frame with a person)")
    order = np.argsort(frames, kind="stable")
    frame_arr = np.array(frames, np.int64)[order]
    if len(np.unique(frame_arr)) != len(frame_arr):
        raise KeypointImportError(f"{folder}: two files give the same frame number")
    return RawKeypoints(np.stack(people)[order], frame_arr, joints_in, dropped)


# --------------------------------------------------------------------------------------- discovery, names


def discover(src: Path) -> list[KeypointSource]:
    """Every sequence under ``src``: pose pickles, results JSON files, folders of OpenPose frame files."""
    sources: list[KeypointSource] = []
    openpose: dict[Path, None] = {}  # folders of OpenPose frame files, in order
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        if path.suffix == ".pkl" and not path.name.startswith("float_"):
            # FastPoseGait's pose_<x>.pkl is stored as <x>, the name import-pkl gives its float_<x>.pkl partner
            name = path.stem[len("pose_"):] if path.stem.startswith("pose_") and len(path.stem) > 5 else path.stem
            sources.append(KeypointSource(path, "pickle", name))
        elif path.suffix == ".json":
            if _OPENPOSE_FRAME.match(path.name):
                openpose.setdefault(path.parent, None)
            else:
                sources.append(KeypointSource(path, "results", path.stem))
    for folder in openpose:
        view_seq = _OUMVLP_VIEW_SEQ.match(folder.name)
        sources.append(KeypointSource(folder, "openpose", view_seq.group(1) if view_seq else folder.name))
    return sorted(sources, key=lambda s: str(s.path))


def load_mapping(path: Path) -> dict[str, tuple[str, str, str]]:
    """A mapping CSV ``source, subject, condition, view`` -> {source: (subject, condition, view)}."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot read the mapping CSV ({exc})") from exc
    need = ("source", "subject", "condition", "view")
    if not rows or any(c not in rows[0] for c in need):
        raise ValueError(f"{path}: a mapping CSV needs a header with columns {', '.join(need)}")
    out = {}
    for n, row in enumerate(rows, start=2):
        values = [(row.get(c) or "").strip() for c in need]
        if not all(values):
            raise ValueError(f"{path}: line {n} has an empty {need[[not v for v in values].index(True)]}")
        if any("/" in v or "\\" in v or v in (".", "..") for v in values[1:]):
            raise ValueError(f"{path}: line {n}: subject, condition and view must be plain names")
        out[values[0]] = (values[1], values[2], values[3])
    return out


def name_source(source: KeypointSource, src: Path,
                mapping: dict[str, tuple[str, str, str]] | None) -> tuple[str, str, str]:
    """(subject, condition, view) of a source: mapping CSV, else dataset-style names, else the stem."""
    from gaitheat.extract import DEFAULT_CONDITION, DEFAULT_VIEW, parse_dataset_name

    rel = source.path.relative_to(src)
    if mapping is not None:
        for key in (rel.as_posix(), source.path.name, source.path.stem):
            if key in mapping:
                return mapping[key]
        raise KeypointImportError(f"{source.path}: not in the mapping CSV (looked for {rel.as_posix()!r})")
    if source.kind == "openpose":
        view_seq = _OUMVLP_VIEW_SEQ.match(source.path.name)
        if view_seq and len(rel.parts) >= 2:  # OUMVLP-Pose: <subject>/<view>_<seq>/
            return rel.parts[-2], view_seq.group(2), view_seq.group(1)
    if source.kind == "pickle" and len(rel.parts) >= 4:  # <subject>/<condition>/<view>/<name>.pkl, any names
        return rel.parts[-4], rel.parts[-3], rel.parts[-2]
    named = parse_dataset_name(source.path)
    if named:
        return named
    return source.path.stem, DEFAULT_CONDITION, DEFAULT_VIEW


# ------------------------------------------------------------------------------------------------- batch


def read_source(source: KeypointSource) -> RawKeypoints:
    """Decode one source (raises :class:`KeypointImportError`)."""
    if source.kind == "pickle":
        return read_pickle(source.path)
    if source.kind == "results":
        return read_results(source.path)
    files = sorted(p for p in source.path.iterdir() if _OPENPOSE_FRAME.match(p.name))
    return read_openpose_folder(source.path, files)


def import_keypoints(src: str | Path, store: str | Path, regen: bool = False, sigma: float = DEFAULT_SIGMA,
                     mapping: str | Path | None = None, overwrite: bool = False,
                     progress: bool = True) -> TransferSummary:
    """Import every keypoint sequence under ``src`` into ``store`` (see the module docstring).

    Args:
        src: a folder (searched recursively) or one file.
        store: store root to write.
        regen: also store regenerated heatmaps (:func:`gaitheat.regen.regenerate_sequence`).
        sigma: their Gaussian sigma in heatmap cells.
        mapping: CSV giving subject, condition and view per source.
        overwrite: replace sequences already in the store (default: skip them, so reruns resume).
        progress: report progress.
    Returns:
        written / skipped / failed (path -> reason).
    Raises:
        ValueError: ``src`` does not exist or the mapping CSV is unusable (before anything is written).
    """
    src, store = Path(src), Path(store)
    if not src.exists():
        raise ValueError(f"{src}: no such file or folder")
    table = load_mapping(Path(mapping)) if mapping is not None else None
    root = src if src.is_dir() else src.parent
    sources = discover(src) if src.is_dir() else [
        KeypointSource(src, "pickle" if src.suffix == ".pkl" else "results", src.stem)]
    summary = TransferSummary()
    claimed: dict[Path, Path] = {}
    with Progress(len(sources), desc="import-keypoints", unit="sequence", enabled=progress) as bar:
        for source in sources:
            bar.update()
            try:
                subject, condition, view = name_source(source, root, table)
                target = sequence_path(store, subject, condition, view, source.name)
                if target in claimed:
                    raise KeypointImportError(f"{source.path}: would be stored at {target}, like {claimed[target]} "
                                              "(give a --mapping CSV to tell them apart)")
                claimed[target] = source.path
                if target.exists() and not overwrite:
                    summary.skipped.append(str(target))
                    continue
                raw = read_source(source)
                seq = build_sequence(raw, subject, condition, view, str(source.path), source.kind, regen, sigma)
                write_sequence(target, seq)
            except (KeypointImportError, StoreError, OSError, ValueError, MemoryError) as exc:
                summary.failed[str(source.path)] = str(exc)
                log.debug("import-keypoints: %s", exc)
                continue
            summary.written.append(str(target))
    return summary
