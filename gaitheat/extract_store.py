"""Batch extraction into the heatmap store: inputs -> per-input sequences, resumable, sharded, parallel.

:func:`extract_to_store` expands its inputs (:func:`discover_inputs`), takes its shard
(:func:`shard_inputs`), skips inputs already done with the same config, and runs
:func:`extract_one_to_store` on the rest, which writes each input's sequences atomically and then a
done marker. With ``workers=N`` the calling process extracts too, beside ``N - 1`` spawned worker
processes, all taking the next input from one shared queue (largest first), so a process that
started late (a spawned worker spends about 0.2 s starting, plus about 0.8 s of CPU importing
``trackers``) or drew short videos simply takes more of them. Each input's sequences are written by
two threads (quantising, zstd and fsync release the GIL), each file atomically.

The per-video work is :func:`gaitheat.extract.extract_video_report`. This module depends on
:mod:`gaitheat.extract`, never the reverse (no import cycle): import the batch layer from here.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gaitheat.cores import available_cores

if TYPE_CHECKING:
    from gaitheat.extract import ExtractConfig, TrackSequence

DONE_DIR = ".extract-done"  # per-input done markers, under the store root (no .ghs inside)
_WRITERS = 2  # threads writing one input's sequences


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
    for how_not_what in ("created", "detector_thread"):  # settings that do not change the output
        data.pop(how_not_what, None)
    # Silhouettes count only where they are written (BlazePose has a mask, onnx none), and "off" hashes
    # like the markers made before the setting existed, whose stores have none: such a store is redone
    # once when silhouettes are wanted, and stays done with ``silhouettes: false``.
    if data.pop("silhouettes", False) and cfg.pose == "blazepose":
        data["silhouettes"] = True
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
    from gaitheat.extract import build_pose
    from gaitheat.track import import_in_background

    if pooled:
        import cv2

        # Processes are the parallelism; OpenCV's own thread pool per process would oversubscribe the cores.
        cv2.setNumThreads(1)
        import_in_background("trackers")  # overlaps loading the pose model
    _WORKER["cfg"], _WORKER["pose"] = cfg, build_pose(cfg)


def _process_input(source: Path, root: Path) -> dict[str, Any]:
    return extract_one_to_store(source, root, _WORKER["cfg"], pose=_WORKER["pose"])


def extract_one_to_store(source: Path, root: Path, cfg: ExtractConfig, *, pose: Any = None,
                         boxes: Any = None) -> dict[str, Any]:
    """Extract one source into the store and mark it done; returns its summary record.

    Bad input never raises: the record gets ``status="failed"`` and an ``error`` naming the file.
    ``pose`` / ``boxes`` are passed to :func:`~gaitheat.extract.extract_video_report` (built from
    ``cfg`` when None).
    """
    import json

    from gaitheat.atomic import atomic_write_text
    from gaitheat.detect import BoxesFileError
    from gaitheat.extract import extract_video_report, parse_dataset_name
    from gaitheat.storage import StoreError, write_sequence
    from gaitheat.video import VideoError

    record: dict[str, Any] = {"source": str(source), "status": "failed"}
    stamp = input_stamp(source)  # before reading: a file replaced meanwhile is redone next time
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
    paths = [_target(root, source, track, named) for track in report.tracks]
    try:
        # Each file is written atomically, a few at a time: quantising, compressing and fsync release the GIL.
        with ThreadPoolExecutor(min(_WRITERS, len(paths)), thread_name_prefix="gaitheat-write") as writers:
            list(writers.map(write_sequence, paths, [track.sequence for track in report.tracks]))
    except StoreError as exc:
        record["error"] = str(exc)
        return record
    written = [path.relative_to(root).as_posix() for path in paths]
    kept = sum(t.sequence.num_frames for t in report.tracks)
    dropped = sum(t.dropped["frames_dropped"] for t in report.tracks)
    record.update(status="done", sequences=written, frames_kept=kept, frames_dropped=dropped,
                  tracks=len(report.tracks))
    # The marker is written last: a kill before it means the input is redone (same bytes, atomically).
    atomic_write_text(_marker_path(root, source),
                      json.dumps({**record, "config": _config_digest(cfg), "input": stamp}, indent=1))
    return record


def input_stamp(source: Path) -> list[int]:
    """What identifies an input's content cheaply: [bytes, mtime in ns] (a frame folder: [files, bytes, newest mtime]).

    The done marker keeps it, so an input replaced under the same path is extracted again.
    """
    try:
        if source.is_dir():
            stats = [p.stat() for p in source.iterdir() if p.is_file()]
            return [len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]
        stat = source.stat()
        return [stat.st_size, stat.st_mtime_ns]
    except OSError:
        return []


def _finished(root: Path, source: Path, digest: str) -> dict[str, Any] | None:
    """The done record of ``source`` if its marker holds the config ``digest``, the input is unchanged (size,
    modification time) and all its sequences exist."""
    import json

    marker = _marker_path(root, source)
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if data.get("config") != digest or data.get("input") != input_stamp(source):
        return None
    if not all((root / p).is_file() for p in data.get("sequences", [])):
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
        workers: processes extracting on this machine: this one plus ``workers - 1`` spawned ones (each
            loads its own pose model); they share one queue of inputs, largest first.
        shard: ``(i, n)``: handle only shard i of n of the sorted inputs (for Slurm arrays, torchrun, ...).
        progress: a bar on a terminal, else a periodic line on stderr (:mod:`gaitheat.progress`).
    Returns:
        summary dict: counts (videos, done, skipped, failed, tracks, frames kept/dropped) and per-input records.
    """
    from gaitheat.extract import ExtractConfig
    from gaitheat.progress import Progress

    cfg = cfg or ExtractConfig()
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    everything = discover_inputs(list(inputs))
    clashes = _clashes(everything)  # over all inputs, so every shard agrees
    sources = shard_inputs(everything, shard)
    records: dict[Path, dict[str, Any]] = {}
    todo = []
    digest = _config_digest(cfg)
    for source in sources:
        if source in clashes:
            records[source] = {"source": str(source), "status": "failed", "error": clashes[source]}
            continue
        done = _finished(root, source, digest)
        if done is not None:
            records[source] = done
        else:
            todo.append(source)
    bar = Progress(len(sources), initial=len(records), desc="extract", unit="video", enabled=progress)
    if workers <= 1 or len(todo) <= 1:
        _worker_init(cfg)
        for source in todo:
            records[source] = _process_input(source, root)
            bar.update()
    else:
        records.update(_extract_pooled(todo, root, cfg, min(workers, len(todo)), bar.update))
    bar.close()
    ordered = [records[s] for s in sources]
    return _summarise(ordered, shard)


def _extract_pooled(todo: list[Path], root: Path, cfg: ExtractConfig, workers: int,
                    advance: Any) -> dict[Path, dict[str, Any]]:
    """Run ``todo`` on this process and ``workers - 1`` spawned ones, sharing one largest-first queue."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    import cv2

    queue = deque(sorted(todo, key=_input_bytes, reverse=True))
    lock = threading.Lock()
    records: dict[Path, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def take() -> Path | None:
        with lock:
            return queue.popleft() if queue else None

    def feed(pool: ProcessPoolExecutor) -> None:
        # One input at a time per spawned worker, so no input waits behind a busy process.
        try:
            while (source := take()) is not None:
                try:
                    records[source] = pool.submit(_process_input, source, root).result()
                except BrokenProcessPool as exc:
                    # A worker died (killed, out of memory, crashed in native code): report, don't mark done,
                    # and leave the rest of the queue to this process.
                    records[source] = {"source": str(source), "status": "failed",
                                       "error": f"{source}: worker process died ({exc}); rerun to retry"}
                    advance()
                    return
                advance()
        except BaseException as exc:  # re-raised by the calling thread
            errors.append(exc)

    threads_before = cv2.getNumThreads()
    if workers * 2 > available_cores():
        # No core to spare per process: the processes are the parallelism, the detector runs inline.
        cfg = dataclasses.replace(cfg, detector_thread=False)
    # spawn, not fork: LiteRT's thread pools do not survive a fork.
    with ProcessPoolExecutor(workers - 1, mp_context=get_context("spawn"), initializer=_worker_init,
                             initargs=(cfg, True)) as pool:
        feeders = [threading.Thread(target=feed, args=(pool,), name=f"extract-feed-{i}", daemon=True)
                   for i in range(workers - 1)]
        for thread in feeders:
            thread.start()
        try:
            _worker_init(cfg, pooled=True)
            while (source := take()) is not None:
                records[source] = _process_input(source, root)
                advance()
        finally:
            with lock:
                queue.clear()  # on an error here, the feeders stop after their current input
            for thread in feeders:
                thread.join()
            cv2.setNumThreads(threads_before)
    if errors:
        raise errors[0]
    return records


def _input_bytes(source: Path) -> int:
    """Size of an input on disk (a frame folder: its images), the queue's estimate of its work."""
    try:
        if source.is_dir():
            return sum(p.stat().st_size for p in source.iterdir() if p.is_file())
        return source.stat().st_size
    except OSError:
        return 0


def _clashes(sources: list[Path]) -> dict[Path, str]:
    """Sources whose sequences would land on an earlier source's store paths, with the reason."""
    from gaitheat.extract import parse_dataset_name

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
        # inputs read only in part (a truncated video): extracted, but the caller should say so
        "warnings": [r["warning"] for r in records if r.get("warning") and r["status"] == "done"],
        "inputs": records,
    }
