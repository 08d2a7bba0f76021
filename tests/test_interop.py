from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import gaussian_heatmaps

from gaitheat.interop import PickleRejected, export_pkl_tree, import_pkl_tree, load_array_pickle
from gaitheat.storage import read_sequence


def write_pkl_tree(root: Path, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    made = {}
    layout = [("001", "nm-01", "000", 12), ("001", "cl-02", "090", 5), ("075", "bg-01", "180", 20)]
    for subject, cond, view, t in layout:
        folder = root / subject / cond / view
        folder.mkdir(parents=True)
        heat = gaussian_heatmaps(t, rng).astype(np.float16)
        pose = rng.uniform(0, 300, size=(t, 17, 3)).astype(np.float32)
        (folder / f"float_{view}.pkl").write_bytes(pickle.dumps(heat))
        (folder / f"pose_{view}.pkl").write_bytes(pickle.dumps(pose, protocol=2))
        made[f"{subject}/{cond}/{view}"] = (heat, pose)
    return made


def test_import_export_round_trip(tmp_path: Path) -> None:
    made = write_pkl_tree(tmp_path / "pkl", np.random.default_rng(0))
    summary = import_pkl_tree(tmp_path / "pkl", tmp_path / "store")
    assert len(summary.written) == 3 and not summary.failed
    for key, (heat, pose) in made.items():
        view = key.split("/")[-1]
        seq = read_sequence(tmp_path / "store" / key / f"{view}.ghs")
        assert seq.meta.subject == key.split("/")[0]
        np.testing.assert_array_equal(seq.image_keypoints, pose)
        # store keypoints are in heatmap pixels: the argmax, refined by a quarter cell at most
        flat = heat.astype(np.float32).reshape(heat.shape[0], 17, -1).argmax(-1)
        np.testing.assert_array_equal(np.round(seq.keypoints[..., 1]), flat // 48)
        np.testing.assert_array_equal(np.round(seq.keypoints[..., 0]), flat % 48)
        assert set(np.unique(np.abs(seq.keypoints[..., :2] - np.round(seq.keypoints[..., :2])))) <= {0.0, 0.25}
    out = export_pkl_tree(tmp_path / "store", tmp_path / "back")
    assert len(out.written) == 3
    for key, (heat, pose) in made.items():
        view = key.split("/")[-1]
        heat2 = load_array_pickle(tmp_path / "back" / key / f"float_{view}.pkl")
        pose2 = load_array_pickle(tmp_path / "back" / key / f"pose_{view}.pkl")
        assert heat2.dtype == np.float16 and heat2.shape == heat.shape
        step = (heat.max(axis=(2, 3)) - heat.min(axis=(2, 3))).astype(np.float32) / 255
        err = np.abs(heat2.astype(np.float32) - heat.astype(np.float32)).max(axis=(2, 3))
        assert np.all(err <= step + 2e-3)  # one quantisation step plus float16 rounding
        np.testing.assert_array_equal(pose2, pose)
    again = import_pkl_tree(tmp_path / "pkl", tmp_path / "store")
    assert len(again.skipped) == 3 and not again.written


class Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pkl/001/nm-01/000"
    folder.mkdir(parents=True)
    (folder / "float_000.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(PickleRejected, match="refusing to load global"):
        load_array_pickle(folder / "float_000.pkl")
    summary = import_pkl_tree(tmp_path / "pkl", tmp_path / "store")
    assert not summary.written and "refusing" in next(iter(summary.failed.values()))
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(("payload", "message"), [
    (pickle.dumps(np.zeros((3, 17, 32, 48), np.float16)), "expected heatmaps"),
    (pickle.dumps({"a": 1}), "refusing|expected a numeric"),
    (pickle.dumps(np.array(["a", "b"])), "expected a numeric"),
    (pickle.dumps(np.full((2, 17, 64, 48), np.nan, np.float16)), "NaN"),
    (b"", "empty file"),
    (pickle.dumps(np.zeros((3, 17, 64, 48), np.float16))[:50], "not a readable pickle"),
])
def test_bad_pickles_fail_per_file_and_batch_goes_on(tmp_path: Path, payload: bytes, message: str) -> None:
    rng = np.random.default_rng(1)
    good = tmp_path / "pkl/001/nm-01/000"
    good.mkdir(parents=True)
    (good / "float_000.pkl").write_bytes(pickle.dumps(gaussian_heatmaps(4, rng).astype(np.float16)))
    bad = tmp_path / "pkl/002/nm-01/000"
    bad.mkdir(parents=True)
    (bad / "float_000.pkl").write_bytes(payload)
    summary = import_pkl_tree(tmp_path / "pkl", tmp_path / "store")
    assert len(summary.written) == 1
    (reason,) = summary.failed.values()
    assert re.search(message, reason)
    assert not (tmp_path / "store/002").exists()


def test_pose_length_mismatch(tmp_path: Path) -> None:
    folder = tmp_path / "pkl/001/nm-01/000"
    folder.mkdir(parents=True)
    (folder / "float_000.pkl").write_bytes(pickle.dumps(np.zeros((4, 17, 64, 48), np.float16)))
    (folder / "pose_000.pkl").write_bytes(pickle.dumps(np.zeros((5, 17, 3), np.float32)))
    summary = import_pkl_tree(tmp_path / "pkl", tmp_path / "store")
    assert "to match float_000.pkl" in next(iter(summary.failed.values()))
