"""Winograd F(4x4, 3x3) against the direct convolutions: GaitHeat's full-width inference on this CPU.

Times :func:`gaitheat.models.inference.optimise_for_inference` with ``winograd=False`` (every conv run by
oneDNN directly) and with the default (the stride-1 3x3 convs of stages 2-4 by
:mod:`gaitheat.models.winograd`), alternating rep by rep on the same random-weight full-width network:

* the layers Winograd replaces, alone (one core, one frame's streams: 3 images, the fusion branch's 1 is
  alike), and
* ``embed`` of one ``--frames``-frame sequence on ``--threads`` cores (what ``evaluate`` and ``enrol`` run),
  and ``frame_maps`` of one person-frame on one core (what each live network worker runs per frame).

Medians of ``--reps`` reps. ``--retain-heap`` keeps freed memory in the heap, as ``gaitheat evaluate``
does on CPU (:mod:`gaitheat.heap`); without it large temporaries are page-faulted in afresh.

    .venv/bin/python benchmarks/winograd.py
    .venv/bin/python benchmarks/winograd.py --json     # last line: one JSON object

JSON keys: ``embed_ms_per_frame_direct`` / ``embed_ms_per_frame_winograd`` / ``embed_speedup``,
``frame_ms_direct`` / ``frame_ms_winograd`` / ``frame_speedup``, ``max_abs_diff`` (between the two
embeddings), ``threads``, ``frames``, ``retain_heap``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def alternate(runs: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds of each callable, the callables interleaved rep by rep after one warm-up call each."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30, help="frames of the embedded sequence")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of the sequence embedding")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--retain-heap", action="store_true", help="keep freed memory in the heap (as evaluate)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from gaitheat.experiment import ModelConfig
    from gaitheat.heap import retain_freed_memory
    from gaitheat.models import build_model
    from gaitheat.models.inference import optimise_for_inference
    from gaitheat.models.winograd import WinogradConv2d, transform_weight, winograd_conv3x3

    if args.retain_heap:
        retain_freed_memory()
    torch.manual_seed(0)
    model = build_model(ModelConfig(), num_classes=10).eval()
    nets = {"direct": optimise_for_inference(model, winograd=False), "winograd": optimise_for_inference(model)}

    print(f"{'layer (one core, 3 images)':<34} {'direct ms':>10} {'winograd ms':>12} {'speed-up':>9}")
    torch.set_num_threads(1)
    with torch.inference_mode():
        for name, module in nets["winograd"].named_modules():
            if not isinstance(module, WinogradConv2d) or not name.startswith("stages"):
                continue
            conv = module.conv
            side = {128: (32, 24), 256: (16, 12), 512: (16, 12)}[conv.in_channels]
            x = torch.rand(3, conv.in_channels, *side).contiguous(memory_format=torch.channels_last)
            weight = conv.weight.contiguous(memory_format=torch.channels_last)
            u, bias = transform_weight(conv.weight), conv.bias
            t = alternate({"direct": lambda x=x, w=weight, b=bias: F.conv2d(x, w, b, padding=1),
                           "winograd": lambda x=x, u=u, b=bias: winograd_conv3x3(x, u, b)}, args.reps)
            label = f"{name} {conv.in_channels}->{conv.out_channels} {side[0]}x{side[1]}"
            print(f"{label:<34} {1e3 * t['direct']:>10.2f} {1e3 * t['winograd']:>12.2f} "
                  f"{t['direct'] / t['winograd']:>8.2f}x")

        frame = torch.rand(1, 17, 64, 48)
        per_frame = alternate({k: (lambda n=n: n.frame_maps(frame, None, branches=("fusion",)))
                               for k, n in nets.items()}, args.reps)
        torch.set_num_threads(args.threads)
        seq = torch.rand(1, args.frames, 17, 64, 48)
        embed = alternate({k: (lambda n=n: n.embed(seq)) for k, n in nets.items()}, args.reps)
        diff = float((nets["direct"].embed(seq) - nets["winograd"].embed(seq)).abs().max())

    result = {
        "embed_ms_per_frame_direct": round(1e3 * embed["direct"] / args.frames, 2),
        "embed_ms_per_frame_winograd": round(1e3 * embed["winograd"] / args.frames, 2),
        "embed_speedup": round(embed["direct"] / embed["winograd"], 3),
        "frame_ms_direct": round(1e3 * per_frame["direct"], 2),
        "frame_ms_winograd": round(1e3 * per_frame["winograd"], 2),
        "frame_speedup": round(per_frame["direct"] / per_frame["winograd"], 3),
        "max_abs_diff": diff,
        "threads": args.threads,
        "frames": args.frames,
        "retain_heap": args.retain_heap,
    }
    print(f"\nembed, {args.frames} frames, {args.threads} threads: {result['embed_ms_per_frame_direct']} -> "
          f"{result['embed_ms_per_frame_winograd']} ms per frame ({result['embed_speedup']}x)")
    print(f"one person-frame, one core (a live worker): {result['frame_ms_direct']} -> "
          f"{result['frame_ms_winograd']} ms ({result['frame_speedup']}x)")
    print(f"max |embedding difference|: {diff:.2e} (medians of {args.reps})")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
