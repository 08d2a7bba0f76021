"""A gallery's searcher: exact in memory for small galleries, a persisted FAISS index for large ones.

The FAISS index lives next to the database, in ``<gallery>.index/``::

    current.json                    {"folder": "gen-<generation>-<random>", "generation": ..., "model_sha256": ...}
    gen-<generation>-<random>/      faiss.index, vectors.raw, ids.npy, info.json (see gaitheat.gallery.search)

An index is stale when its generation differs from the database's (someone enrolled or removed
people since); :func:`open_searcher` then rebuilds it. A build writes a fresh folder and switches
``current.json`` atomically at the end, so a crash mid-build leaves the old index in place, and a
reader that still has the old folder open keeps working (files unlinked on POSIX stay readable).
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gaitheat.atomic import atomic_write_text
from gaitheat.gallery.db import DISTANCE_NAMES, GalleryDB, GalleryError
from gaitheat.gallery.search import ExactSearcher, FaissParams, FaissSearcher, build_faiss_index
from gaitheat.metrics import Metric

log = logging.getLogger(__name__)

SearchKind = Literal["auto", "exact", "faiss"]
EXACT_LIMIT = 50_000  # auto: exact search up to this many embeddings (about 0.8 GB of float32 at 256 x 16)


def index_folder(db_path: str | Path) -> Path:
    path = Path(db_path)
    return path.with_name(path.name + ".index")


@dataclass
class GallerySearcher:
    """Search results mapped back to people.

    Attributes:
        searcher: :class:`ExactSearcher` or :class:`FaissSearcher` over the gallery's rows.
        ids: (N,) embedding ids of the searcher's rows.
        names_of: embedding ids -> {id: person name} (a dict for small galleries, the database for large).
        generation: database generation the searcher was built from.
    """

    searcher: ExactSearcher | FaissSearcher
    ids: np.ndarray
    names_of: Callable[[np.ndarray], dict[int, str]]
    generation: int

    @property
    def kind(self) -> str:
        return self.searcher.kind

    def __len__(self) -> int:
        return len(self.ids)

    def top_people(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` nearest people to one (D, P) query, each at its nearest embedding, nearest first."""
        want = min(len(self), max(4 * k, 16))
        while True:
            dist, rows = self.searcher.search(query[None], want)
            found = self.ids[rows[0][rows[0] >= 0]]
            names = self.names_of(found)
            ranked: dict[str, float] = {}
            for d, e in zip(dist[0], found, strict=False):
                ranked.setdefault(names[int(e)], float(d))
            if len(ranked) >= k or want >= len(self):
                return list(ranked.items())[:k]
            want = min(len(self), want * 4)  # people with many sequences crowded the list: widen it


def gallery_metric(db: GalleryDB) -> Metric:
    """The :mod:`gaitheat.metrics` distance of the gallery's recorded model distance (``euc`` for old galleries)."""
    metrics: dict[str, Metric] = {DISTANCE_NAMES["euc"]: "euc", DISTANCE_NAMES["cos"]: "cos"}
    if db.distance not in metrics:
        raise GalleryError(db.path, f"unknown gallery distance {db.distance!r}; known: {sorted(metrics)}")
    return metrics[db.distance]


def open_searcher(db: GalleryDB, kind: SearchKind = "auto", params: FaissParams | None = None) -> GallerySearcher:
    """A searcher over ``db``'s embeddings at its current generation, building a FAISS index if needed."""
    n = db.count()
    if n == 0:
        raise GalleryError(db.path, "the gallery is empty: enrol someone first")
    use_faiss = kind == "faiss" or (kind == "auto" and n > EXACT_LIMIT)
    if not use_faiss:
        matrix = db.load_matrix()
        table = {int(e): matrix.names[p] for e, p in zip(matrix.ids, matrix.person_index, strict=True)}
        return GallerySearcher(ExactSearcher(matrix.vectors, metric=gallery_metric(db)), matrix.ids,
                               lambda ids: {int(e): table[int(e)] for e in ids}, matrix.generation)
    folder = current_index(db) or build_index(db, params)
    searcher = FaissSearcher(folder)
    # names are looked up per query: a million-row id -> name table would cost more than the search
    return GallerySearcher(searcher, searcher.ids, db.people_of, _folder_generation(folder))


def _folder_generation(folder: Path) -> int:
    return int(folder.name.split("-")[1])


def current_index(db: GalleryDB) -> Path | None:
    """The persisted index folder if it matches the database's generation and model, else None."""
    pointer = index_folder(db.path) / "current.json"
    try:
        data = json.loads(pointer.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); rebuilding the index", pointer, exc)
        return None
    folder = pointer.parent / str(data.get("folder", ""))
    fresh = data.get("generation") == db.generation and data.get("model_sha256") == db.model_sha256
    return folder if fresh and (folder / "info.json").is_file() else None


def build_index(db: GalleryDB, params: FaissParams | None = None, chunk: int = 10_000) -> Path:
    """Build a FAISS index from ``db`` (streamed) and make it current; returns its folder."""
    root = index_folder(db.path)
    root.mkdir(parents=True, exist_ok=True)
    shape = db.embedding_shape
    with db.transaction(write=False):  # one snapshot: count, generation and rows agree
        generation, total = db.generation, db.count()
        if shape is None or total == 0:
            raise GalleryError(db.path, "the gallery is empty: nothing to index")
        params = params or FaissParams.for_size(total)
        folder = root / f"gen-{generation}-{secrets.token_hex(4)}"
        log.info("building a %s index of %d embeddings in %s", params.factory, total, folder)
        build_faiss_index(db.iter_vectors(chunk, snapshot=False), total, (shape[0], shape[1]), folder, params,
                          metric=gallery_metric(db))
    atomic_write_text(root / "current.json", json.dumps(
        {"folder": folder.name, "generation": generation, "model_sha256": db.model_sha256}))
    for old in root.glob("gen-*"):
        if old != folder and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return folder
