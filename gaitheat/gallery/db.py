"""The gallery database: people, their enrolled sequences and one embedding per sequence, in SQLite.

One file ``G`` (plus SQLite's ``G-wal``/``G-shm`` while open) holds::

    meta(key, value)                 schema version, model checksum, embedding shape, threshold, generation
    people(id, name, created)
    sequences(id, person_id, source, track_id, frames, model_sha256, created, extra)
    embeddings(id, sequence_id, person_id, shape, vector)   vector = float32 (D, P) little-endian blob

Safety rules:

* WAL journal: readers keep reading a consistent snapshot while one writer enrols.
* One ``BEGIN IMMEDIATE`` transaction per enrolment, so a crash (even SIGKILL) mid-enrolment leaves
  the gallery exactly as it was before; SQLite rolls the half-written transaction back on next open.
* The first enrolment pins the model checksum, embedding shape and distance (the model's
  ``spec().distance``: ``euc-strip-mean`` or ``cos-strip-mean``); embeddings of another model or
  distance are refused (:class:`ModelMismatchError`), because distances between two models'
  embeddings mean nothing. Galleries made before the distance was recorded hold ``euc-strip-mean``.
* Every change to the embeddings bumps ``generation``, which search indexes built from the database
  record, so a stale index is detected and rebuilt (:mod:`gaitheat.gallery.search`).
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
DISTANCE_NAME = "euc-strip-mean"  # mean over strips P of the per-strip Euclidean distance (the default)
# a model's spec().distance -> the name a gallery records
DISTANCE_NAMES = {"euc": "euc-strip-mean", "cos": "cos-strip-mean"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sequences (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    source TEXT NOT NULL, track_id INTEGER, frames INTEGER NOT NULL,
    model_sha256 TEXT NOT NULL, created TEXT NOT NULL, extra TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    sequence_id INTEGER NOT NULL UNIQUE REFERENCES sequences(id) ON DELETE CASCADE,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    shape TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS embeddings_person ON embeddings(person_id);
CREATE INDEX IF NOT EXISTS sequences_person ON sequences(person_id);
"""


class GalleryError(Exception):
    """A gallery that is missing, corrupt, of another schema, or used wrongly; names the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ModelMismatchError(GalleryError):
    """Embeddings from a model (or of a shape) other than the one the gallery was built with."""


@dataclass(frozen=True)
class SequenceSource:
    """Where an enrolled embedding came from.

    Attributes:
        source: video path (or ``.ghs`` file) the sequence was extracted from.
        track_id: tracker id of the person within ``source`` (-1 when not tracked).
        frames: number of heatmap frames that went into the embedding.
        extra: JSON-serialisable details (frame range, boxes summary, ...).
    """

    source: str
    track_id: int = -1
    frames: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PersonSummary:
    name: str
    sequences: int
    first_enrolled: str
    last_enrolled: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class GalleryMatrix:
    """All embeddings of a gallery at one generation.

    Attributes:
        ids: (N,) int64 embedding row ids.
        person_index: (N,) int64 index into ``names``.
        names: person names.
        vectors: (N, D, P) float32.
        generation: the database generation these rows belong to.
    """

    ids: np.ndarray
    person_index: np.ndarray
    names: tuple[str, ...]
    vectors: np.ndarray
    generation: int


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def encode_vector(vector: np.ndarray) -> bytes:
    """(D, P) float array -> little-endian float32 bytes."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vector(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").reshape(shape).astype(np.float32)


class GalleryDB:
    """An open gallery database (see the module docstring).

    Args:
        path: the database file.
        create: create the file (and folders) if missing; otherwise a missing file is an error.
        timeout: seconds to wait for another writer before giving up.
    """

    def __init__(self, path: str | Path, create: bool = False, timeout: float = 30.0) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise GalleryError(self.path, "no such gallery (create one with `gaitheat enrol`)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif self.path.is_dir():
            raise GalleryError(self.path, "is a folder, expected a gallery database file")
        elif not create and self.path.stat().st_size == 0:
            # SQLite would take an empty file for a new database and write a schema into it
            raise GalleryError(self.path, "empty file, not a gallery database")
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so each enrolment is one transaction
            self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(self.path, f"not a readable gallery database ({exc})") from exc

    def _init_schema(self) -> None:
        if not self._has_meta():
            with self.transaction():
                # re-checked under the write lock: another process may have created it meanwhile
                self._create_tables()
                for key, value in (("schema_version", str(SCHEMA_VERSION)), ("distance", DISTANCE_NAME),
                                   ("generation", "0"), ("created", _now())):
                    self._conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)", (key, value))
        version = self._meta_raw("schema_version")
        if version is None or int(version) != SCHEMA_VERSION:
            raise GalleryError(self.path, f"schema version {version}, this gaitheat reads {SCHEMA_VERSION}")

    def _create_tables(self) -> None:
        # executescript would COMMIT our transaction first, so run the statements one by one
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._conn.execute(statement)

    def _has_meta(self) -> bool:
        row = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        return row is not None

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> GalleryDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self, write: bool = True) -> _Transaction:
        """``with db.transaction():`` one atomic unit; rolled back on any exception."""
        return _Transaction(self._conn, "BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")

    # ---- metadata --------------------------------------------------------------------------------------------
    def _meta_raw(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._conn.execute("SELECT key, value FROM meta")}

    @property
    def generation(self) -> int:
        return int(self._meta_raw("generation") or 0)

    @property
    def distance(self) -> str:
        """The gallery's distance (:data:`DISTANCE_NAMES`); ``euc-strip-mean`` for older galleries."""
        return self._meta_raw("distance") or DISTANCE_NAME

    @property
    def model_sha256(self) -> str | None:
        return self._meta_raw("model_sha256")

    @property
    def embedding_shape(self) -> tuple[int, ...] | None:
        text = self._meta_raw("embedding_shape")
        return None if text is None else tuple(int(s) for s in text.split("x"))

    @property
    def threshold(self) -> float | None:
        text = self._meta_raw("threshold")
        return None if text is None else float(text)

    def set_threshold(self, value: float, info: dict[str, Any]) -> None:
        """Store the open-set threshold and how it was chosen (calibration summary)."""
        if not np.isfinite(value) or value < 0:
            raise GalleryError(self.path, f"threshold must be a finite non-negative distance, got {value}")
        with self.transaction():
            self._set_meta("threshold", repr(float(value)))
            self._set_meta("threshold_info", json.dumps(info, sort_keys=True))

    def check_model(self, model_sha256: str, shape: tuple[int, ...] | None = None) -> None:
        """Raise :class:`ModelMismatchError` unless ``model_sha256`` (and ``shape``) match the gallery's."""
        pinned, pinned_shape = self.model_sha256, self.embedding_shape
        if pinned is not None and pinned != model_sha256:
            raise ModelMismatchError(
                self.path, f"holds embeddings of model {pinned[:12]}... but this checkpoint is {model_sha256[:12]}...; "
                "embeddings of different models cannot be compared: use the gallery's checkpoint "
                f"({self._meta_raw('checkpoint') or 'path not recorded'}) or enrol into a new gallery")
        if shape is not None and pinned_shape is not None and tuple(shape) != pinned_shape:
            raise ModelMismatchError(
                self.path, f"holds {_shape_text(pinned_shape)} embeddings, got {_shape_text(shape)}")

    # ---- writes ----------------------------------------------------------------------------------------------
    def enrol(self, name: str, items: Iterable[tuple[np.ndarray, SequenceSource]], model_sha256: str,
              checkpoint: str = "", distance: str = DISTANCE_NAME) -> list[int]:
        """Add embeddings for ``name`` (created if new) in ONE transaction; returns the new embedding ids.

        Args:
            name: the person's name.
            items: (embedding (D, P), source) pairs; consumed inside the transaction.
            model_sha256: SHA-256 of the checkpoint that produced the embeddings.
            checkpoint: checkpoint path, recorded (first enrolment) so ``identify`` can find it.
            distance: the model's distance (:data:`DISTANCE_NAMES`), pinned by the first enrolment.
        """
        if distance not in DISTANCE_NAMES.values():
            raise GalleryError(self.path, f"unknown distance {distance!r}; known: {sorted(DISTANCE_NAMES.values())}")
        name = name.strip()
        if not name or name.lower() == "unknown":
            raise GalleryError(self.path, f"invalid person name {name!r}")
        ids: list[int] = []
        with self.transaction():
            self.check_model(model_sha256)
            if self.model_sha256 is not None and self.distance != distance:
                raise ModelMismatchError(self.path, f"holds {self.distance} embeddings, got {distance} ones")
            now = _now()
            self._conn.execute("INSERT OR IGNORE INTO people(name, created) VALUES(?, ?)", (name, now))
            (person_id,) = self._conn.execute("SELECT id FROM people WHERE name=?", (name,)).fetchone()
            for vector, source in items:
                ids.append(self._insert(person_id, vector, source, model_sha256, now))
            if not ids:
                raise GalleryError(self.path, f"nothing to enrol for {name!r}")
            if self.model_sha256 is None:
                self._set_meta("model_sha256", model_sha256)
                self._set_meta("checkpoint", checkpoint)
                self._set_meta("distance", distance)
            self._bump_generation()
        return ids

    def _insert(self, person_id: int, vector: np.ndarray, source: SequenceSource, model_sha256: str, now: str) -> int:
        vector = np.asarray(vector, dtype=np.float32)
        if vector.ndim != 2 or not np.isfinite(vector).all():
            raise GalleryError(self.path, f"embedding from {source.source} must be a finite (D, P) array, "
                                          f"got shape {vector.shape}")
        shape = self.embedding_shape
        if shape is None:
            self._set_meta("embedding_shape", _shape_text(vector.shape))
        elif tuple(vector.shape) != shape:
            raise ModelMismatchError(self.path, f"holds {_shape_text(shape)} embeddings, got "
                                                f"{_shape_text(vector.shape)} from {source.source}")
        cur = self._conn.execute(
            "INSERT INTO sequences(person_id, source, track_id, frames, model_sha256, created, extra) "
            "VALUES(?, ?, ?, ?, ?, ?, ?)",
            (person_id, source.source, source.track_id, source.frames, model_sha256, now, json.dumps(source.extra)))
        cur = self._conn.execute("INSERT INTO embeddings(sequence_id, person_id, shape, vector) VALUES(?, ?, ?, ?)",
                                 (cur.lastrowid, person_id, _shape_text(vector.shape), encode_vector(vector)))
        return int(cur.lastrowid or 0)

    def _bump_generation(self) -> None:
        self._set_meta("generation", str(self.generation + 1))

    def remove(self, name: str) -> int:
        """Delete a person with all their sequences and embeddings; returns how many embeddings went."""
        with self.transaction():
            row = self._conn.execute("SELECT id FROM people WHERE name=?", (name,)).fetchone()
            if row is None:
                raise GalleryError(self.path, f"no person named {name!r}")
            (count,) = self._conn.execute("SELECT COUNT(*) FROM embeddings WHERE person_id=?", row).fetchone()
            self._conn.execute("DELETE FROM people WHERE id=?", row)
            self._bump_generation()
        return int(count)

    # ---- reads -----------------------------------------------------------------------------------------------
    def people(self) -> list[PersonSummary]:
        rows = self._conn.execute(
            "SELECT p.name, COUNT(s.id), MIN(s.created), MAX(s.created), GROUP_CONCAT(s.source, char(10)) "
            "FROM people p LEFT JOIN sequences s ON s.person_id = p.id GROUP BY p.id ORDER BY p.name").fetchall()
        return [PersonSummary(name, int(n), first or "", last or "", tuple(sorted(set((src or "").split("\n")) - {""})))
                for name, n, first, last, src in rows]

    def count(self) -> int:
        (n,) = self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()
        return int(n)

    def people_count(self) -> int:
        (n,) = self._conn.execute("SELECT COUNT(*) FROM people").fetchone()
        return int(n)

    def names(self) -> set[str]:
        return {str(name) for (name,) in self._conn.execute("SELECT name FROM people")}

    def stats(self) -> dict[str, Any]:
        meta = self.meta()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {
            "path": str(self.path), "people": self.people_count(), "embeddings": self.count(),
            "embedding_shape": meta.get("embedding_shape"), "model_sha256": meta.get("model_sha256"),
            "checkpoint": meta.get("checkpoint"), "distance": meta.get("distance"),
            "threshold": self.threshold, "threshold_info": json.loads(meta.get("threshold_info", "null")),
            "generation": self.generation, "created": meta.get("created"), "bytes_on_disk": size,
        }

    def load_matrix(self) -> GalleryMatrix:
        """All embeddings and their people, read in one snapshot so they match ``generation``."""
        with self.transaction(write=False):
            generation = self.generation
            people = self._conn.execute("SELECT id, name FROM people ORDER BY id").fetchall()
            names = tuple(str(name) for _, name in people)
            pid_to_index = {int(pid): i for i, (pid, _) in enumerate(people)}
            shape = self.embedding_shape or (0, 0)
            rows = self._conn.execute("SELECT id, person_id, vector FROM embeddings ORDER BY id").fetchall()
        vectors = np.empty((len(rows), *shape), dtype=np.float32)
        ids = np.empty(len(rows), dtype=np.int64)
        person_index = np.empty(len(rows), dtype=np.int64)
        for i, (eid, pid, blob) in enumerate(rows):
            ids[i], person_index[i] = eid, pid_to_index[int(pid)]
            vectors[i] = decode_vector(blob, shape)
        return GalleryMatrix(ids, person_index, names, vectors, generation)

    def iter_vectors(self, chunk: int = 10_000, snapshot: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream ``(ids (n,), vectors (n, D, P))`` in id order, ``chunk`` rows at a time.

        Args:
            chunk: rows per item.
            snapshot: read inside its own read transaction; pass False when the caller holds one.
        """
        if snapshot:
            with self.transaction(write=False):
                yield from self._iter_vectors(chunk)
        else:
            yield from self._iter_vectors(chunk)

    def _iter_vectors(self, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        shape = self.embedding_shape or (0, 0)
        cursor = self._conn.execute("SELECT id, vector FROM embeddings ORDER BY id")
        while rows := cursor.fetchmany(chunk):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, np.stack([decode_vector(r[1], shape) for r in rows])

    def people_of(self, embedding_ids: np.ndarray) -> dict[int, str]:
        """Map embedding ids to person names."""
        out: dict[int, str] = {}
        unique = [int(i) for i in np.unique(embedding_ids) if i >= 0]
        for start in range(0, len(unique), 500):
            part = unique[start:start + 500]
            marks = ",".join("?" * len(part))
            out.update((int(e), str(n)) for e, n in self._conn.execute(
                f"SELECT e.id, p.name FROM embeddings e JOIN people p ON p.id = e.person_id WHERE e.id IN ({marks})",
                part))
        return out

    def integrity_check(self) -> str:
        (result,) = self._conn.execute("PRAGMA integrity_check").fetchone()
        return str(result)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection, begin: str) -> None:
        self._conn, self._begin = conn, begin

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute(self._begin)
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")
