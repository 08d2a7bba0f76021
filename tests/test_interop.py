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
    (pickle.dumps(np.array(["a", "b"])), "expected a numeric|not a plain numeric"),
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


def _claims_huge(kind: str) -> bytes:
    """Pickles of a few hundred bytes whose globals would allocate gigabytes the file does not hold."""
    small = pickle.dumps(np.zeros((2, 3), np.float32), protocol=2)
    if kind == "ndarray-call":  # numpy.ndarray((1410065408,), 'f8'): 11 GB, uninitialised
        return (b"\x80\x02cnumpy\nndarray\nq\x00J\x00\xe4\x0bT\x85q\x01cnumpy\ndtype\n"
                b"X\x02\x00\x00\x00f8\x89\x88\x87R\x86R.")
    if kind == "reconstruct-shape":  # _reconstruct(ndarray, (1410065408,), b'b')
        return small.replace(b"K\x00\x85", b"J\x00\xe4\x0bT\x85")
    if kind == "state-shape":  # the state claims (1410065408, 3) for 24 bytes of data
        return small.replace(b"K\x02K\x03\x86", b"J\x00\xe4\x0bTK\x03\x86")
    p5 = pickle.dumps(np.zeros((2, 3), np.float32), protocol=5)
    i = p5.index(b"\x96")  # BYTEARRAY8 declaring 10**12 bytes
    return p5[:i + 1] + (10**12).to_bytes(8, "little") + p5[i + 9:]


@pytest.mark.parametrize(("kind", "message"), [
    ("ndarray-call", "numpy.ndarray called directly"),
    ("reconstruct-shape", "unexpected array reconstruction"),
    ("state-shape", "needs 16920784896 bytes of data"),
    ("bytearray8", "expected 1000000000000 bytes"),
])
def test_pickles_cannot_claim_more_memory_than_the_file_holds(tmp_path: Path, kind: str, message: str) -> None:
    import resource

    path = tmp_path / "float_x.pkl"
    path.write_bytes(_claims_huge(kind))
    assert path.stat().st_size < 300
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PickleRejected, match=message):
        load_array_pickle(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing was allocated


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_protocol_and_order_round_trips(tmp_path: Path, protocol: int) -> None:
    for array in (np.arange(24, dtype=np.float16).reshape(2, 3, 4),
                  np.asfortranarray(np.arange(24, dtype=np.float32).reshape(4, 6))):
        path = tmp_path / f"a{protocol}.pkl"
        path.write_bytes(pickle.dumps(array, protocol=protocol))
        back = load_array_pickle(path)
        assert type(back) is np.ndarray and back.dtype == array.dtype
        np.testing.assert_array_equal(back, array)


def test_memory_error_fails_one_file_and_the_batch_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gaitheat.interop as interop

    rng = np.random.default_rng(2)
    for subject in ("001", "002"):
        folder = tmp_path / f"pkl/{subject}/nm-01/000"
        folder.mkdir(parents=True)
        (folder / "float_000.pkl").write_bytes(pickle.dumps(gaussian_heatmaps(3, rng).astype(np.float16)))
    real = interop.load_array_pickle

    def tight(path: str | Path, max_bytes: int = 8 << 30) -> np.ndarray:
        if "/001/" in str(path):  # this machine's memory ends at the first file
            raise MemoryError
        return real(path, max_bytes)

    monkeypatch.setattr(interop, "load_array_pickle", tight)
    summary = import_pkl_tree(tmp_path / "pkl", tmp_path / "store")
    assert len(summary.written) == 1
    assert "not enough memory" in summary.failed[str(tmp_path / "pkl/001/nm-01/000/float_000.pkl")]
