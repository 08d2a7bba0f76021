"""Live identification: people identified as they walk, from a camera, a stream or a growing file.

Per frame (from :class:`gaitheat.live_source.FrameReader`, which drops frames rather than fall behind):
the extraction chain of :mod:`gaitheat.extract` (detector schedule, pose model, de-duplication) finds
the people, ByteTrack (:class:`gaitheat.track.PersonTracker`) numbers them, frames below the quality
filter's mean joint score or whose crop holds another person (``crowded``) are skipped, and each
tracked person's heatmaps go into their
:class:`TrackWindow`. Once a person has ``min_frames`` good frames in the window (default 30: one gait
cycle, about 1.1 s of walking at 25 fps) an ``identity`` event names them (or ``unknown``, beyond the
gallery's threshold); every ``refine_every`` further frames the embedding is recomputed over the
latest ``window`` frames and the event re-issued (``revision`` counts up).

Incremental embedding: GaitHeat pools a set of frames with an element-wise max, so each frame's
pre-pooling feature map is computed once, when it arrives, and kept; an update costs one frame of the
network plus a max over at most ``window`` cached maps and the small head. The network's input is
min-max normalised over the whole sequence, so cached features are tied to the range they were
computed with: when the window's heatmap range moves more than ``range_tol`` (a fraction of the
span) from it, the window is re-embedded under the new range (rare after the first frames: the
pose model's heatmap range settles quickly). With ``range_tol = 0`` the result equals
:func:`gaitheat.evaluate.embed_sequences` on the window's frames (tested). The ONNX backend has no
per-frame graph and re-embeds the window at each update instead.

Threads: the main thread detects and poses frame n + 1 while the identifier files frame n; the
frame's network batch (everyone in it) goes to :class:`TorchFrameNet`'s workers, one per CPU core
with one intra-op thread each, so frames n and n - 1 can be in the network at once beside the pose
model; identities are computed and events written in order on an events thread.

Memory is bounded whatever the stream's length: per track ``window`` raw heatmap frames
(17 x 64 x 48 float32, 209 KB) and ``window`` feature maps (full width: 512 x 16 x 12 float32, 393 KB),
about 36 MB at the default 60; at most ``max_tracks`` tracks (the least recently seen is closed
first); a track not seen for ``lost_seconds`` of stream time is closed.

Events (JSON objects, one per line; :class:`EventSink`): every event has ``event``, ``time`` (UTC,
ISO-8601, milliseconds), ``t`` (seconds since the run started) and ``frame`` (the source's frame
counter, dropped frames included):

* ``enter``: ``track_id``, ``box`` (x1, y1, x2, y2 source pixels);
* ``identity``: ``track_id``, ``name`` (a gallery name or ``unknown``), ``distance`` (to the nearest
  gallery person), ``threshold`` (null when the gallery has none), ``frames_used``, ``revision``,
  ``latency_s`` (from the arrival of the newest frame used to the event), ``matches`` (top k);
* ``leave``: ``track_id``, ``name`` and ``distance`` of the last identity (null if never identified),
  ``frames_seen``, ``reason`` (``lost``, ``evicted``, ``end``);
* ``status``: ``status`` (``started``, ``reconnecting``, ``connected``, ``ended``, ``stats``) and details;
  ``stats`` (every ``stats_every_s``) and the final ``ended`` carry ``processed_fps`` and frame counts.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from gaitheat.gallery.service import UNKNOWN, decide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveConfig:
    """Live identification settings.

    Attributes:
        min_frames: good frames a person must have walked before the first identity event.
        window: the most recent frames an embedding uses (and the per-track memory bound).
        refine_every: new frames between identity updates.
        max_tracks: people held at once (the least recently seen is closed beyond it).
        min_score: frames with a lower mean joint score are skipped (the quality filter's 0.4).
        lost_seconds: a person not seen for this long (stream time) has left.
        range_tol: re-embed the window when its heatmap range moves this fraction of the span.
        top_k: matches listed per identity event.
        stats_every_s: wall seconds between ``stats`` status events.
        embed_every: run the network on every k-th good frame of a person only (1: every frame). The
            window then holds every k-th of the last ``window`` good frames; ``min_frames`` and
            ``refine_every`` still count the good frames walked. An option for a CPU too slow for
            the full-width network on every frame (k times less network work per person, a set of
            frames k times sparser in time); not the default: it costs accuracy (the demo's rank-1,
            40-frame walks with every k-th frame: 82.5 at k = 1, 77.7 at k = 3, 67.5 at k = 4).
        trim_every_s: wall seconds between returns of the heap's free memory to the system
            (:func:`release_free_memory`; 0: never), so that resident memory of an endless run stays flat.
    """

    min_frames: int = 30
    window: int = 60
    refine_every: int = 10
    max_tracks: int = 8
    min_score: float = 0.4
    lost_seconds: float = 2.0
    range_tol: float = 0.05
    top_k: int = 5
    stats_every_s: float = 10.0
    embed_every: int = 1
    trim_every_s: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_frames <= self.window:
            raise ValueError(f"need 1 <= min_frames <= window, got {self.min_frames} and {self.window}")
        if self.refine_every < 1 or self.max_tracks < 1 or self.top_k < 1 or self.embed_every < 1:
            raise ValueError("refine_every, max_tracks, top_k and embed_every must be >= 1")
        if self.range_tol < 0 or self.lost_seconds <= 0 or self.trim_every_s < 0:
            raise ValueError("range_tol and trim_every_s must be >= 0 and lost_seconds > 0")


# ----------------------------------------------------------------------------------- embedding


class TorchFrameNet:
    """GaitHeat split at the set max: per-frame feature maps, then pooling and the retrieval head.

    With ``workers`` > 0, :meth:`submit` runs the per-frame maps on that many threads of their own,
    each with ``threads`` intra-op threads: successive frames go through the network at the same time
    (frames are independent until the set max), so on a CPU the network uses every core without one
    OpenMP team spanning cores that the pose model also wants (a team waits for its slowest thread;
    separate single-threaded callers only share the cores). At most ``workers`` batches are queued or
    running: :meth:`submit` blocks beyond that, which is the live loop's back-pressure.

    Args:
        model: an eval-mode GaitHeat (e.g. :func:`gaitheat.models.inference.optimise_for_inference`).
        device: where it runs.
        autocast_dtype: ``torch.bfloat16`` / ``torch.float16`` autocast, or None for fp32.
        workers: network threads of :meth:`submit` (0: it runs the batch at once, on the caller's thread).
        threads: intra-op threads of each worker (None: leave torch's setting alone).
    """

    incremental = True

    def __init__(self, model: Any, device: Any = "cpu", autocast_dtype: Any = None, workers: int = 0,
                 threads: int | None = None) -> None:
        import torch

        self.model, self.device = model, torch.device(device)
        self.autocast_dtype = autocast_dtype
        self.workers, self.threads = workers, threads
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(max(1, workers))
        self._error: BaseException | None = None

    def _autocast(self) -> Any:
        import torch

        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def features(self, frames: np.ndarray) -> Any:
        """(n, J, H, W) normalised float32 -> (n, C, h, w) float32 fusion maps (before the set max)."""
        import torch

        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(np.ascontiguousarray(frames, np.float32)).to(self.device)
            return self.model.frame_maps(x, None, branches=("fusion",))["fusion"].float()

    def submit(self, frames: np.ndarray) -> Future[Any]:
        """:meth:`features` of (n, J, H, W) frames on a worker thread; its future. Raises an earlier
        batch's error (one whose result nobody asked for, e.g. of a person who left) here."""
        if self._error is not None:
            raise self._error
        if self.workers <= 0:
            done: Future[Any] = Future()
            done.set_result(self.features(frames))
            return done
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="gaitheat-live-net",
                                            initializer=self._init_worker)
        self._slots.acquire()
        future = self._pool.submit(self.features, frames)
        future.add_done_callback(self._release)
        return future

    def _init_worker(self) -> None:
        import torch

        if self.threads is not None:
            # OpenMP's thread count is per calling thread: set it in each worker, not only in the main thread
            torch.set_num_threads(self.threads)

    def _release(self, future: Future[Any]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None and self._error is None:
            self._error = future.exception()

    def close(self) -> None:
        """Wait for the batches in flight; raise the first error among them."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._error is not None:
            raise self._error

    def pooled(self, features: list[Any]) -> np.ndarray:
        """Per-frame maps (each (n_i, C, h, w), or a :class:`Pending` row) -> (D, P) retrieval embedding
        of their set max."""
        import torch

        maps = [f.result() if isinstance(f, Pending) else f for f in features]
        with torch.inference_mode(), self._autocast():
            best = maps[0].amax(0)
            for f in maps[1:]:
                best = torch.maximum(best, f.amax(0))
            return self.model.retrieve(best[None]).float()[0].cpu().numpy()


class Pending:
    """Row ``row`` of a batch of frames still in the network (:meth:`TorchFrameNet.submit`)."""

    __slots__ = ("batch", "row")

    def __init__(self, batch: Future[Any], row: int) -> None:
        self.batch, self.row = batch, row

    def result(self) -> Any:
        """(1, C, h, w) fusion map, waiting for the batch if it is still running."""
        return self.batch.result()[self.row:self.row + 1]


class OnnxWindowNet:
    """The ONNX export has no per-frame graph: each update re-embeds the window's raw frames."""

    incremental = False

    def __init__(self, model: Any) -> None:
        self.model = model

    def embed_window(self, raw: np.ndarray) -> np.ndarray:
        """(T, J, H, W) raw heatmaps -> (D, P); the graph normalises."""
        return self.model.run(raw[None])[0]


def frame_net_for(embedder: Any, workers: int | None = None, threads: int = 1) -> TorchFrameNet | OnnxWindowNet:
    """The per-frame network of a :class:`gaitheat.gallery.service.Embedder`, in its precision
    (``auto``: :func:`gaitheat.device.amp_for`).

    Args:
        embedder: the loaded model.
        workers: network threads (:class:`TorchFrameNet`); None: one per available core on a CPU, one
            on a GPU (its kernels queue on one stream anyway; the thread only overlaps the pose model).
        threads: intra-op threads of each worker.
    """
    from gaitheat.export_onnx import OnnxModel

    if isinstance(embedder.model, OnnxModel):
        return OnnxWindowNet(embedder.model)
    import torch

    from gaitheat.cores import available_cores
    from gaitheat.device import amp_for

    spec = getattr(embedder, "spec", None)
    if not callable(getattr(embedder.model, "frame_maps", None)) or (
            spec is not None and dict(spec.inputs) != {"heatmaps": "heatmaps"}):
        raise ValueError(f"{embedder.checkpoint}: live identification runs GaitHeat on pose heatmaps (or its ONNX "
                         f"export); this checkpoint's model is {type(embedder.model).__name__}")
    device = torch.device(embedder.device or "cpu")
    amp = amp_for(getattr(embedder, "precision", "fp32"), device)
    if workers is None:
        workers = available_cores() if device.type == "cpu" else 1
    return TorchFrameNet(embedder.model.to(device).eval(), device, amp.dtype if amp.autocast else None,
                         workers=workers, threads=threads)


class TrackWindow:
    """The last ``window`` good frames of one person: raw heatmaps, their range, cached features."""

    def __init__(self, window: int) -> None:
        self.raw: collections.deque[np.ndarray] = collections.deque(maxlen=window)  # (J, H, W) float32
        self.ranges: collections.deque[tuple[float, float]] = collections.deque(maxlen=window)
        # (1, C, h, w) each, or a Pending row still in the network
        self.features: collections.deque[Any] = collections.deque(maxlen=window)
        self.used: tuple[float, float] | None = None  # the range the cached features were computed with
        self.refreshes = 0

    def __len__(self) -> int:
        return len(self.raw)

    def window_range(self) -> tuple[float, float]:
        lows, highs = zip(*self.ranges, strict=True)
        return float(min(lows)), float(max(highs))

    def add(self, heatmaps: np.ndarray, net: Any, tol: float) -> None:
        """Append one (J, H, W) frame; compute its features (or re-embed all when the range moved)."""
        pending = self.push(heatmaps, net, tol)
        if pending is not None:
            self.features.append(net.features(pending))

    def push(self, heatmaps: np.ndarray, net: Any, tol: float) -> np.ndarray | None:
        """Append one (J, H, W) frame. Returns its normalised (1, J, H, W) network input for the caller
        to run (batched with other people's frames) and :meth:`features` ``.append``; None when
        nothing is left to run (the range moved: the whole window was just re-embedded; or no cache)."""
        frame = np.asarray(heatmaps, np.float32)
        self.raw.append(frame)
        self.ranges.append((float(frame.min()), float(frame.max())))
        if not net.incremental:
            return None
        lo, hi = self.window_range()
        if self.used is None or _moved(self.used, (lo, hi), tol):
            self.used = (lo, hi)
            self.features.clear()
            stacked = _normalise(np.stack(list(self.raw)), lo, hi)
            self.features.extend(net.features(stacked).split(1))
            self.refreshes += 1
            return None
        return _normalise(frame[None], *self.used)

    def embedding(self, net: Any) -> np.ndarray:
        """(D, P) embedding of the frames in the window."""
        if net.incremental:
            return net.pooled(list(self.features))
        return net.embed_window(np.stack(list(self.raw)))


def _normalise(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """:func:`gaitheat.transforms.normalise_sequence` with a given range."""
    from gaitheat.transforms import EPS

    if hi - lo < EPS:
        return np.zeros_like(x)
    return (x - np.float32(lo)) / np.float32(hi - lo)


def _moved(used: tuple[float, float], now: tuple[float, float], tol: float) -> bool:
    span = max(used[1] - used[0], 1e-6)
    return abs(now[0] - used[0]) > tol * span or abs(now[1] - used[1]) > tol * span


# ----------------------------------------------------------------------------------- events


_LIBC: Any = None


def release_free_memory() -> bool:
    """Return the free memory of every malloc heap to the system (glibc ``malloc_trim(0)``); False, and
    nothing done, outside glibc.

    Why the live loop calls it every ``LiveConfig.trim_every_s``: feature maps are allocated on the network's
    worker threads and freed on others, and freed memory stays in the heap arena it came from, in pieces
    glibc does not give back by itself: resident memory of an endless run climbed 12-20 % between its
    1,000th and 10,000th frame before levelling off, +3 % with a trim every 250 frames at the same speed
    (``benchmarks/live.py`` soak; a trim takes ~10 ms). Fixing glibc's mapping threshold at 1 MB kept it as
    flat but cost ~15 % of the full-width frame rate; fewer arenas (``M_ARENA_MAX=2``) did not help.
    """
    global _LIBC
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if _LIBC is None:
        import ctypes
        import ctypes.util

        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _LIBC.malloc_trim(0)
    return True


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventSink:
    """JSON lines to stdout and/or a file, one flushed line per event (thread-safe); keeps them if asked."""

    def __init__(self, stdout: IO[str] | None = None, path: str | Path | None = None, keep: bool = False) -> None:
        self._outs: list[IO[str]] = [stdout] if stdout is not None else []
        self._file = open(path, "w", buffering=1, encoding="utf-8") if path else None  # noqa: SIM115
        if self._file is not None:
            self._outs.append(self._file)
        self.kept: list[dict[str, Any]] | None = [] if keep else None
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"))
        with self._lock:
            for out in self._outs:
                out.write(line + "\n")
                out.flush()
            if self.kept is not None:
                self.kept.append(event)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


# ----------------------------------------------------------------------------------- identifier


@dataclass
class _Track:
    track_id: int
    window: TrackWindow
    last_seen_t: float
    box: np.ndarray
    frames_seen: int = 0
    good: int = 0  # frames that passed the quality filter
    since_event: int = 0
    revision: int = 0
    name: str | None = None
    distance: float | None = None
    newest_received: float = 0.0


@dataclass
class LiveStats:
    """Counts for the ``stats`` events and the benchmark."""

    processed: int = 0
    started: float = field(default_factory=time.monotonic)
    latencies: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=1000))  # latency_s
    refreshes: int = 0
    embedded: int = 0  # new person-frames given to the network (the rest of re-embedded windows not counted)
    trims: int = 0  # returns of free heap memory to the system (LiveConfig.trim_every_s)

    def fps(self) -> float:
        return self.processed / max(time.monotonic() - self.started, 1e-9)


class LiveIdentifier:
    """Turns tracked people per frame into enter / identity / leave events.

    Args:
        net: :func:`frame_net_for` of the embedder.
        searcher: a :class:`gaitheat.gallery.index.GallerySearcher` (``top_people``).
        threshold: the open-set distance threshold (None: everyone gets their nearest name).
        cfg: settings.
        emit: called with each event dict.

    When the network runs on workers of its own (``net.workers`` > 0), events are written in order by
    one events thread, and an identity is computed there too: it waits for its frames' features while
    :meth:`observe` goes on submitting the next frames, so the network's workers do not sit idle
    while one of them finishes the frame that completes a window. Call :meth:`flush` (``finish``
    does) before reading the events.
    """

    def __init__(self, net: Any, searcher: Any, threshold: float | None, cfg: LiveConfig,
                 emit: Callable[[dict[str, Any]], None]) -> None:
        self.net, self.searcher, self.threshold, self.cfg, self.emit = net, searcher, threshold, cfg, emit
        self.tracks: dict[int, _Track] = {}
        self.stats = LiveStats()
        self.started = self._trimmed = time.monotonic()
        self._writer = (ThreadPoolExecutor(1, thread_name_prefix="gaitheat-live-events")
                        if getattr(net, "workers", 0) > 0 else None)
        self._queued: collections.deque[Future[None]] = collections.deque()
        self._queue_lock = threading.Lock()  # run_live's stats events come from another thread than observe's

    def _later(self, job: Callable[[], None]) -> None:
        """Run ``job`` (which emits) after every job before it: on the events thread, or now."""
        if self._writer is None:
            job()
            return
        with self._queue_lock:
            done = []
            while self._queued and self._queued[0].done():
                done.append(self._queued.popleft())
            self._queued.append(self._writer.submit(job))
        for future in done:
            future.result()  # an error of an earlier job is raised here

    def flush(self) -> None:
        """Wait until every event so far is written (raises the first error among their jobs)."""
        while True:
            with self._queue_lock:
                if not self._queued:
                    return
                future = self._queued.popleft()
            future.result()

    def close(self) -> None:
        """Write what is queued, stop the events thread (later events are written at once) and wait for
        the network's workers (restarted if the net is used again); raises the first error among them."""
        self.flush()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        close = getattr(self.net, "close", None)
        if close is not None:
            close()

    def _event(self, kind: str, frame: int, t: float, **fields: Any) -> None:
        """``t`` is stream time (the leave rule uses it); the event's ``t`` is seconds since the run started."""
        self._later(lambda: self._write(kind, frame, fields))

    def _write(self, kind: str, frame: int, fields: dict[str, Any]) -> None:
        self.emit({"event": kind, "time": utc_now(), "t": round(time.monotonic() - self.started, 3), "frame": frame,
                   **fields})

    def observe(self, frame: int, t: float, received: float, people: dict[str, np.ndarray], ids: np.ndarray) -> None:
        """One processed frame: ``people`` rows (``boxes``, ``heatmaps``, ``keypoints``) and their track ids.

        Args:
            frame: the source frame counter.
            t: stream time of the frame, seconds.
            received: ``time.monotonic()`` arrival of the frame (for ``latency_s``).
        """
        self.stats.processed += 1
        if self.cfg.trim_every_s and time.monotonic() - self._trimmed >= self.cfg.trim_every_s:
            self.stats.trims += release_free_memory()
            self._trimmed = time.monotonic()
        added: list[tuple[_Track, np.ndarray | None]] = []
        for row, track_id in enumerate(ids.tolist()):
            if track_id < 0:
                continue  # ByteTrack names a track at its second frame
            track = self.tracks.get(track_id)
            if track is None:
                track = self._open(track_id, frame, t, people["boxes"][row])
            track.last_seen_t, track.box = t, people["boxes"][row]
            track.frames_seen += 1
            if float(people["keypoints"][row, :, 2].mean()) < self.cfg.min_score:
                continue
            if "crowded" in people and bool(people["crowded"][row]):
                continue  # the crop holds someone else too (extract.ExtractConfig.drop_crowded)
            track.good += 1
            if (track.good - 1) % self.cfg.embed_every:
                added.append((track, None))  # walked, counted, not embedded (LiveConfig.embed_every)
                continue
            added.append((track, track.window.push(people["heatmaps"][row], self.net, self.cfg.range_tol)))
            self.stats.embedded += 1
        runs = [(track, x) for track, x in added if x is not None]
        if runs:  # everyone's new frame in one pass through the network, on its workers (not waited for here)
            batch = self.net.submit(np.concatenate([x for _, x in runs]))
            for row, (track, _) in enumerate(runs):
                track.window.features.append(Pending(batch, row))
        for track, _ in added:
            track.since_event += 1
            track.newest_received = received
            due = track.revision == 0 or track.since_event >= self.cfg.refine_every
            if track.good >= self.cfg.min_frames and len(track.window) and due:
                self._identify(track, frame, t)
        for track in [tr for tr in self.tracks.values() if t - tr.last_seen_t > self.cfg.lost_seconds]:
            self._close(track, frame, t, "lost")

    def _open(self, track_id: int, frame: int, t: float, box: np.ndarray) -> _Track:
        if len(self.tracks) >= self.cfg.max_tracks:
            oldest = min(self.tracks.values(), key=lambda tr: tr.last_seen_t)
            self._close(oldest, frame, t, "evicted")
        track = _Track(track_id, TrackWindow(-(-self.cfg.window // self.cfg.embed_every)), t, box)
        self.tracks[track_id] = track
        self._event("enter", frame, t, track_id=track_id, box=[round(float(v), 1) for v in box[:4]])
        return track

    def _identify(self, track: _Track, frame: int, t: float) -> None:
        track.revision += 1
        track.since_event = 0
        window = track.window
        # what the embedding uses, taken now: the window moves on while the job waits for the features
        frames = list(window.features) if self.net.incremental else np.stack(list(window.raw))
        used, revision, newest = len(window), track.revision, track.newest_received

        def job() -> None:
            emb = self.net.pooled(frames) if self.net.incremental else self.net.embed_window(frames)
            matches = self.searcher.top_people(emb, self.cfg.top_k)
            track.name, track.distance = decide(matches, self.threshold), matches[0][1] if matches else None
            latency = time.monotonic() - newest
            self.stats.latencies.append(latency)
            self._write("identity", frame, {
                "track_id": track.track_id, "name": track.name,
                "distance": None if track.distance is None else round(track.distance, 5),
                "threshold": self.threshold, "frames_used": used, "revision": revision, "latency_s": round(latency, 4),
                "matches": [{"name": n, "distance": round(d, 5)} for n, d in matches]})

        self._later(job)

    def _close(self, track: _Track, frame: int, t: float, reason: str) -> None:
        if reason == "end" and track.good >= self.cfg.min_frames and len(track.window) and track.since_event:
            self._identify(track, frame, t)  # the final word on what the last frames added
        self.stats.refreshes += track.window.refreshes
        del self.tracks[track.track_id]

        def job() -> None:  # after the track's identity jobs: their name and distance
            self._write("leave", frame, {"track_id": track.track_id, "name": track.name,
                                         "distance": None if track.distance is None else round(track.distance, 5),
                                         "frames_seen": track.frames_seen, "reason": reason})

        self._later(job)

    def finish(self, frame: int, t: float) -> None:
        """End of stream (or Ctrl-C): final identities and a leave event for everyone still here, written."""
        for track in list(self.tracks.values()):
            self._close(track, frame, t, "end")
        self.flush()


# ----------------------------------------------------------------------------------- people per frame


class PeopleFinder:
    """Detect, pose and associate the people of one frame, with the extraction code's components.

    The same chain as :func:`gaitheat.extract.extract_video_report` (detector schedule with periodic
    whole-frame sweeps so newcomers are found, the pose model, de-duplication), with association done
    at once (the identifier needs the ids now) instead of on a background thread.
    """

    def __init__(self, cfg: Any, fps: float | Callable[[], float], pose: Any = None) -> None:
        from gaitheat.cores import available_cores
        from gaitheat.detect import DetectionSchedule
        from gaitheat.extract import build_box_source, build_pose
        from gaitheat.track import PersonTracker

        self.cfg = cfg
        self.pose = pose if pose is not None else build_pose(cfg)
        boxes = build_box_source(cfg)

        def build() -> tuple[Any, Any]:
            # At the first frame: a stream's frame rate is known only once it is open.
            rate = (fps() if callable(fps) else fps) or 25.0
            hidden = round(rate * cfg.lost_seconds) if getattr(cfg, "search_hidden", False) else 0
            return (DetectionSchedule(boxes, cfg.detect_every, True, cfg.redetect_lost, hidden),
                    PersonTracker(cfg.tracker, fps=rate, lost_seconds=cfg.lost_seconds))

        self._build = build
        self.schedule: Any = None
        self.tracker: Any = None
        self.carried = np.zeros((0, 5), np.float32)
        self.threaded = cfg.detector_thread and available_cores() > 1
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gaitheat-live-detect")
        self.step = 0

    def __call__(self, rgb: np.ndarray, frame: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(people arrays, (N,) track ids) of one RGB frame."""
        from gaitheat.extract import _covers, _estimate_people  # the extractor's per-frame steps, shared

        if self.schedule is None:
            self.schedule, self.tracker = self._build()
        detected: Any
        if self.threaded and len(self.carried) == 0:
            detected = self.schedule(rgb, frame, self.step, self.carried, helper=self._pool)
        elif self.threaded:
            detected = self._pool.submit(self.schedule, rgb, frame, self.step, self.carried).result
        else:
            detected = self.schedule(rgb, frame, self.step, self.carried)
        followed = self.carried if self.cfg.reuse_landmarks else self.carried[:0]
        found = _estimate_people(rgb, followed, detected, self.pose, self.cfg)
        self.schedule.update(self.carried, found["boxes"])
        if "crowded" in found and len(self.schedule.hidden) and len(found["boxes"]):
            # someone just went behind this person: their crop holds two people (as the extractor marks it)
            found["crowded"] = found["crowded"] | _covers(found["boxes"], self.schedule.hidden)
        self.carried = found["boxes"]
        self.step += 1
        return found, self.tracker.update(found["boxes"])

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def annotate(rgb: np.ndarray, people: dict[str, np.ndarray], ids: np.ndarray, tracks: dict[int, _Track],
             fps: float) -> np.ndarray:
    """BGR frame with each person's box, track id and current name (for the preview / recording)."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for box, track_id in zip(people["boxes"], ids.tolist(), strict=True):
        x1, y1, x2, y2 = (int(v) for v in box[:4])
        track = tracks.get(track_id)
        name = track.name if track is not None and track.name else "..."
        colour = (0, 200, 0) if name not in ("...", UNKNOWN) else (0, 165, 255)
        cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(bgr, f"{track_id}: {name}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
    cv2.putText(bgr, f"{fps:.1f} fps", (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return bgr


def run_live(reader: Any, finder: Callable[[np.ndarray, int], tuple[dict[str, np.ndarray], np.ndarray]],
             identifier: LiveIdentifier, *, fps: float = 0.0, outputs: tuple[Any, ...] = (),
             max_frames: int | None = None, overlap: bool = True) -> LiveStats:
    """The identification loop: frames from ``reader`` until it ends, ``max_frames`` or Ctrl-C.

    With ``overlap`` the identifier works on frame n on its own thread while this one detects and poses
    frame n + 1 (both release the GIL in their kernels); at most one frame is in the identifier at a
    time, and frames reach it in order. The identifier hands the network batch to the net's workers
    (:meth:`TorchFrameNet.submit`, which blocks while all of them are busy: the back-pressure).

    Args:
        reader: a started :class:`gaitheat.live_source.FrameReader` (or anything with ``get``,
            ``ended``, ``stop``, ``delivered``, ``dropped``, ``fps``).
        finder: :class:`PeopleFinder` (or a stand-in with its call signature).
        identifier: receives each processed frame.
        fps: nominal frame rate for stream time (0: the reader's, else 25).
        outputs: annotated-frame sinks (``publish(bgr)`` or ``write(bgr)``).
        max_frames: stop after this many processed frames.
    Returns:
        the stats; the final ``ended`` status event has been emitted and every open track closed,
        also after ``KeyboardInterrupt`` (which is not re-raised: Ctrl-C is a normal way to stop).
    """
    stats = identifier.stats
    frame, t, reason = -1, 0.0, "end of stream"
    last_stats = time.monotonic()
    worker = ThreadPoolExecutor(1, thread_name_prefix="gaitheat-live-embed") if overlap else None
    pending: Any = None
    started = 0
    try:
        while max_frames is None or started < max_frames:
            item = reader.get(timeout=0.5)
            if item is None:
                if reader.ended:
                    reason = getattr(reader, "end_reason", "") or reason
                    break
                continue
            rate = fps or reader.fps or 25.0
            frame, t = item.index, item.index / rate
            people, ids = finder(item.rgb, item.index)
            started += 1
            if pending is not None:
                pending.result()  # the previous frame is through the network (and its errors raised here)
            if worker is not None:
                pending = worker.submit(identifier.observe, frame, t, item.received, people, ids)
            else:
                identifier.observe(frame, t, item.received, people, ids)
            for out in outputs:
                bgr = annotate(item.rgb, people, ids, identifier.tracks, stats.fps())
                (out.publish if hasattr(out, "publish") else out.write)(bgr)
            if time.monotonic() - last_stats >= identifier.cfg.stats_every_s:
                last_stats = time.monotonic()
                identifier._event("status", frame, t, status="stats", **_counts(reader, stats))
        else:
            reason = f"max_frames ({max_frames}) processed"
        if pending is not None:
            pending.result()
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        reader.stop()
        if worker is not None:
            worker.shutdown(wait=True)  # the frame in the network finishes before the final events
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C must not lose the final events
            identifier.finish(frame, t)
            identifier._event("status", frame, t, status="ended", reason=reason, **_counts(reader, stats))
            identifier.close()
    return stats


def _counts(reader: Any, stats: LiveStats) -> dict[str, Any]:
    return {"processed_fps": round(stats.fps(), 2), "processed": stats.processed,
            "received": int(getattr(reader, "delivered", stats.processed)),
            "dropped": int(getattr(reader, "dropped", 0)), "reconnects": int(getattr(reader, "reconnects", 0))}
