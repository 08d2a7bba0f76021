"""Dataset index: one row per stored sequence, the input of training and evaluation.

``gaitheat index ROOT`` scans ``ROOT/<subject>/<condition>/<view>/<name>.ghs`` (reading only the
file headers) and writes ``ROOT/manifest.csv`` atomically. Files that fail validation are listed
with their reason and left out of the manifest.
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
                                rel.as_posix(), file.stat().st_size))
    rows.sort(key=ManifestRow.key)
    return rows, errors


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
        if reader.fieldnames != expected:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {expected}")
        return [ManifestRow(r["subject"], r["condition"], r["view"], r["name"], int(r["frames"]), r["path"],
                            int(r["bytes"])) for r in reader]


def load_manifest(root: str | Path, rebuild: bool = False) -> list[ManifestRow]:
    """The manifest of a store, (re)built by scanning when missing, stale or ``rebuild`` is set.

    Stale means a sequence file is newer than the manifest or the file count differs.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    files = iter_sequence_files(root)
    if not rebuild and path.is_file():
        mtime = path.stat().st_mtime
        rows = read_manifest(path)
        if len(rows) == len(files) and all(f.stat().st_mtime <= mtime for f in files):
            return rows
    rows, errors = scan_store(root)
    for err in errors:  # left out of the manifest, but never silently
        log.warning("skipping %s", err)
    write_manifest(root, rows)
    return rows
