"""Atomic file writes: a temporary file in the same folder, fsync, rename, fsync of the folder.

A reader therefore sees either the old file or the complete new one, never a partial file, even if
the process is killed mid-write. Leftover ``.tmp-*`` files from a killed writer are ignored by every
reader in gaitheat and removed by :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TMP_MARKER = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # Directory fsync makes the rename itself durable; not all platforms allow opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports 'wb' and 'w', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TMP_MARKER}", dir=target.parent)
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def is_temporary(path: str | Path) -> bool:
    """True for the temporary files :func:`atomic_open` creates."""
    return TMP_MARKER in Path(path).name and Path(path).name.startswith(".")


def remove_stale_temporaries(root: str | Path) -> int:
    """Delete temporaries left by killed writers under ``root``; returns how many were removed."""
    count = 0
    for file in Path(root).rglob(f".*{TMP_MARKER}*"):
        if file.is_file():
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
                count += 1
    return count
