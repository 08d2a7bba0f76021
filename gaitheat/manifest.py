"""Dataset index: one row per stored sequence, the input of training and evaluation.

``gaitheat index ROOT`` scans ``ROOT/<subject>/<condition>/<view>/<name>.ghs`` (reading only the
file headers) and writes ``ROOT/manifest.csv`` atomically. Files that fail validation are listed
with their reason and left out of the manifest.

Columns: ``subject, condition, view, name, frames, path, bytes, sections``. ``sections`` lists the
array sections a file holds, '+'-joined and sorted (``heatmaps+keypoints+silhouettes``), so a
dataset can refuse a model whose input a file lacks before reading anything. A manifest written
before that column existed still reads (``sections`` empty: unknown), and :func:`load_manifest`
rebuilds it.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from gaitheat.atomic import atomic_write_text
from gaitheat.storage import SUFFIX, SequenceFile, StoreError, iter_sequence_files

MANIFEST_NAME = "manifest.csv"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestRow:
    """One stored sequence. ``path`` is relative to the store root."""

    subject: str
    condition: str
    view: str
    name: str
    frames: int
    path: str
    bytes: int
    sections: str = ""  # '+'-joined sorted section names; "" = unknown (a manifest older than the column)

    @property
    def section_set(self) -> frozenset[str] | None:
        """The sections the file holds, or None when the manifest predates the column."""
        return frozenset(self.sections.split("+")) if self.sections else None

    def key(self) -> tuple[str, str, str, str]:
        return self.subject, self.condition, self.view, self.name


def scan_store(root: str | Path, verify: bool = False) -> tuple[list[ManifestRow], list[StoreError]]:
    """Index every sequence file under ``root``.

    Args:
        root: store root.
        verify: also decompress every chunk to check its checksum (slow; headers are always checked).
    Returns:
        (rows sorted by subject/condition/view/name, errors for files that failed validation).
    """
    root = Path(root)
    rows, errors = [], []
    for file in iter_sequence_files(root):
        rel = file.relative_to(root)
        subject, condition, view = rel.parts[:3]
        try:
            seq = SequenceFile(file)
            if verify:
                seq.verify()
        except StoreError as exc:
            errors.append(exc)
            continue
        rows.append(ManifestRow(subject, condition, view, file.name[: -len(SUFFIX)], seq.num_frames,
                                rel.as_posix(), file.stat().st_size, join_sections(seq.sections)))
    rows.sort(key=ManifestRow.key)
    return rows, errors


def join_sections(sections: frozenset[str] | set[str]) -> str:
    """The ``sections`` column's form: sorted, '+'-joined."""
    return "+".join(sorted(sections))


def write_manifest(root: str | Path, rows: list[ManifestRow]) -> Path:
    """Write ``ROOT/manifest.csv`` atomically; returns its path."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(ManifestRow)])
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    path = Path(root) / MANIFEST_NAME
    atomic_write_text(path, buf.getvalue())
    return path


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of a manifest CSV (``path`` may be the CSV or the store root)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        expected = [f.name for f in fields(ManifestRow)]
        if reader.fieldnames not in (expected, expected[:-1]):  # without `sections`: an older manifest
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {expected}")
        return [ManifestRow(r["subject"], r["condition"], r["view"], r["name"], int(r["frames"]), r["path"],
                            int(r["bytes"]), r.get("sections") or "") for r in reader]


def load_manifest(root: str | Path, rebuild: bool = False) -> list[ManifestRow]:
    """The manifest of a store, (re)built by scanning when missing, stale or ``rebuild`` is set.

    Stale means a sequence file is newer than the manifest, the file count differs, or the manifest
    predates the ``sections`` column.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    files = iter_sequence_files(root)
    if not rebuild and path.is_file():
        mtime = path.stat().st_mtime
        rows = read_manifest(path)
        if (len(rows) == len(files) and all(r.sections for r in rows)
                and all(f.stat().st_mtime <= mtime for f in files)):
            return rows
    rows, errors = scan_store(root)
    for err in errors:  # left out of the manifest, but never silently
        log.warning("skipping %s", err)
    write_manifest(root, rows)
    return rows
