"""Association of per-frame person boxes into tracks, with the maintained ``trackers`` package.

``trackers`` (Roboflow) provides ByteTrack and SORT (Kalman filter + Hungarian matching on IoU);
this module only adapts its ``supervision.Detections`` interface to plain arrays and renumbers its
identities. ``trackers`` draws identities from a process-wide counter, so the same video would get
different ids on a second run in the same process; :class:`PersonTracker` renumbers them 0, 1, ...
in order of first appearance, which makes extraction reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TRACKERS = ("bytetrack", "sort")


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
