"""Inputs benchmark (issue 12): what each stored input costs.

* ``regen_frames_per_s``: ``gaitheat regen`` end to end (read a sequence's keypoints, draw 17 Gaussians
  per frame, quantise, compress, write atomically), frames per second on one core; the median of
  ``--repeats`` runs over a store of walking sequences;
* ``keypoint_only_bytes_per_frame``: bytes per frame of a keypoint-only ``.ghs`` file as
  ``gaitheat import-keypoints`` writes it (keypoints, source-pixel keypoints, crop boxes, frame
  indices, meta), the median over sequences of realistic walking keypoints;
* ``silhouette_*``: the silhouette keys (the ``silhouettes`` helper's part, see :func:`silhouette_keys`).

    python benchmarks/inputs.py [--sequences 8] [--frames 60] [--repeats 5] [--json]

Run it under the heavy lock (``flock /tmp/gaitheat-heavy.lock ...``) for figures worth quoting.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


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


def silhouette_keys() -> dict[str, float]:
    """``silhouette_bytes_per_frame``, ``silhouette_iou_synth``, ``silhouette_extract_overhead``.

    The ``silhouettes`` helper fills this in (issue 12 item 5); until then there are no figures, and
    none are made up: the keys are simply absent.
    """
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--frames", type=int, default=60, help="frames per sequence")
    parser.add_argument("--repeats", type=int, default=5, help="regen runs (the median is reported)")
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
    results.update(silhouette_keys())
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
