"""Nearest-neighbour search over gallery embeddings with the evaluation's distance.

The distance between two embeddings ``x, y`` of shape ``(D, P)`` is the one their model is evaluated
with (:mod:`gaitheat.metrics`), recorded per gallery:

* ``euc`` (``euc-strip-mean``, GaitHeat and most models): the mean over the P strips of the
  per-strip Euclidean distance, ``mean_p ||x[:, p] - y[:, p]||`` (spec §5, ``cuda_dist(..., 'euc')``);
* ``cos`` (``cos-strip-mean``, GaitGraph2): ``1 - mean_p <x̂_p, ŷ_p>`` with each strip L2-normalised.
  For per-strip-normalised vectors the plain L2 distance of the flattened ``D*P`` vectors is
  ``sqrt(2 P * cos)``, a monotone function of it, so FAISS's L2 candidates order them exactly.

Two searchers, one contract (``search(queries (Q, D, P), k) -> (distances (Q, k), rows (Q, k))``,
sorted ascending, rows index the vectors the searcher was built from):

* :class:`ExactSearcher`: brute force in numpy, chunked over the gallery so memory stays bounded.
* :class:`FaissSearcher`: a FAISS index proposes candidates by plain L2 on the flattened ``D*P``
  vector (which orders per-strip-normalised embeddings almost like our distance), then the top
  ``candidates`` are re-ranked exactly by the true distance, from raw vectors kept on disk
  (:class:`RawStore`), so the returned distances are exact and only recall can differ. Small
  galleries use an exact ``Flat`` index (then the results equal exact search); large ones a
  compressed ``PCA + IVF + PQ`` index, a few dozen bytes per embedding in memory.

Indexes are built by streaming ``(ids, vectors)`` chunks (:func:`build_faiss_index`) and saved in
a folder; :mod:`gaitheat.gallery.index` keeps one per gallery generation.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaitheat.atomic import atomic_write_text
from gaitheat.metrics import Metric, _augment_gallery, _euclidean_block, _normalise_strips, distance_matrix, strip_major

DEFAULT_CHUNK = 8192  # gallery rows per distance block: (Q, chunk, P) floats at a time
PCA_SAMPLE = 20_000  # rows that fit the projection (330 MB at 256 x 16); the index trains on more, projected


def strip_distances(probe: np.ndarray, gallery: np.ndarray, metric: Metric = "euc") -> np.ndarray:
    """The strip-mean distance ``metric`` (module docstring): :func:`gaitheat.metrics.distance_matrix`.

    Args:
        probe: (Q, D, P) float32.
        gallery: (N, D, P) float32.
        metric: ``euc`` or ``cos``.
    Returns:
        (Q, N) float32.
    """
    return distance_matrix(probe, gallery, metric)


def _flat_unit_strips(vectors: np.ndarray) -> np.ndarray:
    """(N, D, P) -> (N, P*D) float32 with every strip L2-normalised: the layout cosine search wants."""
    strips = _normalise_strips(strip_major(vectors))  # (P, N, D)
    return np.ascontiguousarray(strips.transpose(1, 0, 2).reshape(strips.shape[1], -1))


def _cosine_block(q_flat: np.ndarray, g_flat: np.ndarray, strips: int) -> np.ndarray:
    """(c, P*D) and (n, P*D) unit-strip rows -> (c, n) cosine strip-mean distances."""
    return (1.0 - (q_flat @ g_flat.T) / strips).astype(np.float32, copy=False)


def _merge_topk(best_d: np.ndarray, best_i: np.ndarray, d: np.ndarray, offset: int, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Merge a block's (Q, n) distances into running (Q, k) best lists."""
    kk = min(k, d.shape[1])
    if kk < d.shape[1]:
        part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
    else:
        part = np.tile(np.arange(d.shape[1]), (len(d), 1))
    cand_d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], axis=1)
    cand_i = np.concatenate([best_i, part + offset], axis=1)
    # stable sort on (distance, row) so ties resolve the same way in every searcher
    order = np.lexsort((cand_i, cand_d), axis=1)[:, :k]
    return np.take_along_axis(cand_d, order, 1), np.take_along_axis(cand_i, order, 1)


def exact_topk(queries: np.ndarray, vectors: np.ndarray, k: int, chunk: int = DEFAULT_CHUNK
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``vectors`` (N, D, P) for ``queries`` (Q, D, P); chunked over N.

    Returns:
        distances (Q, k') float32 and rows (Q, k') int64, ascending, k' = min(k, N).
    """
    blocks = ((s, _augment_gallery(strip_major(vectors[s:s + chunk]))) for s in range(0, len(vectors), chunk))
    return _topk_blocks(strip_major(queries), blocks, k)


def _topk_blocks(q: np.ndarray, blocks: Iterable[tuple[int, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_topk` on (P, Q, D) probe strips and (first row, (P, n, D + 2) gallery block) pairs."""
    best_d = np.empty((q.shape[1], 0), dtype=np.float32)
    best_i = np.empty((q.shape[1], 0), dtype=np.int64)
    for start, gallery in blocks:
        best_d, best_i = _merge_topk(best_d, best_i, _euclidean_block(q, gallery), start, k)
    return best_d, best_i


class ExactSearcher:
    """Brute-force search over vectors (N, D, P) held in memory, with the gallery's ``metric``."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray, chunk: int = DEFAULT_CHUNK, metric: Metric = "euc") -> None:
        if metric not in ("euc", "cos"):
            raise ValueError(f"unknown distance metric {metric!r}; use 'euc' or 'cos'")
        self.metric: Metric = metric
        self.chunk = chunk
        self._strips = int(np.asarray(vectors).shape[-1]) if np.asarray(vectors).ndim == 3 else 1
        # laid out once, not on every query: (P, N, D + 2) for euc, (N, P*D) unit strips for cos
        self._gallery = _flat_unit_strips(vectors) if metric == "cos" else _augment_gallery(strip_major(vectors))

    def __len__(self) -> int:
        return int(self._gallery.shape[0 if self.metric == "cos" else 1])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n, chunk = len(self), self.chunk
        if self.metric == "cos":
            q = _flat_unit_strips(queries)
            best_d = np.empty((len(q), 0), dtype=np.float32)
            best_i = np.empty((len(q), 0), dtype=np.int64)
            for s in range(0, n, chunk):
                block = _cosine_block(q, self._gallery[s:s + chunk], self._strips)
                best_d, best_i = _merge_topk(best_d, best_i, block, s, k)
            return best_d, best_i
        return _topk_blocks(strip_major(queries), ((s, self._gallery[:, s:s + chunk]) for s in range(0, n, chunk)), k)


class RawStore:
    """Gallery vectors on disk, row-major ``(N, D, P)``, read back by row with ``pread``.

    ``pread`` rather than a memory map: re-ranking touches a few hundred rows per query, and a map
    would leave every touched page counted in the process's memory as queries accumulate.
    """

    def __init__(self, path: str | Path, shape: tuple[int, ...], dtype: str) -> None:
        self.path = Path(path)
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        size = self.path.stat().st_size
        if size != self.shape[0] * self.row_bytes:
            raise ValueError(f"{self.path}: {size} bytes, expected {self.shape[0]} rows of {self.row_bytes}")
        self._fd = os.open(self.path, os.O_RDONLY)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows (n,) -> float32 (n, D, P); reads in ascending file order."""
        order = np.argsort(rows)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.float32)
        for i in order:
            data = os.pread(self._fd, self.row_bytes, int(rows[i]) * self.row_bytes)
            out[i] = np.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:])
        return out

    def block(self, start: int, stop: int) -> np.ndarray:
        data = os.pread(self._fd, (stop - start) * self.row_bytes, start * self.row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, *self.shape[1:]).astype(np.float32)


@dataclass(frozen=True)
class FaissParams:
    """How the candidate index is built and searched.

    Attributes:
        factory: FAISS ``index_factory`` string ("Flat" = exact L2 over the flattened D*P vector).
        pca_dim: project to this many principal components before the index (0 = no projection).
            Done in numpy by randomised SVD: FAISS's own PCA takes minutes on a 4096-dim input.
        nprobe: IVF lists visited per query (IVF indexes only).
        candidates: rows re-ranked by the true distance per query.
        raw_dtype: dtype of the on-disk vectors used for re-ranking (float16 halves the disk).
        train_size: vectors sampled to train the projection and the index.
    """

    factory: str = "Flat"
    pca_dim: int = 0
    nprobe: int = 1
    candidates: int = 64
    raw_dtype: str = "float32"
    train_size: int = 0

    @classmethod
    def for_size(cls, n: int) -> FaissParams:
        """Defaults by gallery size: exact Flat candidates up to 50,000, then PCA-128 + IVF + SQ8.

        SQ8 (one byte per projected value, 128 bytes per embedding) trains in no time, unlike PQ, and
        at a million embeddings is 128 MB; the IVF list count follows FAISS's guidance (about
        4 sqrt(N)); float16 raw vectors once float32 would pass 2 GB on disk.
        """
        if n <= 50_000:
            return cls(candidates=256)  # exact candidates; a wide re-rank keeps results equal to exact search
        nlist = 1 << round(math.log2(max(256.0, 2 * math.sqrt(n))))
        # measured at 100,000 (benchmarks/gallery.py): recall@5 depends on nprobe (16: 0.99, 32: 1.0),
        # hardly on the re-ranked candidates (64 as good as 256), while each candidate costs a disk read
        return cls(factory=f"IVF{nlist},SQ8", pca_dim=128, nprobe=max(32, nlist // 32), candidates=64,
                   raw_dtype="float32" if n * 4096 * 4 <= 2 << 30 else "float16",
                   train_size=min(n, 40 * nlist))


def fit_pca(sample: np.ndarray, dims: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top principal directions of ``sample`` (n, F) by randomised SVD (Halko et al., 2 power steps).

    Returns:
        mean (F,) and components (F, dims), both float32.
    """
    rng = np.random.default_rng(seed)
    mean = sample.mean(0)
    x = sample - mean  # (n, F); n is capped by the caller (PCA_SAMPLE)
    basis = x @ rng.standard_normal((x.shape[1], dims + 16), dtype=np.float32)  # (n, dims+16)
    for _ in range(2):
        basis, _ = np.linalg.qr(x @ (x.T @ basis))
    _, _, vt = np.linalg.svd(basis.T @ x, full_matrices=False)
    return mean.astype(np.float32), np.ascontiguousarray(vt[:dims].T, dtype=np.float32)


def _flat(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors.reshape(len(vectors), -1), dtype=np.float32)


class _Projection:
    """Flatten (n, D, P) to (n, D*P), strips unit-normalised first for ``cos``; optionally project (PCA)."""

    def __init__(self, mean: np.ndarray | None = None, components: np.ndarray | None = None,
                 metric: Metric = "euc") -> None:
        self.mean, self.components, self.metric = mean, components, metric

    @property
    def dim(self) -> int | None:
        return None if self.components is None else int(self.components.shape[1])

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        flat = _flat_unit_strips(vectors) if self.metric == "cos" else _flat(vectors)
        if self.components is None or self.mean is None:
            return flat
        return np.ascontiguousarray((flat - self.mean) @ self.components)


def _write_raw(chunks: Iterable[tuple[np.ndarray, np.ndarray]], total: int, shape: tuple[int, int], folder: Path,
               params: FaissParams, rng: np.random.Generator, metric: Metric = "euc") -> np.ndarray:
    """Pass one: raw vectors and ids to disk; returns a random sample (n, D*P) to fit the projection."""
    take = min(params.train_size, PCA_SAMPLE) / max(total, 1) if params.pca_dim else 0.0
    flatten = _Projection(metric=metric)  # the PCA is fitted in the space the index searches
    samples: list[np.ndarray] = [np.empty((0, int(np.prod(shape))), dtype=np.float32)]
    ids_out = np.lib.format.open_memmap(folder / "ids.npy", mode="w+", dtype=np.int64, shape=(total,))
    written = 0
    with open(folder / "vectors.raw", "wb") as raw:
        for ids, vecs in chunks:
            if tuple(vecs.shape[1:]) != tuple(shape) or written + len(ids) > total:
                raise ValueError(f"chunk of shape {vecs.shape} does not fit a ({total}, {shape}) gallery")
            raw.write(np.ascontiguousarray(vecs, dtype=params.raw_dtype).tobytes())
            ids_out[written:written + len(ids)] = ids
            written += len(ids)
            if take > 0:
                samples.append(flatten(vecs[rng.random(len(vecs)) < take]))
        raw.flush()
        os.fsync(raw.fileno())
    if written != total:
        raise ValueError(f"expected {total} vectors, got {written}")
    ids_out.flush()
    return np.concatenate(samples)


def build_faiss_index(chunks: Iterable[tuple[np.ndarray, np.ndarray]], total: int, shape: tuple[int, int],
                      folder: str | Path, params: FaissParams, seed: int = 0, metric: Metric = "euc") -> Path:
    """Stream ``(ids (n,), vectors (n, D, P))`` chunks into a new index folder; returns the folder.

    One pass over ``chunks`` writes the raw store and keeps a random training sample; the projection
    and index are then trained on the sample and filled from the raw store block by block, so memory
    holds one block plus the sample, never the whole gallery. ``metric`` is the gallery's distance:
    for ``cos`` the index holds per-strip-normalised vectors (module docstring).
    """
    import faiss

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sample = _write_raw(chunks, total, shape, folder, params, rng, metric)
    projection = _Projection(metric=metric)
    if params.pca_dim:
        mean, components = fit_pca(sample, params.pca_dim, seed)
        np.savez(folder / "pca.npz", mean=mean, components=components)
        projection = _Projection(mean, components, metric)
    del sample
    index = faiss.index_factory(projection.dim or int(np.prod(shape)), params.factory, faiss.METRIC_L2)
    store = RawStore(folder / "vectors.raw", (total, *shape), params.raw_dtype)
    if not index.is_trained:
        rows = np.sort(rng.choice(total, min(total, params.train_size), replace=False))
        index.train(np.concatenate([projection(store.rows(rows[s:s + 10_000]))
                                    for s in range(0, len(rows), 10_000)]))
    for start in range(0, total, 20_000):
        index.add(projection(store.block(start, min(total, start + 20_000))))
    store.close()
    faiss.write_index(index, str(folder / "faiss.index"))
    info = {"total": total, "shape": list(shape), "params": asdict(params), "metric": metric}
    atomic_write_text(folder / "info.json", json.dumps(info, indent=1))
    return folder


class FaissSearcher:
    """Candidates from a FAISS index, re-ranked exactly from the raw store (see the module docstring)."""

    kind = "faiss"

    def __init__(self, folder: str | Path, nprobe: int | None = None, candidates: int | None = None) -> None:
        import faiss

        self.folder = Path(folder)
        info: dict[str, Any] = json.loads((self.folder / "info.json").read_text())
        self.params = FaissParams(**info["params"])
        self.shape = (int(info["total"]), *(int(s) for s in info["shape"]))
        self.index = faiss.read_index(str(self.folder / "faiss.index"))
        if self.index.ntotal != self.shape[0]:
            raise ValueError(f"{self.folder}: index holds {self.index.ntotal} vectors, info says {self.shape[0]}")
        # indexes written before galleries recorded a distance are Euclidean
        self.metric: Metric = "cos" if info.get("metric") == "cos" else "euc"
        self.projection = _Projection(metric=self.metric)
        if self.params.pca_dim:
            with np.load(self.folder / "pca.npz") as pca:
                self.projection = _Projection(pca["mean"], pca["components"], self.metric)
        self.nprobe = nprobe or self.params.nprobe
        self.candidates = candidates or self.params.candidates
        if "IVF" in self.params.factory:
            faiss.extract_index_ivf(self.index).nprobe = self.nprobe
        self.raw = RawStore(self.folder / "vectors.raw", self.shape, self.params.raw_dtype)
        self.ids = np.load(self.folder / "ids.npy")

    def __len__(self) -> int:
        return self.shape[0]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32)
        n_cand = min(len(self), max(self.candidates, k))
        _, cand = self.index.search(self.projection(queries), n_cand)
        out_d = np.full((len(queries), min(k, len(self))), np.inf, dtype=np.float32)
        out_i = np.full(out_d.shape, -1, dtype=np.int64)
        for q, rows in enumerate(cand):
            rows = rows[rows >= 0]
            d = strip_distances(queries[q:q + 1], self.raw.rows(rows), self.metric)[0]
            order = np.lexsort((rows, d))[:out_d.shape[1]]
            out_d[q, :len(order)], out_i[q, :len(order)] = d[order], rows[order]
        return out_d, out_i
