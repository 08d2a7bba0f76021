"""Training input pipeline benchmark: lazy frame reads vs whole-sequence reads, and DataLoader throughput.

Builds a temporary store of walking-like Gaussian heatmaps (``--subjects`` x 4 sequences x
``--frames`` frames), then measures on the same files:

* training items (30 random frames, whole-sequence normalisation) read lazily by ``GaitDataset``
  (only the chunks holding the sampled frames are decompressed; min/max from the stored scales);
* the naive way the official loader works without its RAM cache: read and normalise the whole
  sequence, then pick 30 frames;
* test items (all frames in order);
* P x K batches through a DataLoader with 0 and 2 workers (frames per second delivered).

    python benchmarks/data_pipeline.py [--subjects 8] [--frames 90] [--json]

With ``--json`` the last line is one JSON object with keys ``lazy_items_per_s``, ``full_items_per_s``,
``lazy_speedup``, ``test_frames_per_s``, ``loader_frames_per_s_w0``, ``loader_frames_per_s_w2``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def walking_heatmaps(t: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 17, 64, 48) float32 Gaussian joint peaks moving on smooth random paths."""
    yy, xx = np.mgrid[0:64, 0:48].astype(np.float32)
    base = rng.uniform((8, 8), (56, 40), size=(17, 2)).astype(np.float32)
    phase = np.linspace(0, 4 * np.pi, t, dtype=np.float32)[:, None, None]
    centres = base[None] + 3 * np.sin(phase + rng.uniform(0, 6.3, size=(1, 17, 1)).astype(np.float32))
    cy, cx = centres[..., 0, None, None], centres[..., 1, None, None]
    return (0.9 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)).astype(np.float32)


def build_store(root: Path, subjects: int, frames: int) -> None:
    from gaitheat.storage import HeatmapSequence, SequenceMeta, sequence_path, write_sequence

    rng = np.random.default_rng(0)
    for s in range(subjects):
        for c in range(4):
            heat = walking_heatmaps(frames, rng)
            seq = HeatmapSequence(heatmaps=heat, keypoints=np.zeros((frames, 17, 3), np.float32),
                                  frame_indices=np.arange(frames),
                                  meta=SequenceMeta(subject=f"{s:03d}", condition=f"nm-{c + 1:02d}", view="090"))
            write_sequence(sequence_path(root, f"{s:03d}", f"nm-{c + 1:02d}", "090"), seq)


def rate(fn: Callable[[int], object], n: int) -> float:
    """Calls per second of ``fn(i)`` for i in 0..n-1 (after one warm-up call)."""
    fn(0)
    tic = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - tic)


def loader_rate(dataset: object, workers: int, batches: int, p: int, k: int) -> float:
    """Frames per second delivered by a DataLoader over P x K batches."""
    import torch

    from gaitheat.sampling import IdentityBatchSampler

    sampler = IdentityBatchSampler(dataset.labels, p, k, seed=0)  # type: ignore[attr-defined]
    loader: Any = torch.utils.data.DataLoader(dataset, batch_sampler=sampler,  # type: ignore[arg-type]
                                              num_workers=workers, generator=torch.Generator())
    it = iter(loader)
    first = next(it)[0]  # worker start-up is not part of the steady state
    tic = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * first.shape[0] * first.shape[1] / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--items", type=int, default=64, help="items per timing")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from gaitheat.datasets.sequences import GaitDataset, split_rows
    from gaitheat.storage import SequenceFile
    from gaitheat.transforms import normalise_sequence

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_store(root, args.subjects, args.frames)
        rows, subjects = split_rows(root, "custom", "", "train")
        train_ds = GaitDataset(root, rows, subjects, frames=30)
        test_ds = GaitDataset(root, rows, subjects, frames=None)
        n = len(rows)
        rng = np.random.default_rng(1)
        keys = [(i % n, int(rng.integers(2**62))) for i in range(args.items + 1)]

        def naive(i: int) -> np.ndarray:
            index, seed = keys[i]
            full = normalise_sequence(SequenceFile(root / rows[index].path).read_heatmaps())
            return full[train_ds.positions((index, seed))]

        lazy = rate(lambda i: train_ds[keys[i]], args.items)
        full = rate(naive, args.items)
        test = rate(lambda i: test_ds[i % n], min(args.items, 2 * n)) * args.frames
        w0 = loader_rate(train_ds, 0, 4, p=4, k=4)
        w2 = loader_rate(train_ds, 2, 8, p=4, k=4)

    results = {"lazy_items_per_s": lazy, "full_items_per_s": full, "lazy_speedup": lazy / full,
               "test_frames_per_s": test, "loader_frames_per_s_w0": w0, "loader_frames_per_s_w2": w2}
    print(f"store: {args.subjects} subjects x 4 sequences x {args.frames} frames; training items of 30 frames")
    print(f"{'measure':<40}{'value':>12}")
    print(f"{'lazy training items / s':<40}{lazy:>12.1f}")
    print(f"{'whole-sequence read items / s':<40}{full:>12.1f}")
    print(f"{'lazy speed-up':<40}{lazy / full:>12.2f}")
    print(f"{'test frames / s (all frames, in order)':<40}{test:>12.0f}")
    print(f"{'DataLoader frames / s, 0 workers':<40}{w0:>12.0f}")
    print(f"{'DataLoader frames / s, 2 workers':<40}{w2:>12.0f}")
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    main()
