"""Person box sources: the BlazePose detector (whole frame and tiles), MOG2 background subtraction,
and boxes files written by any other detector.

Every source is called as ``source(rgb, frame_index)`` and returns person boxes ``(N, 5)`` float32
``x1, y1, x2, y2, score`` in source pixels. Which frames the BlazePose detector runs on, and which
of its views (:meth:`BlazePoseDetector.scan`), is decided by :class:`DetectionSchedule` (the
extractor re-uses landmarks in between, as MediaPipe does); ``every_frame`` says whether a source
must see every frame (background subtraction learns from each one).
"""

from __future__ import annotations

import csv
import json
import math
import threading
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

EMPTY = np.zeros((0, 5), np.float32)


class BoxSource(Protocol):
    """Anything that proposes person boxes for a frame."""

    every_frame: bool

    def __call__(self, rgb: np.ndarray, frame_index: int) -> np.ndarray:
        """Person boxes ``(N, 5)`` for the ``(H, W, 3)`` uint8 frame."""
        ...


# ------------------------------------------------------------------------------------- box geometry


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` ``(N, 4+)`` and ``b`` ``(M, 4+)`` (xyxy) -> ``(N, M)``."""
    a = np.asarray(a, np.float64)[:, None, :4]
    b = np.asarray(b, np.float64)[None, :, :4]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first (ties by index)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    keep: list[int] = []
    iou = iou_matrix(boxes, boxes)
    suppressed = np.zeros(len(scores), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > iou_threshold
    return np.array(keep, dtype=np.int64)


# ------------------------------------------------------------------------------ BlazePose detector


def ssd_anchors(input_size: int = 224, strides: tuple[int, ...] = (8, 16, 32, 32, 32)) -> np.ndarray:
    """Anchor centres of MediaPipe's pose detector (``SsdAnchorsCalculator``, fixed anchor size).

    Consecutive layers with the same stride share one feature map, and each layer contributes two
    anchors per cell (aspect 1 and the interpolated scale), all of size 1: 2254 for 224 px.
    Returns:
        ``(A, 2)`` float32 centres ``(x, y)`` in [0, 1].
    """
    centres: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        same = 1
        while layer + same < len(strides) and strides[layer + same] == strides[layer]:
            same += 1
        size = math.ceil(input_size / strides[layer])
        ys, xs = np.meshgrid((np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, 2 * same, axis=0))
        layer += same
    return np.concatenate(centres).astype(np.float32)


def tile_origins(width: int, height: int, tile: int, overlap: float = 0.25) -> list[tuple[int, int]]:
    """Top-left corners of square tiles of side ``tile`` covering a frame with ``overlap`` between them."""
    def starts(extent: int) -> list[int]:
        if extent <= tile:
            return [0]
        count = math.ceil((extent - tile) / (tile * (1 - overlap))) + 1
        return [round(i * (extent - tile) / (count - 1)) for i in range(count)]
    return [(x, y) for y in starts(height) for x in starts(width)]


class BlazePoseDetector:
    """MediaPipe's BlazePose person detector (``pose_detection.tflite``), on the frame and on tiles.

    The model finds a face box plus a mid-hip point and a body-size point; the person box is centred
    on the hips with height ``2 |size - hip|`` (MediaPipe's ROI before its 1.25x padding). It misses
    people under about 100 px tall in a letterboxed 224 px view, so large frames are also searched in
    overlapping ``tile_size`` tiles; duplicates across tiles are merged by NMS on the face boxes.

    Args:
        model_path: a ``pose_detection.tflite``; None finds and checks the bundled one.
        score_threshold: minimum detection probability.
        tiles: ``"auto"`` (tiles when the frame exceeds 1.5 tiles), ``"always"`` or ``"never"``.
        tile_size: side of a tile in source pixels.
        num_threads: LiteRT threads.
    """

    every_frame = False
    _SIZE = 224

    def __init__(self, model_path: str | Path | None = None, score_threshold: float = 0.3, tiles: str = "auto",
                 tile_size: int = 192, num_threads: int = 1, nms_iou: float = 0.3) -> None:
        from gaitheat import assets

        if tiles not in ("auto", "always", "never"):
            raise ValueError(f"tiles must be auto, always or never, got {tiles!r}")
        self._path = assets.verify_asset(assets.POSE_DETECTION) if model_path is None else Path(model_path)
        self._num_threads = num_threads
        self._interpreter = self._load()
        self._helper: Any = None  # a second interpreter for scans split over two threads, loaded when first needed
        outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._regressors, self._scores = outputs["Identity"], outputs["Identity_1"]
        self._anchors = ssd_anchors(self._SIZE)
        self.score_threshold, self.tiles, self.tile_size, self.nms_iou = score_threshold, tiles, tile_size, nms_iou
        self.invoke_seconds = self.invoke_cpu_seconds = 0.0  # inside invoke(), wall and CPU, for benchmarks
        self._timing = threading.Lock()

    def _load(self) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(self._path), num_threads=self._num_threads)
        interpreter.allocate_tensors()
        return interpreter

    def _detect_view(self, rgb: np.ndarray, x0: int, y0: int, side: int,
                     interpreter: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Run on the square view ``[x0, x0+side) x [y0, y0+side)``; (person boxes, face boxes) in source px."""
        import cv2

        interpreter = interpreter or self._interpreter
        scale = self._SIZE / side
        matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
        view = cv2.warpAffine(rgb, matrix, (self._SIZE, self._SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        interpreter.set_tensor(self._input, (view.astype(np.float32) / 127.5 - 1.0)[None])
        start, cpu = time.perf_counter(), time.thread_time()
        interpreter.invoke()
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
        with self._timing:
            self.invoke_seconds += wall
            self.invoke_cpu_seconds += cpu
        reg = interpreter.get_tensor(self._regressors)[0]
        logits = np.clip(interpreter.get_tensor(self._scores)[0, :, 0].astype(np.float64), -100, 100)
        probs = 1.0 / (1.0 + np.exp(-logits))
        hit = np.nonzero(probs >= self.score_threshold)[0]
        if len(hit) == 0:
            return EMPTY, EMPTY
        anchors, r = self._anchors[hit], reg[hit] / self._SIZE
        centre = r[:, 0:2] + anchors
        face = np.concatenate([centre - r[:, 2:4] / 2, centre + r[:, 2:4] / 2], axis=1)
        hip = r[:, 4:6] + anchors
        top = r[:, 6:8] + anchors
        half = np.linalg.norm(top - hip, axis=1)
        person = np.stack([hip[:, 0] - half / 2, hip[:, 1] - half, hip[:, 0] + half / 2, hip[:, 1] + half], axis=1)
        offset = np.array([x0, y0, x0, y0], np.float64)
        score = probs[hit][:, None]
        return (np.hstack([person * side + offset, score]).astype(np.float32),
                np.hstack([face * side + offset, score]).astype(np.float32))

    def views(self, width: int, height: int) -> list[tuple[int, int, int]]:
        """Square views ``(x0, y0, side)`` searched in a frame of this size (letterboxed frame first)."""
        side = max(width, height)
        out = [((width - side) // 2, (height - side) // 2, side)]
        if self.tiles == "always" or (self.tiles == "auto" and side > 1.5 * self.tile_size):
            out += [(x, y, self.tile_size) for x, y in tile_origins(width, height, self.tile_size)]
        return out

    def __call__(self, rgb: np.ndarray, frame_index: int) -> np.ndarray:
        """Search every view of the frame (:meth:`views`)."""
        return self.scan(rgb, self.views(rgb.shape[1], rgb.shape[0]))

    def scan(self, rgb: np.ndarray, views: list[tuple[int, int, int]], helper: Executor | None = None) -> np.ndarray:
        """Person boxes ``(N, 5)`` found in ``views``, a subset of :meth:`views` or any squares ``(x0, y0, side)``.

        With ``helper`` (an idle one-thread executor), every other view is searched there, on a second
        interpreter, while this thread searches the rest: the same boxes in about half the time on two cores.
        """
        if not views:
            return EMPTY
        if helper is not None and len(views) > 1:
            def search_theirs() -> list[tuple[np.ndarray, np.ndarray]]:
                if self._helper is None:  # loaded on the helper thread, while this one searches
                    self._helper = self._load()
                return [self._detect_view(rgb, *view, self._helper) for view in views[1::2]]

            theirs = helper.submit(search_theirs)
            ours = [self._detect_view(rgb, *view) for view in views[0::2]]
            found: list[tuple[np.ndarray, np.ndarray]] = [None] * len(views)  # type: ignore[list-item]
            found[0::2], found[1::2] = ours, theirs.result()
        else:
            found = [self._detect_view(rgb, *view) for view in views]
        persons = np.concatenate([p for p, _ in found])
        faces = np.concatenate([f for _, f in found])
        if len(persons) == 0:
            return EMPTY
        # Faces separate people standing close together; the person-box pass then merges the same
        # person seen at two scales (frame and tile), whose face boxes differ too much to overlap.
        keep = nms(faces[:, :4], faces[:, 4], self.nms_iou)
        persons = persons[keep]
        return persons[nms(persons[:, :4], persons[:, 4], 0.5)]


# ------------------------------------------------------------------------------ detector schedule


def sweep_slots(num_views: int, period: int, step: int) -> list[int]:
    """Indices of the views searched at ``step`` when ``num_views`` views are spread evenly over ``period`` steps.

    Every view is searched exactly once in any ``period`` consecutive steps, and each step searches
    ``floor`` or ``ceil`` of ``num_views / period`` views, so the cost per frame stays even.
    """
    phase = step % period
    return [i for i in range(num_views) if (i * period) // num_views == phase]


class DetectionSchedule:
    """Which detector searches run on each frame (``detect_every`` in :class:`gaitheat.extract.ExtractConfig`).

    * Nobody followed, or a source that must see every frame: the source runs on the whole frame.
    * People followed, a source with ``views``/``scan`` (the BlazePose detector) and ``periodic``: its
      views (letterboxed frame + tiles) are searched round-robin, each once in any ``period``
      consecutive frames (:func:`sweep_slots`), so someone who enters is picked up within ``period``
      frames of being detectable in one view, at an even cost of about ``len(views) / period``
      detector invokes a frame (0.7 on 768x576 vtest with 21 views and period 30, against 2.1 for
      a full search every 10 frames). Other sources run whole every ``period`` frames.
    * For ``lost_frames`` frames after a followed person is lost (no person found overlaps their last
      box), a square around that box is searched too, unless it touched the frame's edge (walked out).

    Args:
        boxes: the box source.
        period: ``detect_every``.
        periodic: search for newcomers while people are followed (False for single-subject videos).
        lost_frames: frames a lost person is searched for around where they were last seen.
    """

    def __init__(self, boxes: Any, period: int, periodic: bool, lost_frames: int, hidden_frames: int = 0) -> None:
        self.boxes, self.period, self.periodic, self.lost_frames = boxes, period, periodic, lost_frames
        self.hidden_frames = hidden_frames
        self.sweeps = callable(getattr(boxes, "scan", None))
        self._lost: list[tuple[np.ndarray, int]] = []  # (last box, frames searched)
        self._hidden: list[tuple[np.ndarray, int]] = []  # (last box, frames searched) of people gone behind someone
        self._continued = np.zeros(0, bool)  # per person found last frame: they were followed the frame before too

    @property
    def hidden(self) -> np.ndarray:
        """``(K, 4)`` last boxes of the people who went behind someone else and are not found again yet."""
        return np.array([b for b, _ in self._hidden], np.float32).reshape(-1, 4)

    def __call__(self, rgb: np.ndarray, frame_index: int, step: int, followed: np.ndarray,
                 helper: Executor | None = None) -> np.ndarray:
        """Detector boxes ``(N, 5)`` for this frame; ``followed`` holds the carried pose boxes ``(M, 5)``.

        ``helper``: an idle one-thread executor over which a whole-frame search is split (see
        :meth:`BlazePoseDetector.scan`); the boxes are the same with or without it.
        """
        if self.boxes.every_frame or len(followed) == 0:
            if helper is not None and self.sweeps and not self.boxes.every_frame:
                views = self.boxes.views(rgb.shape[1], rgb.shape[0])
                return np.asarray(self.boxes.scan(rgb, views, helper=helper), np.float32)
            return np.asarray(self.boxes(rgb, frame_index), np.float32)
        if not self.sweeps:
            due = self.periodic and step % self.period == 0
            return np.asarray(self.boxes(rgb, frame_index), np.float32) if due else EMPTY
        views = []
        if self.periodic:
            # One search of the whole frame (letterboxed view + tiles) spread over ``period`` frames.
            every = self.boxes.views(rgb.shape[1], rgb.shape[0])
            views = [every[i] for i in sweep_slots(len(every), self.period, step)]
        height, width = rgb.shape[:2]
        views += [_view_around(box) for box, _ in self._lost
                  if box[0] > 2 and box[2] < width - 3 and box[3] < height - 3]  # not walked out of the frame
        views += [_view_around(box) for box, _ in self._hidden]
        return np.asarray(self.boxes.scan(rgb, views), np.float32) if views else EMPTY

    def update(self, carried: np.ndarray, found: np.ndarray) -> None:
        """Note who was lost: carried boxes ``(M, 5)`` that no person found this frame ``(N, 5)`` overlaps.

        With ``hidden_frames``, a carried person whose crop found someone else (another carried person
        took that match: they went behind them) is searched for around the two of them for that many
        frames, until found again (a found box overlapping the search box by IoU >= 0.2).
        """
        if not self.sweeps:
            return
        still = [(box, age + 1) for box, age in self._lost if age + 1 < self.lost_frames]
        new = [(box, 0) for box in carried[:, :4]] if self.lost_frames > 0 else []
        candidates = still + new
        if candidates and len(found):
            overlap = iou_matrix(np.stack([b for b, _ in candidates]), found).max(axis=1)
            candidates = [c for c, o in zip(candidates, overlap, strict=True) if o < 0.2]
        self._lost = candidates
        if self.hidden_frames > 0:
            self._update_hidden(carried, found)

    def _update_hidden(self, carried: np.ndarray, found: np.ndarray) -> None:
        hidden = [(box, age + 1) for box, age in self._hidden if age + 1 < self.hidden_frames]
        continued = np.zeros(len(found), bool)
        # only someone followed for two frames counts: a one-frame pose (a second, poorer pose of one person
        # from an overlapping detection) merging into its person is no one going behind anyone
        followed = self._continued if len(self._continued) == len(carried) else np.zeros(len(carried), bool)
        if len(carried) and len(found):
            iou = iou_matrix(carried[:, :4], found[:, :4])
            taken = _greedy_match(iou, 0.2)
            continued[list(taken.values())] = True
            for i in range(len(carried)):
                # overlapping a found person whom another carried person matched better: gone behind them
                if i not in taken and followed[i] and iou[i].max() >= 0.2:
                    j = int(iou[i].argmax())
                    b, f = carried[i, :4], found[j, :4]
                    hidden.append((np.array([min(b[0], f[0]), min(b[1], f[1]), max(b[2], f[2]), max(b[3], f[3])],
                                            np.float32), 0))
        if hidden and len(found):
            # found again: a person found now who is nobody carried (matched) overlaps the search box
            fresh = found[:, :4]
            if len(carried):
                matched = set(_greedy_match(iou_matrix(carried[:, :4], fresh), 0.2).values())
                fresh = fresh[[j for j in range(len(fresh)) if j not in matched]]
            if len(fresh):
                hidden = [(b, a) for b, a in hidden if iou_matrix(b[None], fresh).max() < 0.2]
        self._hidden, self._continued = hidden, continued


def _greedy_match(iou: np.ndarray, threshold: float) -> dict[int, int]:
    """Row -> column pairs matched greedily by descending IoU (at least ``threshold``)."""
    pairs: dict[int, int] = {}
    used: set[int] = set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < threshold:
            break
        if i not in pairs and j not in used:
            pairs[i] = j
            used.add(j)
    return pairs


AROUND = 1.6  # side of a square searched around a person, in their box's larger side (their height)


def _view_around(box: np.ndarray) -> tuple[int, int, int]:
    """A square detector view ``(x0, y0, side)`` centred on a person box, ``AROUND`` times its larger side."""
    side = max(32, round(AROUND * float(max(box[2] - box[0], box[3] - box[1]))))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return round(cx - side / 2), round(cy - side / 2), side


# ------------------------------------------------------------------------------ background subtraction


class BackgroundSubtractionDetector:
    """Moving-blob boxes from OpenCV's MOG2, for fixed cameras (about 23 ms a 768x576 frame).

    Args:
        min_height: smallest blob height in pixels that can be a person.
        history: frames MOG2 averages over.
        warmup: frames at the start for which no boxes are returned (the model is still learning).
    """

    every_frame = True

    def __init__(self, min_height: int = 40, history: int = 200, warmup: int = 5) -> None:
        import cv2

        self._model = cv2.createBackgroundSubtractorMOG2(history=history, detectShadows=True)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self.min_height, self.warmup, self._seen = min_height, warmup, 0

    def __call__(self, rgb: np.ndarray, frame_index: int) -> np.ndarray:
        import cv2

        mask = self._model.apply(rgb)
        self._seen += 1
        if self._seen <= self.warmup:
            return EMPTY
        # MOG2 marks shadows 127: keep only confident foreground, then close gaps inside bodies.
        fg = cv2.morphologyEx((mask == 255).astype(np.uint8), cv2.MORPH_OPEN, self._kernel)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self._kernel, iterations=3)
        count, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        boxes = []
        for x, y, w, h, area in stats[1:count]:
            if h >= self.min_height and w <= 1.5 * h and area >= 0.2 * w * h:
                boxes.append([x, y, x + w, y + h, min(1.0, area / (w * h) + 0.3)])
        return np.array(boxes, np.float32).reshape(-1, 5)


# ------------------------------------------------------------------------------------- boxes files


class BoxesFileError(ValueError):
    """A boxes file that cannot be parsed."""


class BoxesFile:
    """Person boxes per frame from a file written by any detector.

    Formats (frame indices are 0-based source frame numbers; score defaults to 1):

    * CSV with a header containing ``frame, x1, y1, x2, y2`` and optionally ``score``;
    * JSON ``{"<frame>": [[x1, y1, x2, y2(, score)], ...], ...}`` or a list of
      ``{"frame": f, "box": [x1, y1, x2, y2], "score": s}`` records.
    """

    every_frame = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BoxesFileError(f"{self.path}: cannot read boxes file ({exc})") from exc
        try:
            rows = self._parse_json(text) if self.path.suffix.lower() == ".json" else self._parse_csv(text)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BoxesFileError(f"{self.path}: malformed boxes file ({exc})") from exc
        self._boxes: dict[int, np.ndarray] = {}
        for frame, box in rows:
            self._boxes.setdefault(frame, EMPTY)
            self._boxes[frame] = np.vstack([self._boxes[frame], np.asarray(box, np.float32)[None]])

    @staticmethod
    def _record(box: list[Any], score: Any = None) -> list[float]:
        values = [float(v) for v in box]
        if len(values) == 4:
            values.append(1.0 if score is None else float(score))
        if len(values) != 5 or values[2] <= values[0] or values[3] <= values[1]:
            raise ValueError(f"box {box} is not x1, y1, x2, y2[, score] with x2 > x1 and y2 > y1")
        return values

    def _parse_json(self, text: str) -> list[tuple[int, list[float]]]:
        data = json.loads(text)
        if isinstance(data, dict):
            return [(int(f), self._record(b)) for f, boxes in data.items() for b in boxes]
        return [(int(r["frame"]), self._record(r["box"], r.get("score"))) for r in data]

    def _parse_csv(self, text: str) -> list[tuple[int, list[float]]]:
        reader = csv.DictReader(text.splitlines())
        missing = {"frame", "x1", "y1", "x2", "y2"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"CSV header lacks {sorted(missing)}")
        return [(int(r["frame"]), self._record([r["x1"], r["y1"], r["x2"], r["y2"]], r.get("score") or None))
                for r in reader]

    def __call__(self, rgb: np.ndarray, frame_index: int) -> np.ndarray:
        return self._boxes.get(frame_index, EMPTY)
