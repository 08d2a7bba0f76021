"""Gallery search at scale: query latency, memory and recall for 10k / 100k / 1M embeddings of 256 x 16.

Usage::

    .venv/bin/python benchmarks/gallery.py                       # 10,000, 100,000, 1,000,000
    .venv/bin/python benchmarks/gallery.py --sizes 10000,100000 --queries 100
    .venv/bin/python benchmarks/gallery.py --json                # last line: one JSON object

The galleries are realistic random embeddings (:class:`gaitheat.gallery.simulate.EmbeddingSimulator`:
identities with ``--per-identity`` noisy sequences each, per-strip L2-normalised), streamed in chunks
into the same FAISS index the gallery uses for that size (:meth:`FaissParams.for_size`), with raw
vectors on disk for exact re-ranking. Each size runs in two fresh subprocesses, one building, one
querying, so their peak resident memory (``ru_maxrss``) is measured separately. Queries are new
sequences of enrolled identities, searched one at a time (an operator's ``identify``); latency is
per query, for the top 5, re-ranking included: the warm latency is the median (p50) and p95 over
``--queries`` queries after a warm-up. ``recall@5`` compares against exact search by the true
distance (mean over strips of per-strip Euclidean), streamed over the raw vectors: every query up
to 100,000 embeddings, a fixed sample of ``--recall-queries`` queries above (the exact pass over a
million embeddings reads all 8 GB of them).

A cold ``identify`` is measured first in the query process, before anything else touches the
index: the index files are evicted from the page cache (``posix_fadvise(DONTNEED)``, our files
only), then the searcher is opened (FAISS index, PCA, ids, raw store) and the first query answered
(``cold_identify_ms``: index open + first query; ``cold_import_ms``, importing FAISS and the search
module, is reported beside it, not inside). One build and one cold start per size: a build of a
million embeddings takes minutes, so these are single runs.

JSON keys: ``p50_ms_1m``, ``p95_ms_1m`` (warm), ``cold_identify_ms`` (1M), ``mb_1m`` (the larger
of build and query peak RSS), ``recall5_100k`` (all queries), ``recall5_1m`` (the sample), plus
``sizes`` with every row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 20_000
EXACT_RECALL_LIMIT = 100_000


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _simulator():  # type: ignore[no-untyped-def]
    from gaitheat.gallery.simulate import EmbeddingSimulator

    return EmbeddingSimulator(seed=0)


def _chunks(n: int, per: int):  # type: ignore[no-untyped-def]
    sim = _simulator()
    for start in range(0, n, CHUNK):
        _, vecs = sim.gallery_chunk(start, min(n, start + CHUNK), per)
        yield np.arange(start, start + len(vecs)), vecs


def _queries(n: int, per: int, count: int) -> np.ndarray:
    identities = np.random.default_rng(123).integers(0, max(1, n // per), count)
    return _simulator().sequences(identities, stream=10**9)


def build(n: int, per: int, folder: Path) -> dict[str, float]:
    from gaitheat.gallery.search import FaissParams, build_faiss_index

    params = FaissParams.for_size(n)
    started = time.perf_counter()
    build_faiss_index(_chunks(n, per), n, (256, 16), folder, params)
    return {"build_s": time.perf_counter() - started, "build_mb": _peak_mb(), "factory": params.factory}  # type: ignore[dict-item]


def _evict(folder: Path) -> None:
    """Drop this index's files from the page cache (only ours: nothing else on the machine is touched)."""
    for file in folder.iterdir():
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def query(n: int, per: int, folder: Path, count: int, recall_count: int) -> dict[str, float]:
    q = _queries(n, per, count)
    _evict(folder)
    t0 = time.perf_counter()
    import faiss  # noqa: F401  (the searcher imports it; timed here so the cold open excludes it)

    from gaitheat.gallery.search import FaissSearcher, RawStore, _merge_topk, strip_distances

    imported = time.perf_counter()
    searcher = FaissSearcher(folder)
    searcher.search(q[:1], 5)  # a cold identify: index open + the first query
    cold = {"cold_import_ms": (imported - t0) * 1000.0, "cold_identify_ms": (time.perf_counter() - imported) * 1000.0}
    searcher.search(q[:5], 5)  # warm-up: first touches of the index and raw file
    times, found = [], []
    for row in q:
        t0 = time.perf_counter()
        _, idx = searcher.search(row[None], 5)
        times.append((time.perf_counter() - t0) * 1000.0)
        found.append(idx[0])
    out = {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
           "fastest_ms": float(np.min(times)), **cold,
           "query_mb": _peak_mb(), "index_mb": (folder / "faiss.index").stat().st_size / 2**20,
           "raw_gb": (folder / "vectors.raw").stat().st_size / 2**30}
    # exact search over the same raw vectors: every query up to EXACT_RECALL_LIMIT, a fixed sample above
    pick = np.arange(count) if n <= EXACT_RECALL_LIMIT else \
        np.sort(np.random.default_rng(7).choice(count, min(count, recall_count), replace=False))
    if len(pick):
        raw = RawStore(folder / "vectors.raw", (n, 256, 16), searcher.params.raw_dtype)
        best_d = np.empty((len(pick), 0), np.float32)
        best_i = np.empty((len(pick), 0), np.int64)
        t0 = time.perf_counter()
        for start in range(0, n, CHUNK):  # streamed: one block of raw vectors in memory at a time
            d = strip_distances(q[pick], raw.block(start, min(n, start + CHUNK)))
            best_d, best_i = _merge_topk(best_d, best_i, d, start, 5)
        out["exact_ms_per_query"] = (time.perf_counter() - t0) * 1000.0 / len(pick)
        out["recall5"] = float(np.mean([len(set(found[i]) & set(b)) / 5 for i, b in zip(pick, best_i, strict=True)]))
        out["recall_queries"] = len(pick)
    return out


def _run_worker(*args: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated gallery sizes")
    parser.add_argument("--queries", type=int, default=200, help="queries timed per size (warm latency)")
    parser.add_argument("--recall-queries", type=int, default=100,
                        help=f"sampled queries checked against exact search above {EXACT_RECALL_LIMIT:,} embeddings")
    parser.add_argument("--per-identity", type=int, default=10, help="sequences per identity")
    parser.add_argument("--tmp", default=None, help="scratch folder (removed afterwards); default: system temp")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--worker", nargs=5, metavar=("STAGE", "N", "FOLDER", "QUERIES", "RECALL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        stage, n, folder, count, recall = args.worker
        fn = build(int(n), args.per_identity, Path(folder)) if stage == "build" else \
            query(int(n), args.per_identity, Path(folder), int(count), int(recall))
        print(json.dumps(fn))
        return 0
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="gaitheat-gallery-bench-", dir=args.tmp))
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            folder = scratch / f"n{n}"
            extra = ["--per-identity", str(args.per_identity)]
            row = {"n": n, **_run_worker("build", str(n), str(folder), "0", "0", *extra),
                   **_run_worker("query", str(n), str(folder), str(args.queries), str(args.recall_queries), *extra)}
            row["mb"] = max(row["build_mb"], row["query_mb"])
            rows.append(row)
            print(f"n={n:>9,} {row['factory']:<18} build {row['build_s']:7.1f} s  p50 {row['p50_ms']:6.2f} ms  "
                  f"p95 {row['p95_ms']:6.2f} ms  cold {row['cold_identify_ms']:7.1f} ms  "
                  f"recall@5 {row.get('recall5', float('nan')):.3f}  "
                  f"peak RSS build/query {row['build_mb']:7.0f}/{row['query_mb']:6.0f} MB", file=sys.stderr, flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _print_table(rows)
    if args.json:
        by_n = {r["n"]: r for r in rows}
        big, mid = by_n.get(1_000_000, {}), by_n.get(100_000, {})
        print(json.dumps({"p50_ms_1m": big.get("p50_ms"), "p95_ms_1m": big.get("p95_ms"),
                          "cold_identify_ms": big.get("cold_identify_ms"), "mb_1m": big.get("mb"),
                          "recall5_100k": mid.get("recall5"), "recall5_1m": big.get("recall5"), "sizes": rows}))
    return 0


def _print_table(rows: list[dict]) -> None:  # type: ignore[type-arg]
    print(f"{'embeddings':>11} {'index':<18} {'build s':>8} {'p50 ms':>7} {'p95 ms':>7} {'fastest':>7} "
          f"{'cold ms':>8} {'import ms':>9} {'exact ms':>9} {'recall@5':>8} {'of q':>5} {'index MB':>9} "
          f"{'raw GB':>7} {'peak MB':>8}")
    for r in rows:
        print(f"{r['n']:>11,} {r['factory']:<18} {r['build_s']:>8.1f} {r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} "
              f"{r['fastest_ms']:>7.2f} {r['cold_identify_ms']:>8.1f} {r['cold_import_ms']:>9.0f} "
              f"{r.get('exact_ms_per_query', float('nan')):>9.1f} {r.get('recall5', float('nan')):>8.3f} "
              f"{r.get('recall_queries', 0):>5} {r['index_mb']:>9.1f} {r['raw_gb']:>7.2f} {r['mb']:>8.0f}")
    print("p50 / p95: warm per-query latency (median and 95th percentile; fastest = the single fastest query); "
          "cold: a fresh\n  process, index files evicted from the page cache, index open + first query "
          "(import ms not inside);\n  recall@5 against exact search over 'of q' queries; build and cold are "
          "single runs")


if __name__ == "__main__":
    sys.exit(main())
