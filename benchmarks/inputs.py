"""Inputs benchmark (issue 12): what each stored input costs.

* ``regen_frames_per_s``: ``gaitheat regen`` end to end (read a sequence's keypoints, draw 17 Gaussians
  per frame, quantise, compress, write atomically), frames per second on one core; the median of
  ``--repeats`` runs over a store of walking sequences;
* ``keypoint_only_bytes_per_frame``: bytes per frame of a keypoint-only ``.ghs`` file as
  ``gaitheat import-keypoints`` writes it (keypoints, source-pixel keypoints, crop boxes, frame
  indices, meta), the median over sequences of realistic walking keypoints;
* ``silhouette_iou_synth`` (goal >= 0.80): synthetic walkers (:mod:`gaitheat.synth`) at views
  054-126 under nm / bg / cl are extracted into a store with default settings; each stored silhouette
  is compared with the renderer's true body mask of its source frame, put through the same alignment
  (:func:`gaitheat.silhouettes.iou_with_true_masks`). The mean over all stored frames; the table
  also gives each view's mean and 5th percentile.
* ``silhouette_bytes_per_frame`` (goal <= 500): bytes the silhouette section adds to the stored
  files (the file encoded with it minus without it, header included), over their frames; on the
  synthetic store and on vtest.avi's people (real video, noisier masks); the larger is the key.
* ``silhouette_extract_overhead`` (goal <= 0.10): extra extraction time per person-frame for
  silhouettes, as a fraction of one pose invoke. The extra work is timed piece by piece, medians of
  repeated runs in thread CPU time (robust on a shared machine): reading and binarising the mask on
  the interpreter's buffer, aligning it (:func:`gaitheat.silhouettes.align_silhouettes`, on the
  run's real masks) and compressing the section (the store's chunks and zstd level). The pose
  invoke is timed the same way on real crops. An end-to-end A/B (the same clip extracted with
  ``silhouettes: true`` and ``false``, alternating, medians of process CPU time) is printed as a
  check; it is noisier than the difference it measures.

    python benchmarks/inputs.py [--sequences 8] [--frames 60] [--repeats 5] [--sil-subjects 2]
                                [--sil-frames 30] [--vtest-frames 60] [--json]

Run it under the heavy lock (``flock /tmp/gaitheat-heavy.lock ...``) for figures worth quoting.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GAITHEAT_TEST_DATA", REPO / ".cache/opencv-doc/usr/share/doc/opencv-doc/examples/data"))
VIEWS = ("054", "072", "090", "108", "126")
CONDITIONS = ("nm-01", "bg-01", "cl-01")


def walking_keypoints(t: int, seed: int) -> np.ndarray:
    """(T, 17, 3) source-pixel COCO-17 keypoints of a person walking across a 640x480 frame, swinging
    limbs, jittering by a pixel as a detector does, scores 0.4-1."""
    rng = np.random.default_rng(seed)
    rest = np.array([[300, 100], [305, 95], [295, 95], [310, 100], [290, 100], [320, 140], [280, 140], [325, 180],
                     [275, 180], [328, 215], [272, 215], [315, 220], [285, 220], [316, 260], [284, 260], [317, 300],
                     [283, 300]], np.float64)
    phase = np.linspace(0, 4 * np.pi, t)[:, None]
    swing = np.zeros((t, 17, 2))
    swing[:, [9, 16], 0] = 20 * np.sin(phase)
    swing[:, [10, 15], 0] = -20 * np.sin(phase)
    swing[:, [13], 0] = 10 * np.sin(phase)
    swing[:, [14], 0] = -10 * np.sin(phase)
    xy = rest[None] + swing + np.array([3.0, 0.0]) * np.arange(t)[:, None, None] + rng.normal(0, 1.0, (t, 17, 2))
    score = rng.uniform(0.4, 1.0, (t, 17, 1))
    return np.concatenate([xy, score], axis=-1).astype(np.float32)


def write_pose_pickles(root: Path, sequences: int, frames: int) -> None:
    """An OpenGait pose-pickle tree ``<id>/nm-01/090/090.pkl`` of walking keypoints."""
    for i in range(sequences):
        folder = root / f"{i + 1:03d}" / "nm-01" / "090"
        folder.mkdir(parents=True)
        (folder / "090.pkl").write_bytes(pickle.dumps(walking_keypoints(frames, i), protocol=4))


def keypoint_only_bytes(store: Path) -> list[float]:
    """Bytes per frame of every sequence file of ``store``."""
    from gaitheat.storage import SequenceFile, iter_sequence_files

    return [f.stat().st_size / SequenceFile(f).num_frames for f in iter_sequence_files(store)]


def regen_speed(store: Path, work: Path, repeats: int) -> list[float]:
    """Frames per second of :func:`gaitheat.regen.regen_store` over ``store``, one value per run."""
    from gaitheat.regen import regen_store
    from gaitheat.storage import SequenceFile, iter_sequence_files

    frames = sum(SequenceFile(f).num_frames for f in iter_sequence_files(store))
    speeds = []
    for r in range(repeats):
        start = time.perf_counter()
        summary = regen_store(store, work / f"regen{r}", progress=False)
        elapsed = time.perf_counter() - start
        if summary.failed:
            raise SystemExit(f"regen failed: {summary.failed}")
        speeds.append(frames / elapsed)
    return speeds


def cpu_median(fn: Callable[[], Any], repeats: int = 7) -> float:
    """Median thread CPU seconds of ``fn()`` over ``repeats`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def synthetic_store(work: Path, subjects: int, frames: int) -> tuple[Path, Path, dict[str, Any]]:
    """Render views 054-126 x nm/bg/cl and extract them; returns (videos, store, extract summary)."""
    from gaitheat.extract import ExtractConfig
    from gaitheat.extract_store import extract_to_store
    from gaitheat.synth import write_dataset

    videos, store = work / "videos", work / "store"
    write_dataset(videos, subjects, CONDITIONS, VIEWS, frames=frames, seed=0, progress=False)
    summary = extract_to_store([videos], store, ExtractConfig())
    return videos, store, summary


def synthetic_iou(videos: Path, store: Path) -> dict[str, Any]:
    """Per-frame IoU of every stored silhouette with the renderer's aligned true mask, by view."""
    from gaitheat.silhouettes import iou_with_true_masks
    from gaitheat.storage import SequenceFile, iter_sequence_files
    from gaitheat.synth import load_body_masks, sequence_paths

    by_view: dict[str, list[float]] = {v: [] for v in VIEWS}
    for path in iter_sequence_files(store):
        seq = SequenceFile(path)
        meta = seq.meta
        video, _ = sequence_paths(videos, meta.subject, meta.condition, meta.view)
        ious = iou_with_true_masks(seq.read_silhouettes(), seq.arrays()["frame_indices"], load_body_masks(video))
        by_view[meta.view].extend(float(v) for v in ious if np.isfinite(v))
    every = [v for values in by_view.values() for v in values]
    return {"mean": float(np.mean(every)), "frames": len(every),
            "views": {v: (float(np.mean(x)), float(np.percentile(x, 5)), len(x)) for v, x in by_view.items() if x}}


def section_bytes(paths: list[Path]) -> tuple[float, int]:
    """Bytes per frame the silhouette section adds to ``paths`` (encoded with minus without), and frames."""
    import dataclasses

    from gaitheat.storage import SequenceFile, encode_sequence

    extra = frames = 0
    for path in paths:
        seq = SequenceFile(path).read()
        if seq.silhouettes is None:
            raise SystemExit(f"{path}: no silhouettes stored")
        extra += len(encode_sequence(seq)) - len(encode_sequence(dataclasses.replace(seq, silhouettes=None)))
        frames += seq.num_frames
    return extra / max(frames, 1), frames


def vtest_paths(work: Path, frames: int) -> list[Path]:
    """vtest.avi's first ``frames`` frames extracted with default settings (its stored sequences)."""
    from gaitheat.extract import ExtractConfig
    from gaitheat.extract_store import extract_to_store

    video = DATA / "vtest.avi"
    if not video.is_file():
        raise SystemExit(f"{video} missing: run `make test` (it fetches Debian's opencv-doc) or set GAITHEAT_TEST_DATA")
    summary = extract_to_store([video], work / "vtest", ExtractConfig(max_frames=frames))
    return [work / "vtest" / p for r in summary["inputs"] for p in r.get("sequences", [])]


def overhead(store: Path, videos: Path) -> dict[str, float]:
    """Silhouette work per person-frame, piece by piece, against one pose invoke (thread CPU medians)."""

    import zlib

    import zstandard

    from gaitheat.crop import crop_person
    from gaitheat.pose.blazepose import _CROP_COLUMNS, MASK_LOGIT_THRESHOLD, BlazePoseBackend
    from gaitheat.silhouettes import align_silhouettes
    from gaitheat.storage import CHUNK_FRAMES, ZSTD_LEVEL, SequenceFile, iter_sequence_files
    from gaitheat.video import decode_frames

    pose = BlazePoseBackend()
    # Real crops: the stored boxes of the first synthetic sequences, cut from their videos.
    crops = []
    for path in iter_sequence_files(store)[:4]:
        seq = SequenceFile(path).read()
        assert seq.boxes is not None
        boxes = dict(zip(seq.frame_indices.tolist(), seq.boxes, strict=True))
        video = videos / seq.meta.subject / seq.meta.condition / seq.meta.view
        for frame in decode_frames(next(video.glob("*.avi"))):
            if frame.index in boxes:
                crops.append(crop_person(frame.rgb, boxes[frame.index], pose.input_size)[0])
    crops_arr = np.stack(crops[:64])
    masks = pose(crops_arr).masks
    assert masks is not None
    n = len(crops_arr)
    invokes = []
    for _ in range(3):  # the model's own CPU time per invoke (thread CPU inside invoke() only)
        before, count = pose.invoke_cpu_seconds, pose.invokes
        pose(crops_arr)
        invokes.append((pose.invoke_cpu_seconds - before) / (pose.invokes - count))
    invoke = statistics.median(invokes)
    interpreter, out = pose._interpreter, np.empty(masks.shape[1:], bool)

    def read_masks() -> None:
        for _ in range(n):
            np.greater(interpreter.tensor(pose._mask)()[0, :, _CROP_COLUMNS, 0], MASK_LOGIT_THRESHOLD, out=out)

    read = cpu_median(read_masks) / n
    align = cpu_median(lambda: align_silhouettes(masks)) / n
    # Writing: the section's compression (storage's chunking and zstd level, with the CRC-32 of each chunk).
    sils = np.concatenate([SequenceFile(p).read_silhouettes() for p in iter_sequence_files(store)[:6]])
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)

    def compress() -> None:
        for start in range(0, len(sils), CHUNK_FRAMES):
            zlib.crc32(compressor.compress(np.ascontiguousarray(sils[start: start + CHUNK_FRAMES]).tobytes()))

    write = cpu_median(compress) / len(sils)
    return {"invoke_s": invoke, "mask_read_s": read, "align_s": align, "write_s": write,
            "ratio": (read + align + write) / invoke}


def end_to_end_ab(videos: Path, work: Path, repeats: int = 3) -> dict[str, float]:
    """CPU seconds per person-frame extracting one clip with and without silhouettes (alternating, medians)."""
    from gaitheat.extract import ExtractConfig
    from gaitheat.extract_store import extract_one_to_store
    from gaitheat.pose.blazepose import BlazePoseBackend

    clip = sorted(videos.rglob("*-nm-01-090.avi"))[0]
    pose = BlazePoseBackend()
    runs: dict[bool, list[float]] = {True: [], False: []}
    person_frames = 1
    for i in range(repeats):
        for flag in (True, False):
            start = time.process_time()
            record = extract_one_to_store(clip, work / f"ab-{flag}-{i}", ExtractConfig(silhouettes=flag), pose=pose)
            runs[flag].append(time.process_time() - start)
            person_frames = record["person_frames"]
    on, off = statistics.median(runs[True]), statistics.median(runs[False])
    return {"on_s_per_person_frame": on / person_frames, "off_s_per_person_frame": off / person_frames,
            "extra_per_person_frame_s": (on - off) / person_frames}


def silhouette_keys(args: argparse.Namespace) -> dict[str, float]:
    """``silhouette_bytes_per_frame``, ``silhouette_iou_synth``, ``silhouette_extract_overhead`` (tables printed)."""
    from gaitheat.storage import iter_sequence_files

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        videos, store, summary = synthetic_store(work, args.sil_subjects, args.sil_frames)
        print(f"synthetic: {summary['done']} videos extracted in {time.perf_counter() - start:.0f} s, "
              f"{summary['failed']} failed", file=sys.stderr)
        iou = synthetic_iou(videos, store)
        synth_bytes, synth_frames = section_bytes(iter_sequence_files(store))
        real_bytes, real_frames = section_bytes(vtest_paths(work, args.vtest_frames))
        cost = overhead(store, videos)
        ab = end_to_end_ab(videos, work)
    print("| view | silhouette IoU, mean | 5th percentile | frames |")
    print("|---|---|---|---|")
    for view, (mean, p5, count) in iou["views"].items():
        print(f"| {view} | {mean:.3f} | {p5:.3f} | {count} |")
    print(f"| all | **{iou['mean']:.3f}** | | {iou['frames']} |")
    print(f"silhouette section: {synth_bytes:.0f} B/frame synthetic ({synth_frames} frames), "
          f"{real_bytes:.0f} B/frame vtest.avi ({real_frames} frames)")
    print(f"per person-frame (thread CPU, medians): pose invoke {cost['invoke_s'] * 1e3:.2f} ms; mask read "
          f"{cost['mask_read_s'] * 1e3:.3f} ms, align {cost['align_s'] * 1e3:.3f} ms, section write "
          f"{cost['write_s'] * 1e3:.3f} ms -> overhead {cost['ratio']:.3f} of the invoke")
    print(f"end-to-end A/B (process CPU per person-frame, medians of 3, noisy): on "
          f"{ab['on_s_per_person_frame'] * 1e3:.2f} ms, off {ab['off_s_per_person_frame'] * 1e3:.2f} ms, "
          f"difference {ab['extra_per_person_frame_s'] * 1e3:+.2f} ms = "
          f"{ab['extra_per_person_frame_s'] / cost['invoke_s']:+.3f} of the invoke")
    return {
        "silhouette_bytes_per_frame": round(max(synth_bytes, real_bytes), 1),
        "silhouette_iou_synth": round(iou["mean"], 4),
        "silhouette_extract_overhead": round(cost["ratio"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--frames", type=int, default=60, help="frames per sequence")
    parser.add_argument("--repeats", type=int, default=5, help="regen runs (the median is reported)")
    parser.add_argument("--sil-subjects", type=int, default=2, help="synthetic subjects (x 5 views x 3 conditions)")
    parser.add_argument("--sil-frames", type=int, default=30, help="frames per synthetic silhouette sequence")
    parser.add_argument("--vtest-frames", type=int, default=60, help="vtest.avi frames for the real-video bytes")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()

    from gaitheat.import_keypoints import import_keypoints

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_pose_pickles(work / "pkl", args.sequences, args.frames)
        summary = import_keypoints(work / "pkl", work / "store", progress=False)
        if summary.failed or len(summary.written) != args.sequences:
            raise SystemExit(f"import failed: {summary.failed}")
        sizes = keypoint_only_bytes(work / "store")
        speeds = regen_speed(work / "store", work, args.repeats)
    results: dict[str, float] = {
        "regen_frames_per_s": round(statistics.median(speeds), 1),
        "keypoint_only_bytes_per_frame": round(statistics.median(sizes), 1),
    }
    results.update(silhouette_keys(args))
    total = args.sequences * args.frames
    print(f"inputs benchmark: {args.sequences} sequences x {args.frames} frames of walking keypoints")
    print(f"{'measure':<34}{'median':>12}{'min':>12}{'max':>12}")
    print(f"{'regen frames/s (' + str(total) + ' frames/run)':<34}{statistics.median(speeds):>12.1f}"
          f"{min(speeds):>12.1f}{max(speeds):>12.1f}")
    print(f"{'keypoint-only bytes/frame':<34}{statistics.median(sizes):>12.1f}{min(sizes):>12.1f}{max(sizes):>12.1f}")
    for key, value in results.items():
        if key.startswith("silhouette_"):
            print(f"{key:<34}{value:>12}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
