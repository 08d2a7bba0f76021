"""gaitheat regen: the store's keypoints drawn back into heatmaps, the same frames and crop boxes (Table 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gaitheat.cli import main
from gaitheat.config import load_config
from gaitheat.extract import ExtractConfig
from gaitheat.extract_store import extract_to_store
from gaitheat.heatmaps import keypoints_from_heatmaps, refine_keypoints
from gaitheat.regen import regen_store
from gaitheat.storage import HeatmapSequence, SequenceFile, SequenceMeta, iter_sequence_files, write_sequence
from tests.conftest import gaussian_heatmaps
from tests.test_extract import write_clip


def _sequence(rng: np.random.Generator, t: int = 6, **sections: np.ndarray | None) -> HeatmapSequence:
    heat = gaussian_heatmaps(t, rng)
    parts: dict[str, np.ndarray | None] = {"heatmaps": heat, "keypoints": keypoints_from_heatmaps(heat)}
    parts.update(sections)
    return HeatmapSequence(frame_indices=np.arange(t, dtype=np.int64) * 2, meta=SequenceMeta("001", "nm-01", "090"),
                           boxes=np.tile(np.float32([10, 20, 40, 60]), (t, 1)), **parts)  # type: ignore[arg-type]


def test_bad_files_fail_alone_and_the_run_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    store = tmp_path / "store"
    write_sequence(store / "001/nm-01/090/a.ghs", _sequence(rng))
    sil = np.zeros((6, 64, 44), np.uint8)
    write_sequence(store / "001/nm-01/090/silhouettes_only.ghs", _sequence(rng, heatmaps=None, keypoints=None,
                                                                           silhouettes=sil))
    (store / "002/nm-01/090").mkdir(parents=True)
    (store / "002/nm-01/090/corrupt.ghs").write_bytes(b"GAITHEAT" + b"\0" * 40)
    summary = regen_store(store, tmp_path / "regen", sigma=1.5, score_peak=False, progress=False)
    assert len(summary.written) == 1 and len(summary.failed) == 2
    assert "has no 'keypoints' section (needed by regenerated heatmaps)" in summary.failed[
        str(store / "001/nm-01/090/silhouettes_only.ghs")]
    assert "corrupt.ghs" in summary.failed[str(store / "002/nm-01/090/corrupt.ghs")]
    raw, regen = SequenceFile(store / "001/nm-01/090/a.ghs"), SequenceFile(tmp_path / "regen/001/nm-01/090/a.ghs")
    assert regen.meta.heatmap_source == "regenerated" and raw.meta.heatmap_source == "pose_model"
    assert regen.meta.extra["regenerated"] == {"sigma": 1.5, "peak": "one", "replaced": "pose_model"}
    for name in ("keypoints", "frame_indices", "boxes"):
        np.testing.assert_array_equal(regen.arrays()[name], raw.arrays()[name])
    # peak one, not the score (0.5-0.95 here), less the fall-off to a cell a quarter cell off each way
    assert regen.read_heatmaps().max(axis=(2, 3)).min() >= np.exp(-0.125 / (2 * 1.5**2)) - 0.005
    # a store extracted before sub-pixel decoding (integer cells): refined from its stored heatmaps first
    heat = gaussian_heatmaps(6, rng)
    write_sequence(store / "003/nm-01/090/old.ghs",
                   _sequence(rng, heatmaps=heat, keypoints=keypoints_from_heatmaps(heat, subpixel=False)))
    regen_store(store, tmp_path / "regen", progress=False)
    old = SequenceFile(tmp_path / "regen/003/nm-01/090/old.ghs")
    stored = SequenceFile(store / "003/nm-01/090/old.ghs")
    np.testing.assert_array_equal(old.keypoints, refine_keypoints(stored.read_heatmaps(), stored.keypoints))
    assert (np.abs(old.keypoints[..., :2] - stored.keypoints[..., :2]) == 0.25).mean() > 0.5
    assert old.meta.extra["keypoints_refined_from_stored_heatmaps"] is True
    assert "keypoints_refined_from_stored_heatmaps" not in regen.meta.extra
    # the CLI: resumes (the written file is kept), still reports the two failures, exit status 1
    assert main(["regen", str(store), str(tmp_path / "regen"), "--no-progress"]) == 1
    out = capsys.readouterr()
    assert "regenerated 0, skipped 2 (already there), failed 2" in out.out and "corrupt.ghs" in out.err
    assert main(["regen", str(store), str(store)]) == 2


@pytest.mark.slow
def test_regenerated_peaks_are_the_pose_models_peaks_on_vtest(media_dir: Path, tmp_path: Path) -> None:
    """vtest.avi through the real BlazePose model, then regen: the argmax of >= 95 % of the confident
    joints (score >= 0.5) is the same cell in the raw and the regenerated store."""
    clip = write_clip(media_dir / "vtest.avi", tmp_path / "clips" / "vtest.avi", 100, 40)
    extract_to_store([clip], tmp_path / "raw", load_config(ExtractConfig, None, ["min_frames=8"]))
    summary = regen_store(tmp_path / "raw", tmp_path / "regen", progress=False)
    files = iter_sequence_files(tmp_path / "raw")
    assert len(files) >= 2 and len(summary.written) == len(files) and not summary.failed
    same, confident = 0, 0
    for file in files:
        raw, regen = SequenceFile(file).read(), SequenceFile(tmp_path / "regen" / file.relative_to(tmp_path / "raw"))
        assert raw.heatmaps is not None and raw.keypoints is not None
        np.testing.assert_array_equal(regen.arrays()["frame_indices"], raw.frame_indices)
        np.testing.assert_array_equal(regen.arrays()["boxes"], raw.boxes)
        # sub-pixel keypoints from extraction: a quarter cell off the argmax at most, not snapped to it
        offsets = np.abs(raw.keypoints[..., :2] - np.round(raw.keypoints[..., :2]))
        assert set(np.unique(offsets)) <= {0.0, 0.25} and (offsets == 0.25).mean() > 0.5
        raw_cells = keypoints_from_heatmaps(raw.heatmaps, subpixel=False)
        regen_cells = keypoints_from_heatmaps(regen.read_heatmaps(), subpixel=False)
        mask = raw.keypoints[..., 2] >= 0.5
        same += int((raw_cells[..., :2] == regen_cells[..., :2]).all(-1)[mask].sum())
        confident += int(mask.sum())
    assert confident > 300 and same / confident >= 0.95, (same, confident)
