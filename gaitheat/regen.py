"""Regenerated heatmaps: a store's keypoints drawn back into Gaussian heatmaps (the paper's Table 4).

``gaitheat regen STORE OUT`` writes, for every sequence of ``STORE``, the same sequence to the same
place under ``OUT`` with its heatmaps replaced by :func:`gaitheat.heatmaps.render_gaussians` of its
keypoints: same frames, same crop boxes, same keypoints (and silhouettes, if any), so training on
``OUT`` instead of ``STORE`` changes the input and nothing else. The keypoints are in heatmap pixels
of the sequence's crop frame, so the Gaussians land where the pose model's peaks were:

* for a store extracted from video, the crop box of each frame is the one the pose model saw, and
  the keypoints are its sub-pixel peaks (:func:`gaitheat.heatmaps.refine_keypoints`; a store
  extracted before that refinement, whose keypoints are integer cells, is refined from its stored
  heatmaps, and the refined keypoints are what the regenerated store holds);
* for keypoint-only data (``gaitheat import-keypoints``), the crop box is the one the importer made
  around the keypoints (the 1.25x-padded 3:4 box, see :mod:`gaitheat.import_keypoints`).

Regenerated files carry ``meta.heatmap_source = "regenerated"`` and record sigma and the peak rule in
``meta.extra["regenerated"]``. The run is resumable (a file already in ``OUT`` is kept; writes are
atomic) and per-file errors are collected while the rest goes on.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from gaitheat.heatmaps import DEFAULT_SIGMA, refine_keypoints, render_gaussians
from gaitheat.interop import TransferSummary
from gaitheat.progress import Progress
from gaitheat.storage import HeatmapSequence, SequenceFile, StoreError, iter_sequence_files, write_sequence

log = logging.getLogger(__name__)

REGENERATED = "regenerated"


def regenerate_sequence(seq: HeatmapSequence, sigma: float = DEFAULT_SIGMA, score_peak: bool = True,
                        where: str | Path = "<sequence>", replaced: str | None = None) -> HeatmapSequence:
    """``seq`` with heatmaps drawn from its keypoints (every other section kept as it is).

    Args:
        seq: a sequence holding ``keypoints`` (T, 17, 3) in heatmap pixels of ``meta.heatmap_size``.
        sigma: Gaussian sigma in heatmap cells.
        score_peak: peak = keypoint score (False: 1).
        where: the file named in errors.
        replaced: the ``heatmap_source`` of the heatmaps this replaces, recorded in meta ("none" when
            there were none; default: from ``seq``).
    Returns:
        a new :class:`HeatmapSequence` with ``heatmaps`` (T, 17, H, W) float32 and
        ``meta.heatmap_source == "regenerated"``.
    Raises:
        StoreError: the sequence holds no keypoints.
    """
    keypoints = seq.require("keypoints", where, needed_by="regenerated heatmaps")
    h, w = seq.meta.heatmap_size
    heatmaps = render_gaussians(keypoints, size=(h, w), sigma=sigma, score_peak=score_peak)
    extra = dict(seq.meta.extra)
    if replaced is None:
        replaced = seq.meta.heatmap_source if seq.heatmaps is not None else "none"
    extra["regenerated"] = {"sigma": float(sigma), "peak": "score" if score_peak else "one", "replaced": replaced}
    meta = dataclasses.replace(seq.meta, heatmap_source=REGENERATED, extra=extra)
    return dataclasses.replace(seq, heatmaps=heatmaps, meta=meta)


def _read_without_heatmaps(file: SequenceFile) -> HeatmapSequence:
    """Every section of ``file`` except the heatmaps, which regeneration replaces.

    Stores extracted before keypoints were decoded to sub-pixel precision hold integer argmax cells;
    their keypoints are refined from the stored heatmaps first (the only case where heatmap chunks are
    decompressed), so their regenerated peaks are not snapped to the grid either.
    """
    arrays = file.arrays()

    def pick(name: str) -> np.ndarray | None:
        arr = arrays.get(name)
        return None if arr is None else arr.copy()

    keypoints = pick("keypoints")
    meta = file.meta
    if keypoints is not None and "heatmaps" in file.sections and np.array_equal(keypoints[..., :2],
                                                                                np.round(keypoints[..., :2])):
        keypoints = refine_keypoints(file.read_heatmaps(), keypoints)
        meta = dataclasses.replace(meta, extra={**meta.extra, "keypoints_refined_from_stored_heatmaps": True})
    return HeatmapSequence(
        heatmaps=None, keypoints=keypoints, frame_indices=arrays["frame_indices"].copy(), meta=meta,
        boxes=pick("boxes"), image_keypoints=pick("image_keypoints"),
        silhouettes=file.read_silhouettes() if "silhouettes" in file.sections else None)


def regen_store(store: str | Path, out: str | Path, sigma: float = DEFAULT_SIGMA, score_peak: bool = True,
                overwrite: bool = False, progress: bool = True) -> TransferSummary:
    """Write the regenerated twin of every sequence of ``store`` under ``out`` (same relative paths).

    Args:
        store: store root to read.
        out: store root to write (must not be ``store``).
        sigma: Gaussian sigma in heatmap cells.
        score_peak: peak = keypoint score (False: 1).
        overwrite: replace files already in ``out`` (default: keep them, which makes reruns resume).
        progress: report progress (a bar on a terminal, periodic lines otherwise).
    Returns:
        the written, skipped (already there) and failed (path -> reason) files.
    """
    store, out = Path(store), Path(out)
    if store.resolve() == out.resolve():
        raise ValueError(f"{out}: the regenerated store must not be the store it is made from")
    summary = TransferSummary()
    files = iter_sequence_files(store)
    with Progress(len(files), desc="regen", unit="sequence", enabled=progress) as bar:
        for path in files:
            target = out / path.relative_to(store)
            bar.update()
            if target.exists() and not overwrite:
                summary.skipped.append(str(target))
                continue
            try:
                file = SequenceFile(path)
                replaced = file.meta.heatmap_source if "heatmaps" in file.sections else "none"
                seq = regenerate_sequence(_read_without_heatmaps(file), sigma, score_peak, where=path,
                                          replaced=replaced)
                write_sequence(target, seq)
            except (StoreError, OSError, ValueError) as exc:
                summary.failed[str(path)] = str(exc)
                log.debug("regen: %s", exc)
                continue
            summary.written.append(str(target))
    return summary
