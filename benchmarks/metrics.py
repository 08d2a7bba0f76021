"""Time and peak memory of the retrieval metrics on large random embeddings.

Each size runs in a fresh subprocess, which creates Q = N random (N, 256, 16) float32 probe and
gallery embeddings (10 sequences per subject, 10 views) and computes the distance, CMC, mAP and mINP
with same-subject-same-view removal (:func:`gaitheat.metrics.retrieval_metrics`, chunked). Peak
memory is the child's own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``), inputs included; the RSS
right after creating the inputs is printed too, so the metrics' own share is visible.

    .venv/bin/python benchmarks/metrics.py                 # sizes 2000, 5000, 20000
    .venv/bin/python benchmarks/metrics.py --sizes 2000 --json

With ``--json`` the last line printed is one JSON object with ``seconds_<k>``/``peak_mb_<k>`` per size
(``seconds_20k``, ``peak_mb_20k`` for 20,000).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
from gaitheat import metrics

n, dim, parts, chunk_mb = (int(a) for a in sys.argv[1:5])
rng = np.random.default_rng(0)
probe = rng.standard_normal((n, dim, parts), dtype=np.float32)
gallery = rng.standard_normal((n, dim, parts), dtype=np.float32)
labels = (np.arange(n) // 10).astype(str)
views = (np.arange(n) % 10).astype(str)
rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
tic = time.perf_counter()
res = metrics.retrieval_metrics(probe, gallery, labels, labels, views, views, chunk_bytes=chunk_mb * 2**20)
seconds = time.perf_counter() - tic
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "seconds": seconds, "peak_mb": peak, "inputs_mb": rss_inputs,
                  "rank1": float(res.cmc[0]), "map": res.mean_ap, "valid": res.num_valid}))
"""


def _key(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def measure(n: int, dim: int, parts: int, chunk_mb: int) -> dict[str, float]:
    """Run one size in a fresh interpreter and return its JSON line."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(n), str(dim), str(parts), str(chunk_mb)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child for n={n} failed ({proc.returncode}):\n{proc.stderr}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 20000], help="Q = N values")
    parser.add_argument("--dim", type=int, default=256, help="D")
    parser.add_argument("--parts", type=int, default=16, help="P")
    parser.add_argument("--chunk-mb", type=int, default=256, help="working memory per probe chunk")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    print(f"retrieval metrics (euc distance + CMC + mAP + mINP), Q = N, {args.dim} x {args.parts} embeddings, "
          f"chunk {args.chunk_mb} MB")
    print(f"{'Q = N':>7} {'seconds':>9} {'peak MB':>9} {'inputs MB':>10} {'probes/s':>9}")
    summary: dict[str, float] = {}
    for n in args.sizes:
        r = measure(n, args.dim, args.parts, args.chunk_mb)
        print(f"{n:>7} {r['seconds']:>9.1f} {r['peak_mb']:>9.0f} {r['inputs_mb']:>10.0f} {n / r['seconds']:>9.0f}",
              flush=True)
        summary[f"seconds_{_key(n)}"] = round(r["seconds"], 2)
        summary[f"peak_mb_{_key(n)}"] = round(r["peak_mb"], 1)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
