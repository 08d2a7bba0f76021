"""Synthetic walker rendering cost: CPU milliseconds per frame and per written video.

Usage::

    python benchmarks/synth.py [--frames 40] [--json]

Prints a table (frame size x covariate: render CPU ms per frame; write: render + MJPG video + ground
truth per sequence). With ``--json`` the last line is one JSON object with keys
``render_ms_per_frame_320x240``, ``render_ms_per_frame_640x480`` and ``write_ms_per_frame_320x240``.
CPU time (``process_time``) is reported, so a busy shared machine does not inflate it much.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def _render_ms(size: tuple[int, int], condition: str, frames: int) -> float:
    from gaitheat.synth import render_sequence, sample_identity

    person = sample_identity(np.random.default_rng(0), 0.5)
    render_sequence(person, condition, "054", 2, seed=0, size=size)  # warm-up (imports, caches)
    start = time.process_time()
    for view in ("000", "054", "090", "144"):
        render_sequence(person, condition, view, frames, seed=1, size=size)
    return (time.process_time() - start) * 1000 / (4 * frames)


def _write_ms(frames: int) -> float:
    from gaitheat.synth import write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        start = time.process_time()
        write_dataset(tmp, 2, ["nm-01", "bg-01"], ["036", "090"], frames=frames, seed=0, progress=False)
        return (time.process_time() - start) * 1000 / (8 * frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for size in ((240, 320), (480, 640)):
        for condition in ("nm-01", "bg-01", "cl-01"):
            rows.append((f"{size[1]}x{size[0]}", condition, _render_ms(size, condition, args.frames)))
    write = _write_ms(args.frames)
    print(f"{'frame':>8} {'condition':>9} {'render CPU ms/frame':>20}")
    for size_name, condition, ms in rows:
        print(f"{size_name:>8} {condition:>9} {ms:20.2f}")
    print(f"write (render + MJPG .avi + ground truth), 320x240: {write:.2f} CPU ms/frame")
    if args.json:
        def mean(s: str) -> float:
            return round(float(np.mean([ms for n, _, ms in rows if n == s])), 3)

        print(json.dumps({"render_ms_per_frame_320x240": mean("320x240"),
                          "render_ms_per_frame_640x480": mean("640x480"),
                          "write_ms_per_frame_320x240": round(write, 3)}))


if __name__ == "__main__":
    main()
