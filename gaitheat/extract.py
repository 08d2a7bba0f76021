"""Video -> per-person heatmap sequences: detect, track, crop in RGB space, pose, filter.

One video (or frame folder) is processed frame by frame:

1. person proposals come from the previous frame's landmarks (each person's pose gives the next
   frame's box, as MediaPipe tracks) plus a box source (:mod:`gaitheat.detect`): the BlazePose detector
   every ``detect_every`` frames or whenever nobody is followed, MOG2 background subtraction, or a
   boxes file;
2. each proposal is padded 1.25x, grown to 3:4 and cropped (:mod:`gaitheat.crop`), and the pose
   backend returns heatmaps and a presence score; crops without a person are rejected;
3. boxes around the confident keypoints are de-duplicated and associated into tracks by ByteTrack
   (:mod:`gaitheat.track`);
4. per track, frames with mean joint score < 0.4 are dropped and tracks left shorter than
   ``min_frames`` are rejected (:mod:`gaitheat.quality`); each survivor becomes a
   :class:`~gaitheat.storage.HeatmapSequence` with its crop boxes and source-pixel keypoints.

The batch layer, :func:`extract_to_store`, writes sequences into the store, resumably.

Reproducibility: the same input and config give identical arrays and meta. Only
``SequenceMeta.created`` records wall-clock time; set ``created`` in the config, or the
``SOURCE_DATE_EPOCH`` environment variable (the reproducible-builds convention), to get
byte-identical files.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gaitheat.storage import HeatmapSequence, SequenceMeta

DEFAULT_CONDITION = "00"
DEFAULT_VIEW = "000"


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of ``gaitheat extract`` (YAML keys; ``--set key=value``).

    Attributes:
        pose: pose backend name (``blazepose`` or ``onnx``).
        pose_model: model file for the backend (required for ``onnx``).
        pose_threads: interpreter threads per process.
        flip_test: average with the mirrored crop's heatmaps (``onnx`` only, as mmpose's test config).
        detector: box source: ``blazepose``, ``mog2`` (fixed cameras) or ``boxes`` (needs ``boxes_file``).
        boxes_file: JSON/CSV person boxes per frame (see :class:`gaitheat.detect.BoxesFile`).
        detect_every: run the BlazePose detector every this many processed frames while people are followed
            (for single-subject dataset videos with ``main_track_only``: only when nobody is followed).
        detect_score: detector probability threshold (low: the pose presence score rejects false people).
        tiles: detector tiling: ``auto``, ``always`` or ``never``.
        tile_size: tile side in source pixels.
        reuse_landmarks: use each person's pose as the next frame's box.
        min_presence: pose presence probability below which a crop is not a person.
        crop_padding: box padding factor (1.25 in the paper).
        tracker: ``bytetrack`` or ``sort``.
        lost_seconds: how long a track waits for its person to reappear.
        dedupe_iou: IoU above which two poses in a frame are the same person.
        min_score: frames with a lower mean joint score are dropped (the paper's 0.4).
        min_frames: tracks with fewer frames left are not stored.
        frame_stride: process every n-th frame.
        max_frames: stop after this many source frames (None: whole video).
        main_track_only: for inputs with a dataset name (one subject per video), store only the
            longest track.
        created: fixed ``SequenceMeta.created``; "" means ``$SOURCE_DATE_EPOCH`` if set, else now.
    """

    pose: str = "blazepose"
    pose_model: str | None = None
    pose_threads: int = 1
    flip_test: bool = False
    detector: str = "blazepose"
    boxes_file: str | None = None
    detect_every: int = 10
    detect_score: float = 0.3
    tiles: str = "auto"
    tile_size: int = 192
    reuse_landmarks: bool = True
    min_presence: float = 0.5
    crop_padding: float = 1.25
    tracker: str = "bytetrack"
    lost_seconds: float = 1.0
    dedupe_iou: float = 0.5
    min_score: float = 0.4
    min_frames: int = 20
    frame_stride: int = 1
    max_frames: int | None = None
    main_track_only: bool = True
    created: str = ""

    def __post_init__(self) -> None:
        from gaitheat.pose import POSE_BACKENDS
        from gaitheat.track import TRACKERS

        choices = {"pose": tuple(POSE_BACKENDS), "detector": ("blazepose", "mog2", "boxes"),
                   "tiles": ("auto", "always", "never"), "tracker": TRACKERS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.detector == "boxes" and not self.boxes_file:
            raise ValueError("detector 'boxes' needs boxes_file")
        if self.detect_every < 1 or self.frame_stride < 1 or self.min_frames < 1:
            raise ValueError("detect_every, frame_stride and min_frames must be >= 1")


@dataclass
class TrackSequence:
    """One followed person: ``sequence`` holds the kept frames, ``dropped`` the quality record."""

    track_id: int
    sequence: HeatmapSequence
    dropped: dict[str, Any] = field(default_factory=dict)


@dataclass
class VideoReport:
    """Everything :func:`extract_video_report` found in one source."""

    source: str
    frames: int
    tracks: list[TrackSequence]
    rejected_tracks: list[dict[str, Any]]
    person_frames: int = 0  # pose calls that found a person
    expected_frames: int = 0  # what the container announced (after max_frames and frame_stride)


# ------------------------------------------------------------------------------------ dataset naming

_CASIA_B = (r"\d{3}", r"(?:nm|bg|cl)-\d{2}", r"\d{3}")
_CCPG = (r"\d{3}", r"U\d_D\d(?:_BG)?", r"[0-9A-Za-z_]+")
_SUSTECH1K = (r"\d{4}", r"\d{2}-[a-z]{2}(?:-[a-z0-9]+)*", r"\d{3}")
_CASIA_B_STEM = re.compile(r"^(\d{3})-((?:nm|bg|cl)-\d{2})-(\d{3})$")


def parse_dataset_name(path: str | Path) -> tuple[str, str, str] | None:
    """(subject, condition, view) of a benchmark video or frame folder, or None if it has no such name.

    Recognised: CASIA-B ``001-nm-01-090.avi`` (or a folder of that name), and the
    ``<subject>/<condition>/<view>`` trees of CASIA-B (``001/nm-01/090``), CCPG (``000/U0_D0_BG/01``)
    and SUSTech1K (``0000/00-nm/000``), for frame folders and for videos inside the view folder.
    """
    path = Path(path)
    match = _CASIA_B_STEM.match(path.stem if path.suffix else path.name)
    if match:
        return match.group(1), match.group(2), match.group(3)
    folder = path if not path.suffix else path.parent
    parts = folder.parts[-3:]
    if len(parts) == 3:
        for pattern in (_CASIA_B, _CCPG, _SUSTECH1K):
            if all(re.fullmatch(p, v) for p, v in zip(pattern, parts, strict=True)):
                return parts[0], parts[1], parts[2]
    return None


def created_stamp(configured: str = "") -> str:
    """``configured``, else ``$SOURCE_DATE_EPOCH`` as ISO-8601 UTC, else now."""
    if configured:
        return configured
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    moment = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch.isdigit()
              else _dt.datetime.now(_dt.timezone.utc))
    return moment.isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------- components


def build_box_source(cfg: ExtractConfig):  # type: ignore[no-untyped-def]
    """The :class:`gaitheat.detect.BoxSource` named by ``cfg`` (fresh: MOG2 and trackers hold state)."""
    from gaitheat import detect

    if cfg.boxes_file:
        return detect.BoxesFile(cfg.boxes_file)
    if cfg.detector == "mog2":
        return detect.BackgroundSubtractionDetector()
    return detect.BlazePoseDetector(score_threshold=cfg.detect_score, tiles=cfg.tiles, tile_size=cfg.tile_size,
                                    num_threads=cfg.pose_threads)


def build_pose(cfg: ExtractConfig):  # type: ignore[no-untyped-def]
    """The pose backend named by ``cfg``."""
    from gaitheat.pose import build_pose_backend

    kwargs: dict[str, Any] = {"num_threads": cfg.pose_threads}
    if cfg.pose == "onnx":
        kwargs["flip_test"] = cfg.flip_test
    return build_pose_backend(cfg.pose, cfg.pose_model, **kwargs)


# ------------------------------------------------------------------------------------ one video


def extract_video(source: str | Path, cfg: ExtractConfig | None = None, *, pose: Any = None,
                  boxes: Any = None) -> list[TrackSequence]:
    """Per-person heatmap sequences of one video, frame folder or image.

    Args:
        source: video file, folder of frame images, or one image.
        cfg: settings (defaults when None).
        pose: a ready :class:`gaitheat.pose.PoseBackend` to re-use across videos (built from ``cfg`` if None).
        boxes: a ready box source (built from ``cfg`` if None; must be fresh per video).
    Returns:
        the kept tracks, each with boxes and source-pixel keypoints filled, ordered by track id.
    Raises:
        gaitheat.video.VideoError: if the source cannot be decoded.
    """
    return extract_video_report(source, cfg, pose=pose, boxes=boxes).tracks


def extract_video_report(source: str | Path, cfg: ExtractConfig | None = None, *, pose: Any = None,
                         boxes: Any = None, on_frame: Callable[[int], None] | None = None) -> VideoReport:
    """:func:`extract_video` plus what was rejected and counts (for summaries and benchmarks)."""
    from gaitheat.track import PersonTracker, TrackCollector
    from gaitheat.video import decode_frames, prefetch, probe_source

    cfg = cfg or ExtractConfig()
    source = Path(source)
    info = probe_source(source)
    pose = pose if pose is not None else build_pose(cfg)
    boxes = boxes if boxes is not None else build_box_source(cfg)
    fps = info.fps / cfg.frame_stride if info.fps > 0 else 25.0
    tracker = PersonTracker(cfg.tracker, fps=fps, lost_seconds=cfg.lost_seconds)
    tracks = TrackCollector()
    carried = np.zeros((0, 5), np.float32)  # previous frame's pose boxes
    frames = person_frames = 0
    # A benchmark video shows one subject: once it is followed, re-detect only when it is lost.
    periodic = not (cfg.main_track_only and parse_dataset_name(source) is not None)
    for step, frame in enumerate(prefetch(decode_frames(source, 0, cfg.max_frames, cfg.frame_stride))):
        frames += 1
        run_detector = boxes.every_frame or len(carried) == 0 or (periodic and step % cfg.detect_every == 0)
        detected = boxes(frame.rgb, frame.index) if run_detector else np.zeros((0, 5), np.float32)
        found = _estimate_people(frame.rgb, carried if cfg.reuse_landmarks else carried[:0], detected, pose, cfg)
        person_frames += len(found["boxes"])
        # A still image has nobody to follow: each person is its own one-frame track.
        ids = np.arange(len(found["boxes"])) if info.kind == "image" else tracker.update(found["boxes"])
        tracks.add_frame(frame.index, found, ids)
        carried = found["boxes"]
        if on_frame is not None:
            on_frame(frame.index)
    announced = min(info.num_frames, cfg.max_frames or info.num_frames)
    report = VideoReport(str(source), frames, [], [], person_frames, -(-announced // cfg.frame_stride))
    _finish_tracks(report, tracks, source, info, pose, cfg)
    return report


def _estimate_people(rgb: np.ndarray, carried: np.ndarray, detected: np.ndarray, pose: Any,
                     cfg: ExtractConfig) -> dict[str, np.ndarray]:
    """Pose every proposal, keep people, de-duplicate. Rows of all outputs correspond."""
    from gaitheat.crop import crop_person, heatmap_to_image, keypoints_box, pad_box
    from gaitheat.detect import nms

    # Carried boxes come from last frame's pose and fit better than detector boxes, so they win NMS.
    proposals = np.concatenate([carried + np.array([0, 0, 0, 0, 1], np.float32), detected]).reshape(-1, 5)
    proposals = proposals[nms(proposals[:, :4], proposals[:, 4], cfg.dedupe_iou)] if len(proposals) else proposals
    crop_boxes = pad_box(proposals[:, :4], cfg.crop_padding).reshape(-1, 4)
    h, w = pose.input_size
    crops = np.stack([crop_person(rgb, b, (h, w))[0] for b in crop_boxes]) if len(crop_boxes) else \
        np.zeros((0, h, w, 3), np.uint8)
    result = pose(crops)
    hm_hw = result.heatmaps.shape[2:]
    image_kps = heatmap_to_image(result.keypoints, crop_boxes, hm_hw) if len(crop_boxes) else \
        np.zeros((0, 17, 3), np.float32)
    person_boxes, rows = [], []
    for i in range(len(crop_boxes)):
        if result.presence[i] < cfg.min_presence:
            continue
        box = keypoints_box(image_kps[i])
        if box is None:
            continue
        person_boxes.append(np.append(box, result.presence[i]))
        rows.append(i)
    sel = np.array(rows, np.int64)
    pboxes = np.array(person_boxes, np.float32).reshape(-1, 5)
    if len(sel):
        # Two proposals that converged on one person: keep the pose with the higher mean joint score.
        keep = nms(pboxes[:, :4], result.keypoints[sel, :, 2].mean(axis=1), cfg.dedupe_iou)
        keep.sort()
        sel, pboxes = sel[keep], pboxes[keep]
    return {"boxes": pboxes, "heatmaps": result.heatmaps[sel], "keypoints": result.keypoints[sel],
            "crop_boxes": crop_boxes[sel], "image_keypoints": image_kps[sel], "presence": result.presence[sel]}


def _finish_tracks(report: VideoReport, tracks: Any, source: Path, info: Any, pose: Any,
                   cfg: ExtractConfig) -> None:
    """Quality-filter each collected track (:class:`~gaitheat.track.TrackCollector`) into ``report``."""
    from gaitheat.quality import filter_frames, frame_scores

    named = parse_dataset_name(source)
    subject, condition, view = named or (source.stem, DEFAULT_CONDITION, DEFAULT_VIEW)
    created = created_stamp(cfg.created)
    for track_id in tracks.track_ids:
        frames, rows = tracks.stacked(track_id)
        quality = filter_frames(frame_scores(rows["keypoints"]), frames, cfg.min_score, cfg.min_frames)
        if not quality.accepted:
            report.rejected_tracks.append({"track_id": track_id, "frames": len(frames),
                                           "reason": quality.record["rejected"]})
            continue
        keep = quality.keep
        meta = SequenceMeta(
            subject=subject, condition=condition, view=view, source=str(source.resolve()),
            pose_model=pose.name, pose_model_sha256=pose.sha256, crop_padding=cfg.crop_padding, created=created,
            extra={"track_id": track_id, "quality": quality.record, "fps": info.fps, "frame_stride": cfg.frame_stride,
                   "frame_size": [info.width, info.height], "detector": cfg.detector if not cfg.boxes_file else "boxes",
                   "tracker": cfg.tracker, "presence_mean": round(float(rows["presence"][keep].mean()), 4)})
        seq = HeatmapSequence(
            heatmaps=rows["heatmaps"][keep], keypoints=rows["keypoints"][keep], frame_indices=frames[keep], meta=meta,
            boxes=rows["crop_boxes"][keep].astype(np.float32),
            image_keypoints=rows["image_keypoints"][keep].astype(np.float32))
        report.tracks.append(TrackSequence(track_id, seq, quality.record))
    if named and cfg.main_track_only and len(report.tracks) > 1:
        # A benchmark video shows one subject: keep its longest track, report the rest.
        main = max(report.tracks, key=lambda ts: (ts.sequence.num_frames, -ts.track_id))
        for ts in report.tracks:
            if ts is not main:
                report.rejected_tracks.append({"track_id": ts.track_id, "frames": ts.sequence.num_frames,
                                               "reason": "not the main walker of a single-subject dataset video"})
        report.tracks = [main]


# ------------------------------------------------------------------------------------ batch / store

DONE_DIR = ".extract-done"  # per-input done markers, under the store root (no .ghs inside)


def discover_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Expand INPUT arguments into sources: videos, images, frame folders (searched recursively), sorted.

    A folder with images directly inside is one frame-folder source; otherwise its tree is searched
    for videos and frame folders. A path that does not exist is kept, so it is reported as a failure.
    """
    from gaitheat.video import VIDEO_SUFFIXES, frame_files

    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            found.append(path)
            continue
        for folder, dirs, files in os.walk(path):
            # Hidden entries are temporaries of atomic writers (``.x.tmp-*.avi``) or our done markers.
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files = [f for f in files if not f.startswith(".")]
            here = Path(folder)
            if files and frame_files(here):
                found.append(here)
                dirs.clear()
                continue
            found.extend(here / f for f in sorted(files) if Path(f).suffix.lower() in VIDEO_SUFFIXES)
    return sorted(dict.fromkeys(found), key=str)


def shard_inputs(inputs: list[Path], shard: tuple[int, int]) -> list[Path]:
    """Shard ``i`` of ``n`` (0-based): every n-th input, so shards are balanced and disjoint."""
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {index}/{count}")
    return inputs[index::count]


def _config_digest(cfg: ExtractConfig) -> str:
    import hashlib
    import json

    from gaitheat.config import to_dict

    data = to_dict(cfg)
    data.pop("created", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _marker_path(root: Path, source: Path) -> Path:
    import hashlib

    return root / DONE_DIR / f"{hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:20]}.json"


def _target(root: Path, source: Path, track: TrackSequence, named: bool) -> Path:
    from gaitheat.storage import sequence_path

    meta = track.sequence.meta
    name = "heatmaps" if named else f"track-{track.track_id:03d}"
    return sequence_path(root, meta.subject, meta.condition, meta.view, name)


_WORKER: dict[str, Any] = {}


def _worker_init(cfg: ExtractConfig, pooled: bool = False) -> None:
    # One pose model per process, loaded once and re-used for every video it handles.
    if pooled:
        import cv2

        # Processes are the parallelism; OpenCV's own thread pool per process would oversubscribe the cores.
        cv2.setNumThreads(1)
    _WORKER["cfg"], _WORKER["pose"] = cfg, build_pose(cfg)


def _process_input(source: Path, root: Path) -> dict[str, Any]:
    return extract_one_to_store(source, root, _WORKER["cfg"], pose=_WORKER["pose"])


def extract_one_to_store(source: Path, root: Path, cfg: ExtractConfig, *, pose: Any = None,
                         boxes: Any = None) -> dict[str, Any]:
    """Extract one source into the store and mark it done; returns its summary record.

    Bad input never raises: the record gets ``status="failed"`` and an ``error`` naming the file.
    ``pose`` / ``boxes`` are passed to :func:`extract_video_report` (built from ``cfg`` when None).
    """
    import json

    from gaitheat.atomic import atomic_write_text
    from gaitheat.detect import BoxesFileError
    from gaitheat.storage import StoreError, write_sequence
    from gaitheat.video import VideoError

    record: dict[str, Any] = {"source": str(source), "status": "failed"}
    try:
        report = extract_video_report(source, cfg, pose=pose, boxes=boxes)
    except (VideoError, BoxesFileError, OSError, ValueError) as exc:
        record["error"] = str(exc)
        return record
    record.update(frames=report.frames, person_frames=report.person_frames, rejected_tracks=report.rejected_tracks)
    if report.frames < report.expected_frames:
        record["warning"] = (f"{source}: decoded {report.frames} of the {report.expected_frames} frames the file "
                             "announces (truncated or corrupt after that point)")
    if not report.tracks:
        reasons = "; ".join(f"track {r['track_id']}: {r['reason']}" for r in report.rejected_tracks[:5])
        record["error"] = (f"{source}: no person sequence found in {report.frames} frames"
                           + (f" ({reasons})" if reasons else " (no person detected)"))
        return record
    named = parse_dataset_name(source) is not None
    written = []
    try:
        for track in report.tracks:
            path = _target(root, source, track, named)
            write_sequence(path, track.sequence)
            written.append(path.relative_to(root).as_posix())
    except StoreError as exc:
        record["error"] = str(exc)
        return record
    kept = sum(t.sequence.num_frames for t in report.tracks)
    dropped = sum(t.dropped["frames_dropped"] for t in report.tracks)
    record.update(status="done", sequences=written, frames_kept=kept, frames_dropped=dropped,
                  tracks=len(report.tracks))
    # The marker is written last: a kill before it means the input is redone (same bytes, atomically).
    atomic_write_text(_marker_path(root, source), json.dumps({**record, "config": _config_digest(cfg)}, indent=1))
    return record


def _finished(root: Path, source: Path, cfg: ExtractConfig) -> dict[str, Any] | None:
    import json

    marker = _marker_path(root, source)
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if data.get("config") != _config_digest(cfg) or not all((root / p).is_file() for p in data.get("sequences", [])):
        return None
    return {**data, "status": "skipped"}


def extract_to_store(inputs: Sequence[str | Path], out_root: str | Path, cfg: ExtractConfig | None = None,
                     workers: int = 1, shard: tuple[int, int] = (0, 1), progress: bool = False) -> dict[str, Any]:
    """Extract many sources into the store at ``out_root``, resumably.

    Finished inputs (a done marker written after all their sequences, with the same config) are
    skipped; sequence files are written atomically, so a killed run leaves only complete files and a
    rerun finishes the job. Bad inputs are recorded with their reason and the batch goes on.

    Args:
        inputs: videos, images, frame folders or trees of them (:func:`discover_inputs`).
        out_root: store root.
        cfg: settings (defaults when None).
        workers: processes on this machine (each loads its own pose model).
        shard: ``(i, n)``: handle only shard i of n of the sorted inputs (for Slurm arrays, torchrun, ...).
        progress: show a tqdm bar on stderr.
    Returns:
        summary dict: counts (videos, done, skipped, failed, tracks, frames kept/dropped) and per-input records.
    """
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    from tqdm import tqdm

    cfg = cfg or ExtractConfig()
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    everything = discover_inputs(list(inputs))
    clashes = _clashes(everything)  # over all inputs, so every shard agrees
    sources = shard_inputs(everything, shard)
    records: dict[Path, dict[str, Any]] = {}
    todo = []
    for source in sources:
        if source in clashes:
            records[source] = {"source": str(source), "status": "failed", "error": clashes[source]}
            continue
        done = _finished(root, source, cfg)
        if done is not None:
            records[source] = done
        else:
            todo.append(source)
    bar = tqdm(total=len(sources), initial=len(records), desc="extract", unit="video", disable=not progress)
    if workers <= 1 or len(todo) <= 1:
        _worker_init(cfg)
        for source in todo:
            records[source] = _process_input(source, root)
            bar.update()
    else:
        # spawn, not fork: LiteRT's thread pools do not survive a fork.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init,
                                 initargs=(cfg, True)) as pool:
            futures = {source: pool.submit(_process_input, source, root) for source in todo}
            for source, future in futures.items():
                try:
                    records[source] = future.result()
                except BrokenProcessPool as exc:
                    # A worker died (killed, out of memory, crashed in native code): report, don't mark done.
                    records[source] = {"source": str(source), "status": "failed",
                                       "error": f"{source}: worker process died ({exc}); rerun to retry"}
                bar.update()
    bar.close()
    ordered = [records[s] for s in sources]
    return _summarise(ordered, shard)


def _clashes(sources: list[Path]) -> dict[Path, str]:
    """Sources whose sequences would land on an earlier source's store paths, with the reason."""
    first: dict[tuple[str, ...], Path] = {}
    out = {}
    for source in sources:
        named = parse_dataset_name(source)
        key = named if named is not None else (source.stem if source.suffix else source.name,)
        if key in first:
            out[source] = (f"{source}: would write the same store sequences as {first[key]} "
                           f"({'/'.join(key)}); rename one or extract them into different stores")
        else:
            first[key] = source
    return out


def _summarise(records: list[dict[str, Any]], shard: tuple[int, int]) -> dict[str, Any]:
    ok = [r for r in records if r["status"] in ("done", "skipped")]
    return {
        "shard": f"{shard[0]}/{shard[1]}",
        "videos": len(records),
        "done": sum(r["status"] == "done" for r in records),
        "skipped": sum(r["status"] == "skipped" for r in records),
        "failed": sum(r["status"] == "failed" for r in records),
        "tracks": sum(r.get("tracks", 0) for r in ok),
        "frames_kept": sum(r.get("frames_kept", 0) for r in ok),
        "frames_dropped": sum(r.get("frames_dropped", 0) for r in ok),
        "failures": [{"source": r["source"], "error": r["error"]} for r in records if r["status"] == "failed"],
        "inputs": records,
    }
