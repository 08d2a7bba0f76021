"""OpenGait silhouette pickles -> silhouette-only sequences in the gaitheat store.

OpenGait's ``datasets/pretreatment.py`` writes one pickle per sequence::

    <root>/<subject>/<condition>/<view>/<name>.pkl     # uint8 (T, 64, 64), aligned silhouettes

and its data loader cuts 10 columns either side to ``(T, 64, 44)``; trees saved after that cut
hold ``(T, 64, 44)``. Both are accepted and stored as ``(T, 64, 44)``
(:func:`gaitheat.silhouettes.cut_opengait_width`) in ``<store>/<subject>/<condition>/<view>/<name>.ghs``,
a sequence with a ``silhouettes`` section only, so a user's licensed silhouettes (CASIA-B, OU-MVLP,
GREW, ...) sit in the same store as extracted heatmaps. Values are kept as they are: OpenGait's
bicubic resize leaves grey edges (1..254), which its models see; extracted silhouettes are 0/255.

Pickles are untrusted input: they go through :func:`gaitheat.interop.load_array_pickle` (the
restricted unpickler, which refuses every global but what a plain numeric array needs and bounds
allocations by the file's size). ``float_*.pkl`` / ``pose_*.pkl`` files (the heatmap trees of
``import-pkl``) are left alone. A bad file is recorded with its reason and the rest is imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaitheat.interop import PickleRejected, TransferSummary, load_array_pickle
from gaitheat.silhouettes import cut_opengait_width
from gaitheat.storage import HeatmapSequence, SequenceMeta, StoreError, sequence_path, write_sequence

MAX_PICKLE_BYTES = 1 << 30  # 260k frames of 64x64: far above any real sequence
_OTHER_PICKLES = ("float_", "pose_")  # heatmap / keypoint pickles of import-pkl's trees


def load_silhouette_pickle(path: str | Path) -> np.ndarray:
    """One OpenGait silhouette pickle as ``(T, 64, 44)`` uint8.

    Raises:
        PickleRejected: naming the file, for anything but a non-empty ``(T, 64, 64)`` or ``(T, 64, 44)``
            array of integers in 0..255.
    """
    path = Path(path)
    array = load_array_pickle(path, max_bytes=MAX_PICKLE_BYTES)
    if array.ndim != 3 or array.shape[1:] not in ((64, 64), (64, 44)) or array.shape[0] < 1:
        raise PickleRejected(f"{path}: expected silhouettes (T, 64, 64) or (T, 64, 44) with T >= 1, "
                             f"got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu" or array.min() < 0 or array.max() > 255:
            raise PickleRejected(f"{path}: expected uint8 silhouettes (0..255), got {array.dtype}"
                                 + (f" in {array.min()}..{array.max()}" if array.dtype.kind in "iu" else ""))
        array = array.astype(np.uint8)
    return cut_opengait_width(array)


def silhouette_pickles(src: str | Path) -> list[Path]:
    """The silhouette pickles of a tree: ``src/<subject>/<condition>/<view>/*.pkl``, sorted."""
    return sorted(p for p in Path(src).glob("*/*/*/*.pkl")
                  if p.is_file() and not p.name.startswith(_OTHER_PICKLES))


def import_silhouette_tree(src: str | Path, dst: str | Path, overwrite: bool = False) -> TransferSummary:
    """Import every silhouette pickle under ``src`` into the store at ``dst``.

    Existing sequences are skipped unless ``overwrite``; bad files are recorded in ``failed`` and the
    rest of the tree is still imported.
    """
    src, summary = Path(src), TransferSummary()
    for pkl in silhouette_pickles(src):
        subject, condition, view = pkl.relative_to(src).parts[:3]
        try:
            target = sequence_path(dst, subject, condition, view, pkl.stem)
        except ValueError as exc:
            summary.failed[str(pkl)] = f"{pkl}: {exc}"
            continue
        if target.exists() and not overwrite:
            summary.skipped.append(str(target))
            continue
        try:
            silhouettes = load_silhouette_pickle(pkl)
            meta = SequenceMeta(subject=subject, condition=condition, view=view, source=str(pkl),
                                extra={"imported_from": "opengait-silhouette-pkl"})
            write_sequence(target, HeatmapSequence(heatmaps=None, keypoints=None, silhouettes=silhouettes,
                                                   frame_indices=np.arange(len(silhouettes), dtype=np.int64),
                                                   meta=meta))
        except (PickleRejected, StoreError, OSError) as exc:
            summary.failed[str(pkl)] = str(exc)
            continue
        summary.written.append(str(target))
    return summary
