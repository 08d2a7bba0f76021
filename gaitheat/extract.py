"""Video -> per-person heatmap sequences: detect, track, crop in RGB space, pose, filter.

One video (or frame folder) is processed frame by frame:

1. person proposals come from the previous frame's landmarks (each person's pose gives the next
   frame's box, as MediaPipe tracks) plus a box source (:mod:`gaitheat.detect`): the BlazePose
   detector (scheduled by :class:`gaitheat.detect.DetectionSchedule`: the whole frame and its tiles whenever nobody
   is followed, otherwise one search of the frame spread over ``detect_every`` frames plus a search
   around anyone just lost), MOG2 background subtraction, or a boxes file;
2. each proposal is padded 1.25x, grown to 3:4 and cropped (:mod:`gaitheat.crop`), and the pose
   backend returns heatmaps and a presence score; crops without a person are rejected; then the people
   found are painted out of the frame and the detector searches around each of them for someone they
   hide, who is posed on the painted frame (``search_behind``, multi-person videos);
3. boxes around the confident keypoints are de-duplicated and associated into tracks by ByteTrack
   (:mod:`gaitheat.track`);
4. per track, frames with mean joint score < 0.4 are dropped and tracks left shorter than
   ``min_frames`` are rejected (:mod:`gaitheat.quality`); each survivor becomes a
   :class:`~gaitheat.storage.HeatmapSequence` with its crop boxes and source-pixel keypoints.

The batch layer, :func:`gaitheat.extract_store.extract_to_store`, writes sequences into the store,
resumably and in parallel; it imports this module, never the reverse.

Reproducibility: the same input and config give identical arrays and meta. Only
``SequenceMeta.created`` records wall-clock time; set ``created`` in the config, or the
``SOURCE_DATE_EPOCH`` environment variable (the reproducible-builds convention), to get
byte-identical files.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gaitheat.storage import HeatmapSequence, SequenceMeta

__all__ = ["ExtractConfig", "TrackSequence", "VideoReport", "build_box_source", "build_pose", "created_stamp",
           "extract_video", "extract_video_report", "parse_dataset_name"]

DEFAULT_CONDITION = "00"
DEFAULT_VIEW = "000"


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of ``gaitheat extract`` (YAML keys; ``--set key=value``).

    Attributes:
        pose: pose backend name (``blazepose`` or ``onnx``).
        pose_model: model file for the backend (required for ``onnx``).
        pose_threads: interpreter threads per process.
        detector_thread: run the box source on its own thread while the carried people are posed, and
            split whole-frame searches (nobody followed) between that thread and the caller (the same
            output either way). Worth it with a core to spare: off where the process may use only one
            core (its affinity mask: ``taskset``, Slurm, cpusets), and ``--workers`` pools that fill the
            cores turn it off in their processes.
        flip_test: average with the mirrored crop's heatmaps (``onnx`` only, as mmpose's test config).
        detector: box source: ``blazepose``, ``mog2`` (fixed cameras) or ``boxes`` (needs ``boxes_file``).
        boxes_file: JSON/CSV person boxes per frame (see :class:`gaitheat.detect.BoxesFile`).
        detect_every: while people are followed, the BlazePose detector's search of the whole frame
            (letterboxed view + tiles) is spread round-robin over this many processed frames, at a small,
            even cost per frame: every view is searched once in any ``detect_every`` consecutive frames, so
            someone who enters is picked up within ``detect_every`` frames of being detectable in one view
            (1.2 s at 25 fps; 3 s in the 10 fps vtest.avi). Other box sources run every this many frames.
            Whenever nobody is followed the whole frame is searched at once. For single-subject dataset
            videos with ``main_track_only``: only then.
        redetect_lost: for this many frames after a person is lost (their last box found nobody), the
            detector also searches a square around where they were last seen (0: leave it to the sweep).
        search_hidden: when a followed person goes behind another (their crop finds the other person),
            search around the two of them every frame for ``lost_seconds`` until they are found again,
            and count those frames as crowded for the person in front (see ``drop_crowded``).
        detect_score: detector probability threshold (low: the pose presence score rejects false people).
        tiles: detector tiling: ``auto``, ``always`` or ``never``.
        tile_size: tile side in source pixels.
        reuse_landmarks: use each person's pose as the next frame's box.
        min_presence: pose presence probability below which a crop is not a person.
        crop_padding: box padding factor (1.25 in the paper).
        tracker: ``bytetrack`` or ``sort``.
        search_behind: look for people hidden beside or behind each found person, who neither the detector nor
            the pose model sees while the person in front is in view: paint the found people out of the frame
            (:func:`gaitheat.crop.erase_people`), search a square around each of them with the BlazePose detector
            and pose what it finds (and anyone followed whose crop found the person in front) on the painted frame.
            Around each person every this many processed frames (0: never). Such pairs then mark each other's
            frames crowded (``drop_crowded``). Needs the pose model's person masks (BlazePose); never for
            single-subject dataset videos (``main_track_only``), whose outputs stay as they were.
        relink: after tracking, cut tracks where they jumped to another person (the walk reverses, as when
            two people cross) and join pieces of one walk across gaps up to ``lost_seconds``
            (:func:`gaitheat.track.relink`). Not for single-subject dataset videos (``main_track_only``),
            whose outputs stay as they were (it would join a broken walk there too).
        lost_seconds: how long a track waits for its person to reappear.
        dedupe_iou: IoU above which two poses in a frame are the same person.
        min_score: frames with a lower mean joint score are dropped (the paper's 0.4).
        min_frames: tracks with fewer frames left are not stored.
        frame_stride: process every n-th frame.
        max_frames: stop after this many source frames (None: whole video).
        main_track_only: for inputs with a dataset name (one subject per video), store only the
            longest track.
        drop_crowded: drop the frames whose person box holds another found person (at least
            ``crowd_joints`` of their confident joints): a crop holding two people mixes their heatmaps.
        crowd_joints: see ``drop_crowded``.
        tracks_out: folder to write each input's tracks to as MOTChallenge text (``<input stem>.txt``):
            the person's whole-body box (around the pose model's person mask, else around the joints) in
            every frame the tracker gave each stored track, the frames dropped from the sequence included, and of
            each track rejected only for crowding (too few frames clear of other people: a person followed, but no
            gait sequence) ("" writes nothing).
        created: fixed ``SequenceMeta.created``; "" means ``$SOURCE_DATE_EPOCH`` if set, else now.
        silhouettes: also store each frame's OpenGait-style silhouette ``(64, 44)``, aligned from the
            pose model's own person mask (:mod:`gaitheat.silhouettes`; BlazePose only: the ``onnx``
            backend has no mask, so its sequences have no silhouette section whatever this says).
    """

    pose: str = "blazepose"
    pose_model: str | None = None
    pose_threads: int = 1
    detector_thread: bool = True
    flip_test: bool = False
    detector: str = "blazepose"
    boxes_file: str | None = None
    detect_every: int = 30
    redetect_lost: int = 1
    search_hidden: bool = True
    search_behind: int = 1
    relink: bool = True
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
    drop_crowded: bool = True
    crowd_joints: int = 4
    tracks_out: str = ""
    created: str = ""
    silhouettes: bool = True

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
        if self.redetect_lost < 0 or self.search_behind < 0:
            raise ValueError("redetect_lost and search_behind must be >= 0")


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
    # MOTChallenge rows (N, 9) of the people followed: the stored tracks and those rejected only because too few of
    # their frames were clear of other people; every frame the tracker gave them, id = track_id + 1, with the
    # whole-body box (around the person mask; the person box without one)
    track_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 9)))


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


def build_behind_detector(cfg: ExtractConfig):  # type: ignore[no-untyped-def]
    """The BlazePose detector of ``search_behind`` (its own interpreter), or None when that search is off."""
    from gaitheat import detect

    if cfg.search_behind < 1 or cfg.pose != "blazepose":  # the search paints out the pose model's person masks
        return None
    return detect.BlazePoseDetector(score_threshold=BEHIND_SCORE, tiles="never", num_threads=cfg.pose_threads)


# Detector probability for people found behind others. On the crowd benchmark's scenes 0.3 (the sweep's) found 2
# more hidden people than 0.5 (147 against 145 of 349 missed) and 5 more false ones (8 against 3).
BEHIND_SCORE = 0.5


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
    from gaitheat.cores import available_cores
    from gaitheat.detect import DetectionSchedule
    from gaitheat.track import BackgroundTracks, PersonTracker, TrackCollector
    from gaitheat.video import decode_frames, prefetch, probe_source

    cfg = cfg or ExtractConfig()
    source = Path(source)
    info = probe_source(source)
    pose = pose if pose is not None else build_pose(cfg)
    boxes = boxes if boxes is not None else build_box_source(cfg)
    fps = info.fps / cfg.frame_stride if info.fps > 0 else 25.0
    still = TrackCollector()  # a still image has nobody to follow: each person is its own one-frame track
    carried = np.zeros((0, 5), np.float32)  # previous frame's pose boxes
    frames = person_frames = 0
    # A benchmark video shows one subject: once it is followed, re-detect only when it is lost.
    periodic = not (cfg.main_track_only and parse_dataset_name(source) is not None)
    hidden = round(fps * cfg.lost_seconds) if cfg.search_hidden else 0
    schedule = DetectionSchedule(boxes, cfg.detect_every, periodic, cfg.redetect_lost, hidden)
    behind = build_behind_detector(cfg) if periodic and info.kind != "image" else None
    threaded = cfg.detector_thread and available_cores() > 1  # on one core a second thread only adds switching
    # The detector searches each frame on its own thread while this one poses the people carried over
    # from the last frame (LiteRT releases the GIL): on two cores its time mostly disappears.
    # Association runs on its own thread too, behind the frames (it also imports trackers there).
    with contextlib.ExitStack() as stack:
        detector_thread = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="gaitheat-detect"))
        tracks = None if info.kind == "image" else stack.enter_context(
            BackgroundTracks(lambda: PersonTracker(cfg.tracker, fps=fps, lost_seconds=cfg.lost_seconds)))
        for step, frame in enumerate(prefetch(decode_frames(source, 0, cfg.max_frames, cfg.frame_stride))):
            frames += 1
            if threaded and len(carried) == 0:
                # Nobody to pose until the detector is done: this thread searches half of its views.
                detected: Any = schedule(frame.rgb, frame.index, step, carried, helper=detector_thread)
            elif threaded:
                detected = detector_thread.submit(schedule, frame.rgb, frame.index, step, carried).result
            else:
                detected = schedule(frame.rgb, frame.index, step, carried)
            followed = carried if cfg.reuse_landmarks else carried[:0]
            found = _estimate_people(frame.rgb, followed, detected, pose, cfg, keep_masks=behind is not None)
            if behind is not None:
                found = _search_behind(frame.rgb, found, followed, pose, behind, cfg, step,
                                       detector_thread if threaded else None)
            schedule.update(carried, found["boxes"])
            if len(schedule.hidden) and len(found["boxes"]):
                # someone just went behind this person: their crop holds two people
                found["crowded"] = found["crowded"] | _covers(found["boxes"], schedule.hidden)
            person_frames += len(found["boxes"])
            if tracks is None:
                still.add_frame(frame.index, found, np.arange(len(found["boxes"])))
            else:
                tracks.add_frame(frame.index, found)
            carried = found["boxes"]
            if on_frame is not None:
                on_frame(frame.index)
    announced = min(info.num_frames, cfg.max_frames or info.num_frames)
    report = VideoReport(str(source), frames, [], [], person_frames, -(-announced // cfg.frame_stride))
    collected = still if tracks is None else tracks.finish()
    if tracks is not None and cfg.relink and periodic:  # single-subject dataset videos: as they were
        from gaitheat.track import relink

        collected = relink(collected, fps, max(1, round(fps * cfg.lost_seconds)))
    _finish_tracks(report, collected, source, info, pose, cfg)
    return report


_SAME_BOX_IOU = 0.9  # boxes overlapping more than this show the same person whatever their poses


def _covers(boxes: np.ndarray, hidden: np.ndarray, share: float = 0.3) -> np.ndarray:
    """``(N,)`` bool: person box ``i`` covers at least ``share`` of one of the ``hidden`` boxes ``(K, 4)``."""
    b, h = boxes[:, None, :4], hidden[None, :, :4]
    iw = np.clip(np.minimum(b[..., 2], h[..., 2]) - np.maximum(b[..., 0], h[..., 0]), 0, None)
    ih = np.clip(np.minimum(b[..., 3], h[..., 3]) - np.maximum(b[..., 1], h[..., 1]), 0, None)
    area = np.maximum((h[..., 2] - h[..., 0]) * (h[..., 3] - h[..., 1]), 1e-6)
    return np.any(iw * ih / area >= share, axis=1)


def _already_followed(detected: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """``(N,)`` mask of detector boxes that show someone already followed: nearly the same box as a carried
    one (centres within a fifth of its width and a tenth of its height, heights within 0.8-1.25x). A person
    beside or behind someone, whose box overlaps theirs but is shifted or of another size (depth), is posed
    in a crop of their own; if that crop still finds the followed person, the two poses are merged.
    """
    if len(detected) == 0 or len(carried) == 0:
        return np.zeros(len(detected), bool)
    d, c = detected[:, None, :4], carried[None, :, :4]
    dx = np.abs((d[..., 0] + d[..., 2]) - (c[..., 0] + c[..., 2])) / 2
    dy = np.abs((d[..., 1] + d[..., 3]) - (c[..., 1] + c[..., 3])) / 2
    cw, ch = np.maximum(c[..., 2] - c[..., 0], 1e-6), np.maximum(c[..., 3] - c[..., 1], 1e-6)
    ratio = (d[..., 3] - d[..., 1]) / ch
    return np.any((dx <= 0.2 * cw) & (dy <= 0.1 * ch) & (ratio >= 0.8) & (ratio <= 1.25), axis=1)


def _estimate_people(rgb: np.ndarray, carried: np.ndarray, detected: np.ndarray | Callable[[], np.ndarray],
                     pose: Any, cfg: ExtractConfig, keep_masks: bool = False) -> dict[str, np.ndarray]:
    """Pose every proposal, keep people, de-duplicate. Rows of all outputs correspond.

    ``detected`` may be a callable that waits for the detector's boxes; the carried people are posed
    before it is called. The result is the same either way. ``keep_masks`` adds the kept people's person
    masks over their crops (``masks``, when the pose model gives them), for :func:`_search_behind`.
    """
    from gaitheat.crop import crowded, pad_box
    from gaitheat.detect import iou_matrix, nms
    from gaitheat.pose.base import concat_results

    # Carried boxes come from last frame's pose and fit better than detector boxes, so they win NMS:
    # scored above every detection, they are kept (or not) whatever was detected, and come first.
    carried = carried.reshape(-1, 5) + np.array([0, 0, 0, 0, 1], np.float32)
    # Carried boxes are poses already merged by their joints: two of them overlapping are two people (one
    # behind the other), so only near-identical boxes merge here.
    first = carried[nms(carried[:, :4], carried[:, 4], _SAME_BOX_IOU)] if len(carried) else carried
    first_crops = pad_box(first[:, :4], cfg.crop_padding).reshape(-1, 4)
    result = pose(_crops(rgb, first_crops, pose.input_size))
    boxes: np.ndarray = detected() if callable(detected) else detected
    boxes = boxes[~_already_followed(boxes, carried)]
    # Detections among themselves merge as before; against the carried people only near-identical boxes do,
    # so someone overlapping a followed person (beside or behind them) gets a crop of their own.
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], cfg.dedupe_iou)] if len(boxes) else boxes
    if len(boxes) and len(first):
        boxes = boxes[iou_matrix(boxes[:, :4], first[:, :4]).max(axis=1) <= _SAME_BOX_IOU]
    proposals = np.concatenate([first, boxes]).reshape(-1, 5)
    crop_boxes = pad_box(proposals[:, :4], cfg.crop_padding).reshape(-1, 4)
    if not np.array_equal(crop_boxes[: len(first_crops)], first_crops):  # the NMS argument above
        raise AssertionError("carried people must lead the proposals")
    if len(crop_boxes) > len(first_crops):
        result = concat_results(result, pose(_crops(rgb, crop_boxes[len(first_crops):], pose.input_size)))
    image_kps, sel, pboxes = _posed_people(result, crop_boxes, cfg.min_presence)
    if len(sel):
        # Two proposals that converged on one person (overlapping boxes, the same joints): keep the pose
        # with the higher mean joint score. Overlapping boxes with different joints are two people.
        # A carried person's pose wins over a detection's that found them again (the same output as before
        # such detections were posed at all).
        # Among carried people whose crops found the same person (one went behind the other), the one whose
        # box moved least keeps the pose: the person in front stays in their own track.
        score = result.keypoints[sel, :, 2].mean(axis=1)
        own = np.diag(iou_matrix(pboxes[:, :4], proposals[sel, :4])) if len(sel) else score
        priority = np.where(sel < len(first_crops), 2.0 + own + 1e-3 * score, score)
        keep = _dedupe_poses(pboxes, image_kps[sel], priority, cfg.dedupe_iou)
        sel, pboxes = sel[keep], pboxes[keep]
    found = _people_rows(result, sel, pboxes, crop_boxes, image_kps, cfg.silhouettes)
    found["crowded"] = crowded(found["image_keypoints"], pboxes, cfg.crowd_joints)
    if keep_masks and result.masks is not None:
        found["masks"] = result.masks[sel]
    return found


def _posed_people(result: Any, crop_boxes: np.ndarray,
                  min_presence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crops of a pose call that hold a person: image keypoints of every crop ``(N, 17, 3)``, the rows kept
    ``(K,)`` (presence at least ``min_presence`` and enough confident joints) and their person boxes ``(K, 5)``
    (around the joints, scored by presence)."""
    from gaitheat.crop import heatmap_to_image, keypoints_box

    hm_hw = result.heatmaps.shape[2:]
    image_kps = heatmap_to_image(result.keypoints, crop_boxes, hm_hw) if len(crop_boxes) else \
        np.zeros((0, 17, 3), np.float32)
    # People are followed from the argmax cells (the rounded sub-pixel keypoints), so the crops, and with
    # them the heatmaps, do not depend on the refinement; the refined keypoints are what is stored.
    cells = result.keypoints.copy()
    cells[..., :2] = np.round(cells[..., :2])
    cells = heatmap_to_image(cells, crop_boxes, hm_hw) if len(crop_boxes) else image_kps
    person_boxes, rows = [], []
    for i in range(len(crop_boxes)):
        if result.presence[i] < min_presence:
            continue
        box = keypoints_box(cells[i])
        if box is None:
            continue
        person_boxes.append(np.append(box, result.presence[i]))
        rows.append(i)
    return image_kps, np.array(rows, np.int64), np.array(person_boxes, np.float32).reshape(-1, 5)


def _people_rows(result: Any, sel: np.ndarray, pboxes: np.ndarray, crop_boxes: np.ndarray, image_kps: np.ndarray,
                 silhouettes: bool) -> dict[str, np.ndarray]:
    """The per-person arrays of the kept rows ``sel`` of a pose call (all but ``crowded``, which needs everyone)."""
    people = {"boxes": pboxes, "heatmaps": result.heatmaps[sel], "keypoints": result.keypoints[sel],
              "crop_boxes": crop_boxes[sel], "image_keypoints": image_kps[sel], "presence": result.presence[sel],
              "body_boxes": _body_boxes(pboxes, result.masks, sel, crop_boxes)}
    if silhouettes and result.masks is not None:
        from gaitheat.silhouettes import align_silhouettes

        people["silhouettes"] = align_silhouettes(result.masks[sel])  # kept people only: ~0.3 ms each
    return people


# A pose found on the painted frame repeats a found person's when its joints lie within this share of the body
# height of theirs. Tighter than _dedupe_poses' 0.25: a partner walking side by side 0.3 m away is that close.
REPEAT_TOLERANCE = 0.1


def _search_behind(rgb: np.ndarray, found: dict[str, np.ndarray], carried: np.ndarray, pose: Any, detector: Any,
                   cfg: ExtractConfig, step: int, helper: Any = None) -> dict[str, np.ndarray]:
    """``found`` (from :func:`_estimate_people` with ``keep_masks``) plus the people hidden beside or behind them.

    The found people are painted out of the frame (:func:`gaitheat.crop.erase_people`); the BlazePose
    ``detector`` searches a square around each person due this ``step`` (every ``cfg.search_behind`` steps), and
    the people it finds, with anyone ``carried`` from the last frame whose own crop found somebody else (a
    person in front), are posed on the painted frame. A new pose that repeats a found one is dropped. The
    crowded flags are recomputed over everyone. ``masks`` is removed from the result. With ``helper`` (an idle
    one-thread executor) the detector searches half of the squares there
    (:meth:`gaitheat.detect.BlazePoseDetector.scan`).
    """
    from gaitheat.crop import crowded, erase_people, pad_box, same_pose
    from gaitheat.detect import AROUND, iou_matrix, nms

    masks = found.pop("masks", None)
    boxes = found["boxes"]
    if masks is None or not len(boxes):
        return found
    due = [i for i in range(len(boxes)) if (step + i) % cfg.search_behind == 0]
    # followed people whose crop found someone else this frame (they went behind or beside that person)
    lost = carried[iou_matrix(carried[:, :4], boxes[:, :4]).max(axis=1) < 0.5] if len(carried) else carried
    if not due and not len(lost):
        return found
    # detect._view_around's squares, but rounded after they are placed: its rounding (side first) moved the crowd
    # benchmark (IDF1 0.805 -> 0.793), which is that sensitive to a pixel
    views = []
    for i in due:
        side = AROUND * float(boxes[i, 3] - boxes[i, 1])
        cx, cy = float(boxes[i, 0] + boxes[i, 2]) / 2, float(boxes[i, 1] + boxes[i, 3]) / 2
        views.append((round(cx - side / 2), round(cy - side / 2), max(1, round(side))))
    around = [np.array([x, y, x + side, y + side], np.float64) for x, y, side in views]
    around += list(pad_box(lost[:, :4], cfg.crop_padding).reshape(-1, 4))
    region = np.array([min(b[0] for b in around), min(b[1] for b in around),
                       max(b[2] for b in around), max(b[3] for b in around)])
    erased = erase_people(rgb, masks, found["crop_boxes"], region, image_keypoints=found["image_keypoints"])
    seen = detector.scan(erased, views, helper) if views else np.zeros((0, 5), np.float32)
    proposals = np.concatenate([lost.reshape(-1, 5), seen.reshape(-1, 5)]).astype(np.float32)
    proposals = proposals[~_already_followed(proposals, boxes)]
    if not len(proposals):
        return found
    proposals = proposals[nms(proposals[:, :4], proposals[:, 4], cfg.dedupe_iou)]
    crop_boxes = pad_box(proposals[:, :4], cfg.crop_padding).reshape(-1, 4)
    result = pose(_crops(erased, crop_boxes, pose.input_size))
    image_kps, sel, pboxes = _posed_people(result, crop_boxes, cfg.min_presence)
    if not len(sel):
        return found
    keep = _dedupe_poses(pboxes, image_kps[sel], result.keypoints[sel, :, 2].mean(axis=1), cfg.dedupe_iou)
    sel, pboxes = sel[keep], pboxes[keep]
    # a pose that repeats a found one (the painting left enough of that person to find again) is not new
    everyone = np.concatenate([found["image_keypoints"], image_kps[sel]])
    same = same_pose(everyone, tolerance=REPEAT_TOLERANCE)[len(boxes):, : len(boxes)]
    overlap = iou_matrix(pboxes[:, :4], boxes[:, :4])
    new = ~np.any(same | (overlap > 0.75), axis=1)
    sel, pboxes = sel[new], pboxes[new]
    if not len(sel):
        return found
    added = _people_rows(result, sel, pboxes, crop_boxes, image_kps, "silhouettes" in found)
    merged = {name: np.concatenate([values, added[name]]) for name, values in found.items() if name in added}
    merged["crowded"] = crowded(merged["image_keypoints"], merged["boxes"], cfg.crowd_joints)
    return merged


def _body_boxes(boxes: np.ndarray, masks: np.ndarray | None, sel: np.ndarray, crop_boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` whole-body boxes of the kept people: around their segmentation mask
    (:func:`gaitheat.crop.mask_box`), else (no mask, or a mask that is not where the pose is) the person box.
    Only reported (the tracks' MOTChallenge rows); association and crops use the person boxes."""
    from gaitheat.crop import mask_box
    from gaitheat.detect import iou_matrix

    out = boxes[:, :4].astype(np.float32).copy()
    if masks is None:
        return out
    for k, i in enumerate(sel.tolist()):
        body = mask_box(masks[i], crop_boxes[i])
        if body is not None and iou_matrix(body[None], out[k][None])[0, 0] >= 0.3:
            out[k] = body
    return out


def _dedupe_poses(boxes: np.ndarray, image_kps: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Sorted indices of the poses kept: greedy by score, dropping poses whose box overlaps a kept one by
    more than ``iou_threshold`` and whose joints are the same (:func:`gaitheat.crop.same_pose`), or by more
    than 0.75 whatever their joints."""
    from gaitheat.crop import same_pose
    from gaitheat.detect import iou_matrix

    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    iou = iou_matrix(boxes, boxes)
    # boxes this close are one person even if one of the two poses is poor
    dup = (iou > iou_threshold) & (same_pose(image_kps, tolerance=0.25) | (iou > 0.75))
    keep: list[int] = []
    for i in order:
        if not any(dup[i, k] for k in keep):
            keep.append(int(i))
    return np.array(sorted(keep), np.int64)


def _crops(rgb: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N, h, w, 3)`` uint8 crops of ``boxes`` ``(N, 4)`` (already padded)."""
    from gaitheat.crop import crop_person

    if not len(boxes):
        return np.zeros((0, *size, 3), np.uint8)
    return np.stack([crop_person(rgb, b, size)[0] for b in boxes])


def _finish_tracks(report: VideoReport, tracks: Any, source: Path, info: Any, pose: Any,
                   cfg: ExtractConfig) -> None:
    """Quality-filter each collected track (:class:`~gaitheat.track.TrackCollector`) into ``report``."""
    from gaitheat.quality import filter_frames, frame_scores

    named = parse_dataset_name(source)
    subject, condition, view = named or (source.stem, DEFAULT_CONDITION, DEFAULT_VIEW)
    created = created_stamp(cfg.created)
    track_rows = [np.zeros((0, 9))]
    tracked_ids: list[int] = []
    # Someone who went out of sight behind (or in front of) a person for a few frames is still in that person's
    # crop. Single-subject dataset videos: as they were (one walker, and their output stays byte-identical).
    fps = info.fps / cfg.frame_stride if info.fps > 0 else 25.0
    near = (_crowded_by_neighbours(tracks, max(1, round(fps * cfg.lost_seconds)))
            if cfg.drop_crowded and not (named and cfg.main_track_only) else {})
    for track_id in tracks.track_ids:
        frames, rows = tracks.stacked(track_id, names=("keypoints", "boxes", "body_boxes", "crowded"))
        quality = filter_frames(frame_scores(rows["keypoints"]), frames, cfg.min_score, cfg.min_frames)
        followed = quality.accepted  # a person followed long enough, with or without a sequence clear of others
        if cfg.drop_crowded:
            crowded = rows["crowded"] | near[track_id] if track_id in near else rows["crowded"]
            quality = _drop_crowded(quality, crowded, frames, cfg.min_frames)
        if followed:
            # The tracker's output (MOTChallenge rows) holds everyone it followed, also a person whose crops were
            # too often shared with someone else to store a gait sequence: that is a gait decision, not tracking.
            track_rows.append(_mot_rows(track_id, frames, rows["body_boxes"]))
            tracked_ids.append(track_id + 1)
        if not quality.accepted:
            report.rejected_tracks.append({"track_id": track_id, "frames": len(frames),
                                           "reason": quality.record["rejected"]})
            continue
        keep = quality.keep
        # The kept frames only: one copy of the heatmaps (about 200 KB a frame).
        frames, rows = tracks.stacked(track_id, keep)
        meta = SequenceMeta(
            subject=subject, condition=condition, view=view, source=str(source.resolve()),
            pose_model=pose.name, pose_model_sha256=pose.sha256, crop_padding=cfg.crop_padding, created=created,
            extra={"track_id": track_id, "quality": quality.record, "fps": info.fps, "frame_stride": cfg.frame_stride,
                   "frame_size": [info.width, info.height], "detector": cfg.detector if not cfg.boxes_file else "boxes",
                   "tracker": cfg.tracker, "presence_mean": round(float(rows["presence"].mean()), 4)})
        seq = HeatmapSequence(
            heatmaps=rows["heatmaps"], keypoints=rows["keypoints"], frame_indices=frames, meta=meta,
            boxes=rows["crop_boxes"].astype(np.float32), image_keypoints=rows["image_keypoints"].astype(np.float32),
            silhouettes=rows.get("silhouettes"))
        report.tracks.append(TrackSequence(track_id, seq, quality.record))
    if named and cfg.main_track_only and len(report.tracks) > 1:
        # A benchmark video shows one subject: keep its longest track, report the rest.
        main = max(report.tracks, key=lambda ts: (ts.sequence.num_frames, -ts.track_id))
        for ts in report.tracks:
            if ts is not main:
                report.rejected_tracks.append({"track_id": ts.track_id, "frames": ts.sequence.num_frames,
                                               "reason": "not the main walker of a single-subject dataset video"})
        report.tracks = [main]
    rows = np.concatenate(track_rows)
    # single-subject dataset videos: the main walker's rows only
    kept_ids = [ts.track_id + 1 for ts in report.tracks] if named and cfg.main_track_only else tracked_ids
    report.track_rows = rows[np.isin(rows[:, 1], kept_ids)]
    if cfg.tracks_out:
        from gaitheat.atomic import atomic_write_text
        from gaitheat.tracking_metrics import format_mot_rows

        atomic_write_text(Path(cfg.tracks_out) / f"{source.stem}.txt", format_mot_rows(report.track_rows))


def _crowded_by_neighbours(tracks: Any, window: int, hold: int = 5, share: float = 0.3) -> dict[int, np.ndarray]:
    """Per track, ``(T,)`` bool: frames whose person box covers at least ``share`` of where another person
    was, though that person was not found in the frame (hidden behind this one, or posed as this one).

    Where another track is missing, its box is interpolated between the frames it was found in before and
    after (each within ``window`` frames), or held for ``hold`` frames after it was last / before it was first
    found. Only tracks seen in the same frame as this one (two people, not two pieces of one walk) within
    ``window`` frames count.

    Args:
        tracks: a :class:`~gaitheat.track.TrackCollector` whose rows hold ``boxes`` ``(5,)``.
    """
    data = {t: tracks.stacked(t, names=("boxes",)) for t in tracks.track_ids}
    out: dict[int, np.ndarray] = {}
    for t, (ft, rt) in data.items():
        flags = np.zeros(len(ft), bool)
        for u, (fu, ru) in data.items():
            if u == t or fu[0] > ft[-1] + window or fu[-1] < ft[0] - window:
                continue
            together = np.intersect1d(ft, fu)
            absent = np.flatnonzero(~np.isin(ft, fu))
            if not len(together) or not len(absent):
                continue
            f = ft[absent]
            i = np.searchsorted(fu, f)
            before = np.where(i > 0, f - fu[np.maximum(i - 1, 0)], window + hold + 1)
            after = np.where(i < len(fu), fu[np.minimum(i, len(fu) - 1)] - f, window + hold + 1)
            k = np.clip(np.searchsorted(together, f), 1, len(together)) - 1
            seen_together = np.minimum(np.abs(together[k] - f),
                                       np.abs(together[np.minimum(k + 1, len(together) - 1)] - f)) <= window
            usable = (((before <= window) & (after <= window)) | (np.minimum(before, after) <= hold)) & seen_together
            if not usable.any():
                continue
            # np.interp holds the first / last box beyond the ends
            where = np.stack([np.interp(f, fu, ru["boxes"][:, c]) for c in range(4)], axis=1)
            flags[absent[usable & _covers_rows(rt["boxes"][absent], where, share)]] = True
        out[t] = flags
    return out


def _covers_rows(boxes: np.ndarray, other: np.ndarray, share: float) -> np.ndarray:
    """``(N,)`` bool: box ``i`` of ``boxes`` ``(N, 4+)`` covers at least ``share`` of box ``i`` of ``other``."""
    iw = np.clip(np.minimum(boxes[:, 2], other[:, 2]) - np.maximum(boxes[:, 0], other[:, 0]), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], other[:, 3]) - np.maximum(boxes[:, 1], other[:, 1]), 0, None)
    area = np.maximum((other[:, 2] - other[:, 0]) * (other[:, 3] - other[:, 1]), 1e-6)
    return np.asarray(iw * ih / area >= share)


def _drop_crowded(quality: Any, crowded: np.ndarray, frames: np.ndarray, min_frames: int) -> Any:
    """``quality`` (:class:`gaitheat.quality.QualityResult`) that also drops the frames whose crop holds two
    people (``crowded`` ``(T,)`` bool); the record counts them."""
    import dataclasses

    crowded = _long_runs(np.asarray(crowded, bool), 3)  # a one- or two-frame flag is a stray pose, not a person
    extra = quality.keep & crowded
    if not extra.any():
        return quality
    keep = quality.keep & ~crowded
    kept = int(keep.sum())
    record = {**quality.record, "frames_kept": kept, "frames_dropped": len(frames) - kept,
              "frames_crowded": int(extra.sum()), "crowded_frames": [int(v) for v in frames[extra]]}
    accepted = quality.accepted and kept >= min_frames
    if quality.accepted and not accepted:
        record["rejected"] = f"too short: {kept} frames without another person in the crop, need {min_frames}"
    return dataclasses.replace(quality, keep=keep, accepted=accepted, record=record)


def _long_runs(flags: np.ndarray, min_length: int) -> np.ndarray:
    """``flags`` ``(T,)`` with runs of True shorter than ``min_length`` cleared."""
    out = flags.copy()
    start = None
    for i, f in enumerate([*flags.tolist(), False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if i - start < min_length:
                out[start:i] = False
            start = None
    return out


def _mot_rows(track_id: int, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """MOTChallenge rows ``(T, 9)`` of one track: 1-based frame, id ``track_id + 1``, x, y, w, h, then -1s."""
    b = boxes[:, :4].astype(np.float64)
    out = np.full((len(frames), 9), -1.0)
    out[:, 0], out[:, 1] = frames + 1, track_id + 1
    out[:, 2:4], out[:, 4:6] = b[:, :2], b[:, 2:4] - b[:, :2]
    return out
