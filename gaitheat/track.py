"""Association of per-frame person boxes into tracks, with the maintained ``trackers`` package.

``trackers`` (Roboflow) provides ByteTrack and SORT (Kalman filter + Hungarian matching on IoU);
this module only adapts its ``supervision.Detections`` interface to plain arrays and renumbers its
identities. ``trackers`` draws identities from a process-wide counter, so the same video would get
different ids on a second run in the same process; :class:`PersonTracker` renumbers them 0, 1, ...
in order of first appearance, which makes extraction reproducible.

Importing ``trackers`` costs about 0.8 s of CPU (it pulls in ``supervision`` and SciPy), so the
extractor associates on a background thread (:class:`BackgroundTracks`), which also does that import,
and lets association lag behind the frames, with the same result.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

TRACKERS = ("bytetrack", "sort")


def import_in_background(module: str = "trackers") -> threading.Thread | None:
    """Start importing ``module`` in a daemon thread; None if it is already imported.

    ``trackers`` takes about 0.8 s of CPU to import (it pulls in ``supervision`` and SciPy); a pooled
    worker starts it while it loads its pose model. A failed import is not lost: importing the module
    again in the caller raises the error.
    """
    if module in sys.modules:
        return None
    thread = threading.Thread(target=_quiet_import, args=(module,), name=f"import-{module}", daemon=True)
    thread.start()
    return thread


def _quiet_import(module: str) -> None:
    with contextlib.suppress(Exception):  # raised again where the caller imports it
        importlib.import_module(module)


class PersonTracker:
    """Frame-by-frame box association.

    Args:
        method: ``"bytetrack"`` or ``"sort"``.
        fps: frame rate of the (possibly strided) frames the tracker sees.
        lost_seconds: how long a track survives without a matching box.
        min_hits: consecutive matched frames before a track gets an identity (boxes before that get -1).
        min_iou: minimum IoU between a predicted track box and a box to match them.
    """

    def __init__(self, method: str = "bytetrack", fps: float = 25.0, lost_seconds: float = 1.0,
                 min_hits: int = 1, min_iou: float = 0.2) -> None:
        import trackers

        fps = fps if fps > 0 else 25.0
        # trackers keeps a track for int(frame_rate / 30 * lost_track_buffer) frames.
        buffer = max(1, round(lost_seconds * 30))
        self._tracker: Any
        if method == "bytetrack":
            self._tracker = trackers.ByteTrackTracker(
                lost_track_buffer=buffer, frame_rate=fps, track_activation_threshold=0.5,
                minimum_consecutive_frames=min_hits, minimum_iou_threshold=min_iou, high_conf_det_threshold=0.6)
        elif method == "sort":
            self._tracker = trackers.SORTTracker(
                lost_track_buffer=buffer, frame_rate=fps, track_activation_threshold=0.25,
                minimum_consecutive_frames=min_hits, minimum_iou_threshold=min_iou)
        else:
            raise ValueError(f"unknown tracker {method!r}; known: {list(TRACKERS)}")
        self._tracker.reset()
        self._ids: dict[int, int] = {}

    def update(self, boxes: np.ndarray) -> np.ndarray:
        """Associate one frame's boxes with the tracks.

        Args:
            boxes: ``(N, 5)`` person boxes ``x1, y1, x2, y2, score``.
        Returns:
            ``(N,)`` int64 track ids (0, 1, ... by first appearance), -1 for boxes not (yet) in a track.
        """
        import supervision as sv

        boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
        detections = sv.Detections(xyxy=boxes[:, :4].copy(), confidence=boxes[:, 4].copy(),
                                   class_id=np.zeros(len(boxes), int), data={"row": np.arange(len(boxes))})
        result = self._tracker.update(detections)
        out = np.full(len(boxes), -1, np.int64)
        if len(result) == 0 or result.tracker_id is None:
            return out
        rows = np.asarray(result.data["row"], np.int64)
        # Order new identities by row so the numbering does not depend on the tracker's internal order.
        for row, raw in sorted(zip(rows.tolist(), np.asarray(result.tracker_id).astype(int).tolist(), strict=True)):
            if raw < 0:
                continue
            if raw not in self._ids:
                self._ids[raw] = len(self._ids)
            out[row] = self._ids[raw]
        return out


class TrackCollector:
    """Gathers each frame's people into per-track sequences, by the ids :class:`PersonTracker` gives.

    A person is a row of a frame's arrays (``people[name][row]``, any names; ``people["boxes"]`` holds the
    ``(N, 5)`` boxes given to the tracker). ByteTrack names a track only at its second matched frame and
    returns -1 for the first, which would cost every sequence its first frame; the tracker has already
    matched the two boxes, so the collector only recovers that first row: the unnamed person of the
    previous frame overlapping the new track's box most (IoU >= ``min_iou``).
    """

    def __init__(self, min_iou: float = 0.3) -> None:
        self.min_iou = min_iou
        self._rows: dict[int, list[tuple[int, dict[str, np.ndarray]]]] = {}
        self._pending: list[tuple[int, dict[str, np.ndarray]]] = []

    def add_frame(self, frame_index: int, people: dict[str, np.ndarray], ids: np.ndarray) -> None:
        """Record one frame: ``ids`` ``(N,)`` from :meth:`PersonTracker.update` for the N rows of ``people``."""
        from gaitheat.detect import iou_matrix

        rows = [{name: values[i] for name, values in people.items()} for i in range(len(ids))]
        for row, track_id in zip(rows, ids.tolist(), strict=True):
            if track_id < 0:
                continue
            if track_id not in self._rows:
                self._rows[track_id] = []
                if self._pending:
                    overlap = iou_matrix(row["boxes"][None], np.stack([p["boxes"] for _, p in self._pending]))[0]
                    best = int(overlap.argmax())
                    if overlap[best] >= self.min_iou:
                        self._rows[track_id].append(self._pending.pop(best))
            self._rows[track_id].append((frame_index, row))
        self._pending = [(frame_index, row) for row, t in zip(rows, ids.tolist(), strict=True) if t < 0]

    @property
    def track_ids(self) -> list[int]:
        return sorted(self._rows)

    def stacked(self, track_id: int, keep: np.ndarray | None = None,
                names: tuple[str, ...] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Frame indices ``(T,)`` int64 and the named arrays (all when None) stacked over the track's T frames.

        ``keep`` ``(frames,)`` bool stacks only those frames (one copy of large arrays such as heatmaps, not two).
        """
        entries = self._rows[track_id]
        if keep is not None:
            entries = [entry for entry, kept in zip(entries, keep.tolist(), strict=True) if kept]
        frames = np.array([f for f, _ in entries], np.int64)
        return frames, {name: np.stack([row[name] for _, row in entries]) for name in names or entries[0][1]}


class BackgroundTracks:
    """A :class:`PersonTracker` feeding a :class:`TrackCollector` on its own thread.

    Association needs nothing from later stages of a frame, and nothing of it feeds back into detection,
    so the extracting thread only queues each frame's people and goes on to the next frame's pose
    invokes (which release the GIL), while this thread builds the tracker (importing ``trackers``,
    about 0.8 s of CPU in a fresh process, happens here) and associates the frames in order. The
    result is the same as associating each frame at once. Use it as a context manager, so the thread
    ends however the frame loop does.

    Args:
        make_tracker: builds the :class:`PersonTracker` (on the background thread).
    """

    def __init__(self, make_tracker: Callable[[], PersonTracker]) -> None:
        self.collector = TrackCollector()
        self._queue: queue.SimpleQueue[tuple[int, dict[str, np.ndarray]] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        # Started with the first frame, not before: the import would otherwise compete with the first
        # frame's whole-frame detector search for the second core and the GIL.
        self._thread = threading.Thread(target=self._run, args=(make_tracker,), name="gaitheat-track", daemon=True)

    def __enter__(self) -> BackgroundTracks:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.ident is not None:  # a loop that failed before its first frame imports nothing
            self._stop()

    def add_frame(self, frame_index: int, people: dict[str, np.ndarray]) -> None:
        """Queue one frame's people (``people["boxes"]`` ``(N, 5)``) for association."""
        if self._error is not None:
            raise self._error
        self._queue.put((frame_index, people))
        if self._thread.ident is None:
            self._thread.start()

    def finish(self) -> TrackCollector:
        """Wait until every queued frame is associated and return the collector.

        Raises:
            whatever building the tracker or associating raised (e.g. ``ImportError``), unchanged.
        """
        if self._thread.ident is None:  # no frame came: build the tracker anyway, so its errors still surface
            self._thread.start()
        self._stop()
        if self._error is not None:
            raise self._error
        return self.collector

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self, make_tracker: Callable[[], PersonTracker]) -> None:
        try:
            tracker = make_tracker()
            while (item := self._queue.get()) is not None:
                frame_index, people = item
                self.collector.add_frame(frame_index, people, tracker.update(people["boxes"]))
        except BaseException as exc:  # re-raised on the extracting thread
            self._error = exc


# ------------------------------------------------------------------------ re-linking through crossings

TORSO = (5, 6, 11, 12)  # COCO shoulders and hips: where a walker is, without the swing of arms and legs


def torso_track(boxes: np.ndarray, image_keypoints: np.ndarray | None = None,
                min_score: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, where the body is and how tall: centres ``(T, 2)`` (the confident torso joints' mean, else
    the box centre) and heights ``(T,)`` (box heights), from boxes ``(T, 4+)`` and keypoints ``(T, J, 3)``."""
    b = np.asarray(boxes, np.float64)
    centres = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    if image_keypoints is not None:
        torso = np.asarray(image_keypoints, np.float64)[:, TORSO]
        good = torso[..., 2] >= min_score
        enough = good.sum(axis=1) >= 3
        mean = (torso[..., :2] * good[..., None]).sum(axis=1) / np.maximum(good.sum(axis=1), 1)[:, None]
        centres[enough] = mean[enough]
    return centres, np.maximum(b[:, 3] - b[:, 1], 1.0)


def _velocity(frames: np.ndarray, centres: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Least-squares image velocity ``(2,)`` of ``centres`` ``(T, 2)``, in body heights per frame."""
    if len(frames) < 2:
        return np.zeros(2)
    c = centres / heights.mean()
    t = frames - frames.mean()
    return (t[:, None] * (c - c.mean(axis=0))).sum(axis=0) / max(float((t * t).sum()), 1e-9)


def _residual(frames: np.ndarray, centres: np.ndarray, heights: np.ndarray, lo: int, cut: int, hi: int) -> float:
    """Squared error of two straight-line walks fitted to entries ``[lo, cut)`` and ``[cut, hi)``."""
    total = 0.0
    for a, b in ((lo, cut), (cut, hi)):
        t = frames[a:b].astype(np.float64)
        c = centres[a:b] / heights[a:b].mean()
        design = np.stack([t, np.ones_like(t)], axis=1)
        fit, *_ = np.linalg.lstsq(design, c, rcond=None)
        total += float(((design @ fit - c) ** 2).sum())
    return total


def split_points(frames: np.ndarray, centres: np.ndarray, heights: np.ndarray, fps: float, window: int = 8,
                 min_speed: float = 0.35) -> list[int]:
    """Where a track jumped from one person to another: indices ``k`` where the walk before and after
    go in opposite directions (two people crossing swap tracks; one walker does not turn back within
    ``window`` frames at walking speed).

    Args:
        frames: ``(T,)`` frame indices of the track; ``centres``/``heights`` from :func:`torso_track`.
        fps: frame rate, for ``min_speed`` in body heights per second (walking across is about 0.75).
    """
    out: list[int] = []
    k = window
    while k <= len(frames) - window:
        before = _velocity(frames[k - window:k], centres[k - window:k], heights[k - window:k])
        after = _velocity(frames[k:k + window], centres[k:k + window], heights[k:k + window])
        fast = min(np.linalg.norm(before), np.linalg.norm(after)) * fps >= min_speed
        if fast and before @ after < -0.5 * np.linalg.norm(before) * np.linalg.norm(after):
            # The windows straddle the jump for a few k (the first one found may be past it, when the track slowed
            # while it held both people): cut where two straight walks best fit one span around it. (Each cut scored
            # on windows of its own would favour cuts beyond the jump, where both windows are straight.)
            lo, hi = max(0, k - window), min(len(frames), k + window)
            k = min(range(max(2, lo + 2), min(len(frames) - 2, hi - 2) + 1),
                    key=lambda c: _residual(frames, centres, heights, lo, c, hi))
            out.append(k)
            k += window
        else:
            k += 1
    return out


MAX_OVERLAP = 3  # frames a track piece may overlap the one it continues (see link_segments)


def link_segments(segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]], fps: float, max_gap: int,
                  max_error: float = 0.25) -> list[int]:
    """Group track pieces that continue each other: ``(S,)`` group label per segment.

    A segment that starts after another ends (within ``max_gap`` frames, or overlapping its last
    ``MAX_OVERLAP`` frames) continues it when its first position after the earlier one's end lies where the
    earlier one's constant-velocity walk leads (error under ``max_error`` body heights), it is about as tall,
    and it moves the same way. Greedy, best pairs first; each end links to one start. (An overlap happens
    where a track that held two people at a crossing is cut: the frames around the cut hold a mixed pose.)

    Args:
        segments: ``(frames (T,), centres (T, 2), heights (T,))`` per piece, frames increasing.
    """
    n = len(segments)
    candidates = []
    for a, (fa, ca, ha) in enumerate(segments):
        va = _velocity(fa[-8:], ca[-8:], ha[-8:])
        height = float(np.median(ha[-8:]))  # medians: a pose going out of sight has a short box
        for b, (fb, cb, hb) in enumerate(segments):
            first = int(np.searchsorted(fb, fa[-1], side="right"))  # b's first frame after a's end
            if a == b or first > MAX_OVERLAP or first >= len(fb) or fb[0] <= fa[0]:
                continue
            gap = int(fb[first] - fa[-1])
            if gap > max_gap:
                continue
            vb = _velocity(fb[first:first + 8], cb[first:first + 8], hb[first:first + 8])
            error = float(np.linalg.norm(cb[first] / height - (ca[-1] / height + va * gap)))
            slow = max(np.linalg.norm(va), np.linalg.norm(vb)) * fps < 0.35
            same_way = len(fa) < 4 or len(fb) < 4 or slow or va @ vb >= 0
            ratio = float(np.median(hb[first:first + 8])) / max(height, 1.0)
            if error <= max_error and same_way and 0.87 <= ratio <= 1.15:
                candidates.append((error, a, b))
    group = list(range(n))
    nxt: dict[int, int] = {}
    prev: dict[int, int] = {}
    for _, a, b in sorted(candidates):
        if a in nxt or b in prev:
            continue
        nxt[a], prev[b] = b, a
    for start in range(n):
        if start in prev:
            continue
        s = start
        while s in nxt:
            s = nxt[s]
            group[s] = start
    return group


def relink(collector: TrackCollector, fps: float, max_gap: int) -> TrackCollector:
    """Tracks cut where they jumped between people (:func:`split_points`) and pieces of one walk joined
    (:func:`link_segments`), from each frame's ``boxes`` and ``image_keypoints`` rows; the rows are
    unchanged, only which track holds them. Tracks are renumbered by first frame."""
    pieces: list[list[tuple[int, dict[str, np.ndarray]]]] = []
    segments = []
    for track_id in collector.track_ids:
        entries = collector._rows[track_id]
        frames = np.array([f for f, _ in entries], np.int64)
        kps = np.stack([row["image_keypoints"] for _, row in entries]) if "image_keypoints" in entries[0][1] else None
        centres, heights = torso_track(np.stack([row["boxes"] for _, row in entries]), kps)
        cuts = [0, *split_points(frames, centres, heights, fps), len(entries)]
        for a, b in itertools.pairwise(cuts):
            pieces.append(entries[a:b])
            segments.append((frames[a:b], centres[a:b], heights[a:b]))
    group = link_segments(segments, fps, max_gap)
    merged: dict[int, list[tuple[int, dict[str, np.ndarray]]]] = {}
    for label, piece in sorted(zip(group, pieces, strict=True), key=lambda lp: lp[1][0][0]):
        held = merged.setdefault(label, [])
        # a piece that overlaps the one it continues gives up the overlapping frames (a mixed pose there)
        held.extend(entry for entry in piece if not held or entry[0] > held[-1][0])
    if len(merged) == len(collector.track_ids) and len(pieces) == len(merged):
        return collector  # nothing cut or joined
    out = TrackCollector(collector.min_iou)
    ordered = sorted(merged.values(), key=lambda e: (e[0][0], float(e[0][1]["boxes"][0])))
    for new_id, entries in enumerate(ordered):
        out._rows[new_id] = sorted(entries, key=lambda e: e[0])
    return out
