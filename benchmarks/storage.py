"""Storage benchmark: bytes per frame, encode/decode speed and error of the heatmap store.

Compares the ``.ghs`` store with the field's float16 pickles and raw float32, on realistic heatmaps:
by default synthetic walkers (Gaussian joint peaks, sigma about 1.5-2 cells, moving smoothly on a
walking skeleton, over a soft body-shaped shade), or real BlazePose heatmaps extracted from a video
in memory, before any quantisation (``--video PATH``, e.g. Debian's vtest.avi).

    python benchmarks/storage.py [--frames 300] [--video PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gaitheat.storage import HeatmapSequence, SequenceFile, SequenceMeta, encode_sequence


def walking_heatmaps(t: int, seed: int = 0, noise: float = 0.0) -> np.ndarray:
    """(T, 17, 64, 48) sigmoid-like heatmaps of a walking figure (peaks 0.6-0.95, faint body shade).

    ``noise`` adds iid |N(0, noise)| background noise, as regression heatmaps (HRNet) have.
    """
    rng = np.random.default_rng(seed)
    # COCO-17 rest pose in heatmap cells (x, y), neck near (24, 16) like an aligned crop
    rest = np.array([[24, 8], [25, 7], [23, 7], [26, 8], [22, 8], [28, 15], [20, 15], [30, 23], [18, 23],
                     [31, 30], [17, 30], [27, 33], [21, 33], [28, 44], [20, 44], [28, 56], [20, 56]], np.float32)
    phase = np.linspace(0, 4 * np.pi, t)[:, None]
    swing = np.zeros((t, 17, 2), np.float32)
    swing[:, [9, 16], 0] = 4 * np.sin(phase)
    swing[:, [10, 15], 0] = -4 * np.sin(phase)
    swing[:, [13], 0] = 2 * np.sin(phase)
    swing[:, [14], 0] = -2 * np.sin(phase)
    pts = rest[None] + swing + rng.normal(0, 0.3, size=(t, 17, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:48].astype(np.float32)
    sigma = rng.uniform(1.4, 2.0, size=(t, 17, 1, 1)).astype(np.float32)
    peak = rng.uniform(0.6, 0.95, size=(t, 17, 1, 1)).astype(np.float32)
    d2 = (xx - pts[..., 0, None, None]) ** 2 + (yy - pts[..., 1, None, None]) ** 2
    heat = peak * np.exp(-d2 / (2 * sigma**2))
    body = 0.04 * np.exp(-((xx - 24) ** 2 / (2 * 7**2) + (yy - 32) ** 2 / (2 * 22**2)))
    speckle = np.abs(rng.normal(0, noise, size=heat.shape)).astype(np.float32) if noise > 0 else 0.0
    return (heat + body + speckle).astype(np.float32)


def extract_real(video: Path, frames: int) -> list[np.ndarray]:
    """Raw float32 BlazePose heatmaps of every tracked person in the first ``frames`` video frames."""
    from gaitheat.extract import ExtractConfig, extract_video

    tracks = extract_video(video, ExtractConfig(max_frames=frames))
    if not tracks:
        raise SystemExit(f"nobody was tracked in the first {frames} frames of {video}")
    return [track.sequence.heatmaps for track in tracks]


def measure(sequences: list[np.ndarray]) -> dict[str, float]:
    frames = sum(s.shape[0] for s in sequences)
    raw_mb = sum(s.nbytes for s in sequences) / 1e6
    ours = pkl = 0
    enc_s = dec_s = 0.0
    max_err = mean_err_sum = max_ratio = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, heat in enumerate(sequences):
            t = heat.shape[0]
            seq = HeatmapSequence(heat, np.zeros((t, 17, 3), np.float32), np.arange(t),
                                  SequenceMeta("000", "nm-01", "000", created="2026-01-01T00:00:00+00:00"))
            start = time.perf_counter()
            data = encode_sequence(seq)
            enc_s += time.perf_counter() - start
            path = Path(tmp) / f"{i}.ghs"
            path.write_bytes(data)
            ours += len(data)
            pkl += len(pickle.dumps(heat.astype(np.float16), protocol=4))
            start = time.perf_counter()
            back = SequenceFile(path).read_heatmaps()
            dec_s += time.perf_counter() - start
            err = np.abs(back - heat)
            max_err = max(max_err, float(err.max()))
            mean_err_sum += float(err.mean()) * t
            peaks = np.abs(heat).reshape(t, -1).max(axis=1)
            max_ratio = max(max_ratio, float((err.reshape(t, -1).max(axis=1) / np.maximum(peaks, 1e-12)).max()))
    return {
        "frames": frames,
        "bytes_per_frame": ours / frames,
        "float16_bytes_per_frame": pkl / frames,
        "float32_bytes_per_frame": 17 * 64 * 48 * 4,
        "encode_mb_s": raw_mb / enc_s,
        "decode_mb_s": raw_mb / dec_s,
        "max_abs_error": max_err,
        "mean_abs_error": mean_err_sum / frames,
        "max_error_ratio": max_ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300,
                        help="synthetic: frames in all (3 sequences); --video: source frames to extract")
    parser.add_argument("--noise", type=float, default=0.0, help="iid background noise std of the synthetic maps")
    parser.add_argument("--video", type=Path, help="measure real BlazePose heatmaps of this video's people")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    if args.video:
        sequences = extract_real(args.video, args.frames)
        source = f"real BlazePose heatmaps of {args.video.name}"
    else:
        n = max(1, args.frames // 3)
        sequences = [walking_heatmaps(n, seed, args.noise) for seed in range(3)]
        source = f"synthetic walking heatmaps (noise {args.noise})"
    r = measure(sequences)
    print(f"storage benchmark: {r['frames']} frames of {source} (MB/s of float32 heatmaps)")
    print(f"{'format':<22}{'bytes/frame':>14}{'vs float16':>12}")
    ratio = r["bytes_per_frame"] / r["float16_bytes_per_frame"]
    print(f"{'gaitheat .ghs (uint8+zstd)':<22}{r['bytes_per_frame']:>14,.0f}{ratio:>12.3f}")
    print(f"{'float16 pickle':<22}{r['float16_bytes_per_frame']:>14,.0f}{1.0:>12.3f}")
    print(f"{'float32 raw':<22}{r['float32_bytes_per_frame']:>14,.0f}{2.0:>12.3f}")
    print(f"encode {r['encode_mb_s']:.0f} MB/s, decode {r['decode_mb_s']:.0f} MB/s")
    print(f"max abs error {r['max_abs_error']:.5f}, mean abs error {r['mean_abs_error']:.6f}, "
          f"max error / frame peak {r['max_error_ratio']:.5f} (1/255 = {1 / 255:.5f})")
    if args.json:
        print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
