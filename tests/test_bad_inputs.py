"""Every command that reads a user's file, walked through a corpus of bad inputs.

For each case the command must exit with the status the README promises (2 for an input error of a
one-input command; 1 for a batch command that reports the file and goes on), write exactly one line
on stderr that names the file at fault (logging included, as the CLI prints it), and leave no
partial output behind (no image, no JSON, no gallery, no checkpoint, no store file for the bad input).

The corpus (``BAD_GHS`` and the other tables below; `/work/notes/hardening.md` lists it too):
zero-byte, truncated, wrong type (text or an image named ``.ghs``), tampered headers with valid
checksums (a chunk offset that is a string, chunks missing, a shape of three axes, a chunk that
declares 400 MB of output), wrong shape (13 joints, 32 x 24 heatmaps), NaN keypoints, a folder named
like a file, and a missing path; for pickles, YAML configs, checkpoints, galleries and videos, their
own zero-byte / truncated / wrong-type / missing variants.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zstandard
from conftest import gaussian_heatmaps

from gaitheat.cli import main
from gaitheat.storage import HeatmapSequence, SequenceMeta, encode_sequence, sequence_path, write_sequence

TINY = ["model.widths=[4,8,16,32]", "model.embed_dim=16", "model.parts=4", "data.frames_train=4",
        "data.batch_p=2", "data.batch_k=2", "train.log_every=1", "train.precision=fp32", "data.workers=0",
        "train.retain_heap=false", "eval.retain_heap=false"]
SUBJECTS = ("001", "002", "003")
CONDITIONS = ("nm-01", "nm-02")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sequence(subject: str, condition: str, frames: int = 6, seed: int = 0) -> HeatmapSequence:
    rng = np.random.default_rng(seed + int(subject) * 10 + CONDITIONS.index(condition))
    heat = gaussian_heatmaps(frames, rng)
    kp = np.zeros((frames, 17, 3), np.float32)
    return HeatmapSequence(heat, kp, np.arange(frames, dtype=np.int64),
                           SequenceMeta(subject, condition, "000", pose_model="synthetic", created="2024-01-01"))


# ------------------------------------------------------------------------------------ the .ghs corpus


def _split(data: bytes) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    _, _, head_len, _ = struct.unpack("<8sIII", data[:20])
    return json.loads(data[20:20 + head_len]), data[20 + head_len:]


def _join(header: dict, body: bytes) -> bytes:  # type: ignore[type-arg]
    """A file with a consistent header checksum and size: only the fields we changed are wrong."""
    head = json.dumps(header, separators=(",", ":")).encode()
    header["body_length"] = len(body)
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<8sIII", b"GAITHEAT", 1, len(head), zlib.crc32(head)) + head + body


def _tampered(edit: Callable[[dict], None]) -> Callable[[bytes], bytes]:  # type: ignore[type-arg]
    def make(good: bytes) -> bytes:
        header, body = _split(good)
        edit(header)
        return _join(header, body)
    return make


def _huge_chunk(good: bytes) -> bytes:
    """Chunk 0 replaced by a 12 KB zstd frame that declares (and holds) 400 MB of zeros."""
    header, body = _split(good)
    bomb = zstandard.ZstdCompressor(level=19, write_content_size=True).compress(bytes(400 << 20))
    chunk = header["chunks"][0]
    rest = body[chunk["offset"] + chunk["length"]:]
    shift = len(bomb) - chunk["length"]
    chunk.update(length=len(bomb), crc32=zlib.crc32(bomb))
    for other in header["chunks"][1:]:
        other["offset"] += shift
    header["aux"]["offset"] += shift
    return _join(header, body[:chunk["offset"]] + bomb + rest)


def _nan_keypoints(good: bytes) -> bytes:
    header, body = _split(good)
    aux = header["aux"]
    raw = bytearray(zstandard.ZstdDecompressor().decompress(body[aux["offset"]:aux["offset"] + aux["length"]],
                                                             max_output_size=aux["raw_length"]))
    start = aux["arrays"]["keypoints"]["offset"]
    raw[start:start + 4] = np.float32("nan").tobytes()
    packed = zstandard.ZstdCompressor().compress(bytes(raw))
    aux.update(length=len(packed), crc32=zlib.crc32(packed), raw_length=len(raw))
    return _join(header, body[:aux["offset"]] + packed)


def _reshaped(joints: int, size: tuple[int, int]) -> Callable[[bytes], bytes]:
    def make(good: bytes) -> bytes:
        seq = _sequence("001", "nm-01")
        heat = np.zeros((6, joints, *size), np.float32)
        heat[..., 2, 2] = 1.0
        other = HeatmapSequence(heat, np.zeros((6, joints, 3), np.float32), seq.frame_indices,
                                SequenceMeta("001", "nm-01", "000", heatmap_size=size, created="2024-01-01"))
        return encode_sequence(other)
    return make


BAD_GHS: dict[str, tuple[Callable[[bytes], bytes] | None, str]] = {
    # name: (bytes from a good file -> bad bytes, or None for "no such file"; what the message says)
    "zero-byte": (lambda good: b"", r"empty"),
    "truncated": (lambda good: good[: len(good) // 2], r"truncated"),
    "text": (lambda good: b"name,video\nalice,walk.mp4\n" * 8, r"not a gaitheat sequence"),
    "png": (lambda good: b"\x89PNG\r\n\x1a\n" + bytes(200), r"not a gaitheat sequence"),
    "offset-string": (_tampered(lambda h: h["chunks"][0].__setitem__("offset", "12")), r"header"),
    "no-chunks": (_tampered(lambda h: h.__setitem__("chunks", [])), r"header|chunk"),
    "shape-3-axes": (_tampered(lambda h: h.__setitem__("shape", [6, 17, 64])), r"header|shape"),
    "huge-chunk": (_huge_chunk, r"chunk 0 declares 419430400 decompressed bytes"),
    "13-joints": (_reshaped(13, (64, 48)), r"13 joints|joints"),
    "32x24": (_reshaped(17, (32, 24)), r"32x24|heatmap size"),
    "nan-keypoints": (_nan_keypoints, r"NaN"),
    "missing": (None, r"no such"),
}


@dataclass
class World:
    root: Path
    store: Path
    checkpoint: Path
    gallery: Path
    good: Path

    def bad_ghs(self, case: str) -> Path:
        make, _ = BAD_GHS[case]
        path = self.root / "bad" / case / f"{case}.ghs"
        if make is not None and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(make(self.good.read_bytes()))
        return path

    def store_with(self, case: str, tmp: Path) -> Path:
        """A copy of the good store with one bad sequence file among its good ones."""
        store = tmp / "store"
        shutil.copytree(self.store, store, ignore=shutil.ignore_patterns("manifest.csv"))
        target = sequence_path(store, "003", "nm-02", "000")
        target.unlink()
        if BAD_GHS[case][0] is None:
            return store
        shutil.copyfile(self.bad_ghs(case), target)
        return store


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from gaitheat.config import load_config
    from gaitheat.experiment import ExperimentConfig
    from gaitheat.train import train

    root = tmp_path_factory.mktemp("bad-inputs")
    store = root / "store"
    for subject in SUBJECTS:
        for condition in CONDITIONS:
            write_sequence(sequence_path(store, subject, condition, "000"), _sequence(subject, condition))
    cfg = load_config(ExperimentConfig, "cpu-small", [f"data.root={store}", "data.dataset=custom",
                                                      f"train.out={root / 'run'}", "train.steps=1", *TINY])
    checkpoint = train(cfg, device="cpu")
    gallery = root / "people.db"
    good = sequence_path(store, "001", "nm-01", "000")
    assert main(["enrol", "--gallery", str(gallery), "--checkpoint", str(checkpoint), "--name", "alice",
                 str(good), "--no-progress"]) == 0
    return World(root, store, checkpoint, gallery, good)


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[list[str]], tuple[int, str, str]]]:
    """Run ``gaitheat ARGV`` in-process with the CLI's own logging to stderr (not pytest's capture)."""
    root = logging.getLogger()

    def run(argv: list[str]) -> tuple[int, str, str]:
        saved, level = root.handlers[:], root.level
        root.handlers.clear()  # so the CLI's logging.basicConfig installs its stderr handler, as in a shell
        try:
            capsys.readouterr()
            code = main(argv)
        finally:
            for handler in root.handlers:
                handler.close()
            root.handlers[:] = saved
            root.setLevel(level)
        out, err = capsys.readouterr()
        return code, out, err

    yield run


def _one_line(err: str, names: str | Path, message: str, run_started: bool = False) -> None:
    """Exactly one line on stderr, naming the file and saying what is wrong.

    ``run_started``: the command had started its run, whose one INFO line (what it trains on) comes first;
    a file that breaks only when its data are read cannot be refused before that.
    """
    lines = err.strip().splitlines()
    if run_started:
        lines = [line for line in lines if not line.startswith("INFO gaitheat.train: training ")]
    assert len(lines) == 1, err
    assert str(names) in lines[0], lines[0]
    assert re.search(message, lines[0], re.IGNORECASE), lines[0]
    assert "Traceback" not in err


GHS_CASES = sorted(BAD_GHS)


@pytest.mark.parametrize("case", GHS_CASES)
def test_show(world: World, cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    bad, out = world.bad_ghs(case), tmp_path / "preview.png"
    code, _, err = cli(["show", str(bad), "--out", str(out)])
    assert code == 2
    _one_line(err, bad, BAD_GHS[case][1])
    assert not out.exists()


@pytest.mark.parametrize("case", GHS_CASES)
def test_enrol_leaves_no_gallery(world: World, cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    bad, gallery = world.bad_ghs(case), tmp_path / "new.db"
    code, out, err = cli(["enrol", "--gallery", str(gallery), "--checkpoint", str(world.checkpoint),
                          "--name", "bob", str(world.good), str(bad), "--no-progress"])
    assert code == 2
    _one_line(err, bad, BAD_GHS[case][1])
    assert not out and not list(tmp_path.iterdir())  # not even an empty gallery


@pytest.mark.parametrize("case", ["truncated", "huge-chunk", "nan-keypoints"])
def test_enrol_leaves_an_existing_gallery_unchanged(world: World, cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    case: str) -> None:
    gallery = tmp_path / "people.db"
    shutil.copyfile(world.gallery, gallery)
    before = gallery.read_bytes()
    people = _people(tmp_path, world, world.bad_ghs(case))
    code, _, err = cli(["enrol", "--gallery", str(gallery), "--from-folder", str(people), "--no-progress"])
    assert code == 2
    _one_line(err, people / "dave" / f"{case}.ghs", BAD_GHS[case][1])
    assert gallery.read_bytes() == before  # carol (good) was not enrolled before dave (bad) failed


def _people(tmp_path: Path, world: World, bad: Path) -> Path:
    folder = tmp_path / "people"
    for name, source in (("carol", world.good), ("dave", bad)):
        (folder / name).mkdir(parents=True)
        shutil.copyfile(source, folder / name / source.name)
    return folder


@pytest.mark.parametrize("case", GHS_CASES)
def test_identify(world: World, cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    bad, report = world.bad_ghs(case), tmp_path / "who.json"
    code, out, err = cli(["identify", "--gallery", str(world.gallery), str(bad), "--json", str(report),
                          "--no-progress"])
    assert code == 2
    _one_line(err, bad, BAD_GHS[case][1])
    assert not out and not report.exists()


def test_identify_checks_output_paths_before_any_work(world: World, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report, video = tmp_path / "who.json", tmp_path / "walk.avi"
    video.write_bytes(b"not read: the output path is checked first")
    for option, target in (("--show", tmp_path / "nowhere" / "x.gif"), ("--json", tmp_path / "nowhere" / "x.json"),
                           ("--json", tmp_path)):
        extra = ["--json", str(report)] if option == "--show" else []
        code, out, err = cli(["identify", "--gallery", str(world.gallery), str(video), option, str(target),
                              *extra, "--no-progress"])
        assert code == 2 and not out
        _one_line(err, target, r"does not exist|is a folder")
        assert not report.exists()


def test_identify_without_a_threshold_names_nobody(world: World, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = tmp_path / "who.json"
    code, out, err = cli(["identify", "--gallery", str(world.gallery), str(world.good), "--json", str(report),
                          "--no-progress"])
    assert code == 0
    _one_line(err, world.gallery, r"no calibrated threshold.*unverified")
    data = json.loads(report.read_text())
    assert data["threshold"] is None and data["threshold_source"] is None
    (track,) = data["tracks"]
    assert track["label"] == "unverified" and track["matches"][0]["name"] == "alice"  # nearest still listed
    assert "unverified" in out and "alice" in out
    code, _, err = cli(["identify", "--gallery", str(world.gallery), str(world.good), "--json", str(report),
                        "--threshold", "10", "--no-progress"])
    assert code == 0 and err == ""
    data = json.loads(report.read_text())
    assert data["tracks"][0]["label"] == "alice" and data["threshold_source"] == "--threshold"


# --------------------------------------------------------------------------------- stores as inputs


@pytest.mark.parametrize("case", [c for c in GHS_CASES if c != "missing"])
def test_index_reports_the_file_and_goes_on(world: World, cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    store = world.store_with(case, tmp_path)
    bad = sequence_path(store, "003", "nm-02", "000")
    code, out, err = cli(["index", str(store), "--verify"])  # --verify: data sections too, not only headers
    assert code == 1
    _one_line(err, bad, BAD_GHS[case][1])
    assert "5 sequences" in out  # the good ones are indexed
    assert "003,nm-02" not in (store / "manifest.csv").read_text()


@pytest.mark.parametrize("case", [c for c in GHS_CASES if c != "missing"])
def test_export_pkl_reports_the_file_and_writes_nothing_for_it(world: World, cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                              case: str) -> None:
    store, out_dir = world.store_with(case, tmp_path), tmp_path / "pkl"
    bad = sequence_path(store, "003", "nm-02", "000")
    code, _out, err = cli(["export-pkl", str(store), str(out_dir)])
    assert code == 1
    _one_line(err, bad, BAD_GHS[case][1])
    assert len(list(out_dir.glob("*/*/*/float_*.pkl"))) == 5
    assert not (out_dir / "003" / "nm-02").exists()


@pytest.mark.parametrize("case", [c for c in GHS_CASES if c not in ("missing", "13-joints", "32x24")])
def test_train_names_the_file_and_writes_no_checkpoint(world: World, cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       case: str) -> None:
    store = world.store_with(case, tmp_path)
    bad = sequence_path(store, "003", "nm-02", "000")
    code, _out, err = cli(["train", "cpu-small", "--data-root", str(store), "--out", str(tmp_path / "run"),
                          "--set", "data.dataset=custom", "--set", "train.steps=1", "--no-progress",
                          *[a for s in TINY for a in ("--set", s)]])
    assert code == 2
    _one_line(err, bad, BAD_GHS[case][1], run_started=case in ("huge-chunk", "nan-keypoints"))
    assert not list((tmp_path / "run").rglob("*.pt"))


@pytest.mark.parametrize("case", ["13-joints", "32x24"])
def test_train_rejects_other_joint_counts_and_sizes_at_load(world: World, cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                            case: str) -> None:
    store = world.store_with(case, tmp_path)
    bad = sequence_path(store, "003", "nm-02", "000")
    code, _, err = cli(["train", "cpu-small", "--data-root", str(store), "--out", str(tmp_path / "run"),
                        "--set", "data.dataset=custom", "--set", "train.steps=1", "--no-progress",
                        *[a for s in TINY for a in ("--set", s)]])
    assert code == 2
    _one_line(err, bad, BAD_GHS[case][1])


EVAL = ["--set", "eval.protocol=custom", "--set", "eval.gallery=[nm-01]", "--set", "eval.probes={walk: [nm-02]}",
        "--set", "eval.partition=", "--set", "data.partition=", "--no-progress"]


@pytest.mark.parametrize("case", ["zero-byte", "truncated", "offset-string", "huge-chunk", "13-joints",
                                  "nan-keypoints"])
def test_evaluate_names_the_file_and_writes_no_report(world: World, cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      case: str) -> None:
    store = world.store_with(case, tmp_path)
    bad = sequence_path(store, "003", "nm-02", "000")
    code, _, err = cli(["evaluate", "--checkpoint", str(world.checkpoint), "--data-root", str(store),
                        "--out", str(tmp_path / "report"), *EVAL])
    assert code == 2
    # a file whose header fails is also left out of the manifest, with its warning (gaitheat.manifest)
    # before evaluate's error, which lists it among what the protocol misses
    warned = [line for line in err.splitlines() if line.startswith(f"WARNING gaitheat.manifest: skipping {bad}: ")]
    assert len(warned) == (case in ("zero-byte", "truncated", "offset-string", "13-joints"))
    _one_line("\n".join(line for line in err.splitlines() if line not in warned), bad, BAD_GHS[case][1])
    assert not (tmp_path / "report").exists() or not list((tmp_path / "report").iterdir())


# ------------------------------------------------------------------------------ pickles, configs, ...


BAD_PICKLES: dict[str, tuple[bytes, str]] = {
    "zero-byte": (b"", r"empty file"),
    "truncated": (pickle.dumps(np.zeros((3, 17, 64, 48), np.float16))[:60], r"not a readable pickle"),
    "wrong-type": (pickle.dumps({"heatmaps": [1, 2]}), r"refusing|expected a numeric"),
    "wrong-shape": (pickle.dumps(np.zeros((3, 17, 32, 48), np.float16)), r"expected heatmaps"),
    "nan": (pickle.dumps(np.full((2, 17, 64, 48), np.nan, np.float16)), r"NaN"),
    "claims-11-gb": (b"\x80\x02cnumpy\nndarray\nq\x00J\x00\xe4\x0bT\x85q\x01cnumpy\ndtype\n"
                     b"X\x02\x00\x00\x00f8\x89\x88\x87R\x86R.", r"called directly"),
}


@pytest.mark.parametrize("case", sorted(BAD_PICKLES))
def test_import_pkl(cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    payload, message = BAD_PICKLES[case]
    good = tmp_path / "pkl/001/nm-01/000"
    good.mkdir(parents=True)
    (good / "float_000.pkl").write_bytes(pickle.dumps(gaussian_heatmaps(3, np.random.default_rng(0))
                                                      .astype(np.float16)))
    bad = tmp_path / "pkl/002/nm-01/000/float_000.pkl"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(payload)
    code, out, err = cli(["import-pkl", str(tmp_path / "pkl"), str(tmp_path / "store")])
    assert code == 1
    _one_line(err, bad, message)
    assert "imported 1" in out and not (tmp_path / "store/002").exists()


def test_import_and_export_of_missing_folders(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for argv in (["import-pkl", str(tmp_path / "none"), str(tmp_path / "store")],
                 ["export-pkl", str(tmp_path / "none"), str(tmp_path / "pkl")],
                 ["index", str(tmp_path / "none")]):
        code, _, err = cli(argv)
        assert code == 2, argv
        _one_line(err, tmp_path / "none", r"not a folder|no such|does not exist")
    assert not (tmp_path / "store").exists() and not (tmp_path / "pkl").exists()


BAD_CONFIGS: dict[str, tuple[str | None, str]] = {
    "list": ("- 1\n- 2\n", r"top level must be a mapping"),
    "invalid-yaml": ("train: [1, 2\n", r"not valid YAML"),
    "truncated": ("train:\n  lr: 0.1\n  steps: 1\nmodel:\n  widths: [4, 8", r"not valid YAML"),
    "unknown-key": ("train:\n  lrr: 0.1\n", r"unknown key 'train.lrr'; did you mean 'lr'"),
    "wrong-type": ("train:\n  steps: many\n", r"train.steps: expected an integer"),
    "missing": (None, r"neither a file nor a shipped config"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_train_config_files(world: World, cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    text, message = BAD_CONFIGS[case]
    config = tmp_path / f"{case}.yaml"
    if text is not None:
        config.write_text(text)
    code, out, err = cli(["train", str(config), "--data-root", str(world.store), "--out", str(tmp_path / "run"),
                          "--no-progress"])
    assert code == 2
    _one_line(err, config.name if case != "unknown-key" and case != "wrong-type" else "train", message)
    assert not out and not (tmp_path / "run").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("train.lr=fast", r"train.lr: expected a number"),
    ("train.lr=.nan", r"not a number"),
    ("train.steps=2.5", r"train.steps: expected an integer"),
    ("train.nope=1", r"unknown key 'train.nope'"),
    ("train.lr", r"not of the form key.path=value"),
])
def test_train_overrides(world: World, cli, tmp_path: Path, override: str, message: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli(["train", "cpu-small", "--data-root", str(world.store), "--out", str(tmp_path / "run"),
                          "--set", override, "--no-progress"])
    assert code == 2
    _one_line(err, override.split("=")[0], message)
    assert not out and not (tmp_path / "run").exists()


def test_train_and_evaluate_data_roots(world: World, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = tmp_path / "file.txt"
    text.write_text("not a store")
    for root in (tmp_path / "none", text):
        code, _, err = cli(["train", "cpu-small", "--data-root", str(root), "--out", str(tmp_path / "run"),
                            "--no-progress"])
        assert code == 2
        _one_line(err, root, r"not a folder")
        code, _, err = cli(["evaluate", "--checkpoint", str(world.checkpoint), "--data-root", str(root),
                            "--out", str(tmp_path / "report"), *EVAL])
        assert code == 2
        _one_line(err, root, r"not a folder|no such|does not exist|no sequences")
    assert not (tmp_path / "run").exists() and not (tmp_path / "report").exists()


BAD_FILES: dict[str, bytes | None] = {
    "zero-byte": b"", "text": b"hello\n" * 30, "truncated": None, "missing": None}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_evaluate_checkpoints(world: World, cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    checkpoint = tmp_path / "model.pt"
    data = BAD_FILES[case]
    if case == "truncated":
        data = world.checkpoint.read_bytes()[:2000]
    if data is not None:
        checkpoint.write_bytes(data)
    code, out, err = cli(["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(world.store),
                          "--out", str(tmp_path / "report"), *EVAL])
    assert code == 2
    _one_line(err, checkpoint, r"no such|not a (readable )?gaitheat checkpoint")
    assert not out and not (tmp_path / "report").exists()


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_gallery_files(cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    gallery = tmp_path / "people.db"
    data = BAD_FILES[case] if case != "truncated" else b"SQLite format 3\x00" + bytes(50)
    if data is not None:
        gallery.write_bytes(data)
    before = gallery.read_bytes() if gallery.exists() else None
    code, out, err = cli(["gallery", "list", str(gallery)])
    assert code == 2
    _one_line(err, gallery, r"no such|not a gallery|corrupt|not a database|cannot open")
    assert not out
    assert (gallery.read_bytes() if gallery.exists() else None) == before


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_calibrate_embeddings_files(world: World, cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    gallery = tmp_path / "people.db"
    shutil.copyfile(world.gallery, gallery)
    before = gallery.read_bytes()
    npz = tmp_path / "labelled.npz"
    data = BAD_FILES[case]
    if case == "truncated":
        np.savez(npz, embeddings=np.zeros((4, 16, 4), np.float32), names=np.array(["a"] * 4))
        data = npz.read_bytes()[:100]
    if data is not None:
        npz.write_bytes(data)
    code, out, err = cli(["gallery", "calibrate", str(gallery), "--embeddings", str(npz)])
    assert code == 2
    _one_line(err, npz, r"need an .npz|no such")
    assert not out and gallery.read_bytes() == before


@pytest.mark.parametrize("case", ["zero-byte", "text", "missing"])
def test_extract_videos(cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    video = tmp_path / "in" / "walk.avi"
    video.parent.mkdir()
    if BAD_FILES[case] is not None:
        video.write_bytes(BAD_FILES[case])  # type: ignore[arg-type]
    code, _out, err = cli(["extract", str(video), "--out", str(tmp_path / "store"), "--no-progress"])
    # a batch command: the file is reported, the run goes on (a missing path is one of its failures)
    assert code == 1
    _one_line(err, video, r"empty file|cannot open|no such")
    assert not list((tmp_path / "store").rglob("*.ghs"))


def test_a_checkpoint_evaluates_from_another_folder(world: World, cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from gaitheat.checkpoint import read_checkpoint

    here, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    (here / "split.json").write_text(json.dumps({"TRAIN_SET": ["001", "002"], "TEST_SET": ["003"]}))
    monkeypatch.chdir(here)
    code, out, err = cli(["train", "cpu-small", "--data-root", str(world.store), "--out", "run", "--no-progress",
                        "--set", "data.dataset=custom", "--set", "data.partition=split.json", "--set", "train.steps=1",
                        *[a for s in TINY for a in ("--set", s)]])
    assert code == 0, err
    checkpoint = here / out.strip().splitlines()[-1]
    stored = read_checkpoint(checkpoint)["config"]
    assert stored["data"]["partition"] == str(here / "split.json") and stored["train"]["out"] == str(here / "run")
    monkeypatch.chdir(elsewhere)
    custom = ["--set", "eval.protocol=custom", "--set", "eval.gallery=[nm-01]", "--set", "eval.probes={walk: [nm-02]}",
              "--no-progress", "--out", str(elsewhere)]
    code, out, err = cli(["evaluate", "--checkpoint", str(checkpoint), *custom])
    assert code == 0, err
    assert "walk" in out
    # an override still wins over what the checkpoint recorded
    code, _, err = cli(["evaluate", "--checkpoint", str(checkpoint), *custom, "--set", "data.partition=nope.json"])
    assert code == 2 and "nope.json" in err
    code, _, err = cli(["evaluate", "--checkpoint", str(checkpoint), *custom, "--set", "data.partition="])
    assert code == 0, err


def test_a_chunk_that_declares_400_mb_allocates_nothing(world: World) -> None:
    import subprocess
    import sys

    bad = world.bad_ghs("huge-chunk")
    assert bad.stat().st_size < 100_000
    # the reader runs with its address space capped at 200 MB more than it holds once imported, so
    # decompressing the chunk (400 MB) would fail with a memory error instead of this StoreError
    script = ("import re, resource, sys\nfrom gaitheat.storage import StoreError, read_sequence\n"
              "vm = int(re.search(r'VmSize:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)) * 1024\n"
              "resource.setrlimit(resource.RLIMIT_AS, (vm + (200 << 20), resource.RLIM_INFINITY))\n"
              "try:\n    read_sequence(sys.argv[1])\nexcept StoreError as exc:\n    print(exc.reason)\n")
    run = subprocess.run([sys.executable, "-c", script, str(bad)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "declares 419430400 decompressed bytes" in run.stdout


BAD_ARRAYS: dict[str, tuple[bytes | None, str]] = {
    "zero-byte": (b"", r"empty file"),
    "truncated": (pickle.dumps(np.zeros((3, 17, 3), np.float32))[:40], r"not a readable pickle"),
    "wrong-type": (pickle.dumps({"keypoints": [1, 2]}), r"refusing|expected a numeric"),
    "claims-11-gb": (BAD_PICKLES["claims-11-gb"][0], r"called directly"),
    "wrong-shape": (None, r"shape|expected"),
    "nan": (None, r"NaN|finite"),
}


def _array_payload(case: str, good: np.ndarray) -> bytes:
    payload, _ = BAD_ARRAYS[case]
    if payload is not None:
        return payload
    if case == "wrong-shape":
        return pickle.dumps(good[..., :2].copy() if good.ndim == 3 and good.shape[-1] == 3 else good[:, :10])
    bad = good.astype(np.float32)
    bad[0, 0] = np.nan
    return pickle.dumps(bad)


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_import_keypoints(cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    good = np.random.default_rng(0).uniform(10, 200, (8, 17, 3)).astype(np.float32)
    good[..., 2] = 0.9
    for subject in ("001", "002"):
        (tmp_path / f"pkl/{subject}/nm-01/000").mkdir(parents=True)
    (tmp_path / "pkl/001/nm-01/000/pose_000.pkl").write_bytes(pickle.dumps(good))
    bad = tmp_path / "pkl/002/nm-01/000/pose_000.pkl"
    bad.write_bytes(_array_payload(case, good))
    code, _, err = cli(["import-keypoints", str(tmp_path / "pkl"), str(tmp_path / "store"), "--no-progress"])
    assert code == 1
    _one_line(err, bad, BAD_ARRAYS[case][1])
    assert len(list((tmp_path / "store").glob("*/*/*/*.ghs"))) == 1 and not (tmp_path / "store/002").exists()


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_import_silhouettes(cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    good = np.zeros((8, 64, 44), np.uint8)
    good[:, 10:50, 15:30] = 255
    for subject in ("001", "002"):
        (tmp_path / f"sil/{subject}/nm-01/000").mkdir(parents=True)
    (tmp_path / "sil/001/nm-01/000/000.pkl").write_bytes(pickle.dumps(good))
    bad = tmp_path / "sil/002/nm-01/000/000.pkl"
    bad.write_bytes(_array_payload(case, good))
    code, _, err = cli(["import-silhouettes", str(tmp_path / "sil"), str(tmp_path / "store")])
    assert code == 1
    _one_line(err, bad, BAD_ARRAYS[case][1] + "|silhouette")
    assert len(list((tmp_path / "store").glob("*/*/*/*.ghs"))) == 1 and not (tmp_path / "store/002").exists()


@pytest.mark.parametrize("case", [c for c in GHS_CASES if c != "missing"])
def test_regen(world: World, cli, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    store = world.store_with(case, tmp_path)
    bad = sequence_path(store, "003", "nm-02", "000")
    code, _, err = cli(["regen", str(store), str(tmp_path / "regen"), "--no-progress"])
    assert code == 1
    _one_line(err, bad, BAD_GHS[case][1])
    assert len(list((tmp_path / "regen").glob("*/*/*/*.ghs"))) == 5
    assert not sequence_path(tmp_path / "regen", "003", "nm-02", "000").exists()


@pytest.mark.slow
def test_extract_prints_the_warning_of_a_truncated_video(media_dir: Path, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from test_extract import write_clip

    clip = write_clip(media_dir / "vtest.avi", tmp_path / "clip" / "007-nm-01-090.avi", 300, 24)
    truncated = tmp_path / "in" / "008-nm-01-090.avi"
    truncated.parent.mkdir()
    data = clip.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])  # cut mid-stream: the header still announces 24 frames
    code, _, err = cli(["extract", str(truncated), "--out", str(tmp_path / "store"), "--no-progress",
                        "--set", "min_frames=8"])
    assert code == 0  # extracted, as far as the file goes
    # (LiteRT writes its own "INFO: Created TensorFlow Lite XNNPACK delegate" to fd 2 in a shell)
    lines = [line for line in err.splitlines() if not line.startswith("INFO: Created TensorFlow Lite")]
    assert len(lines) == 1 and lines[0].startswith(f"  warning: {truncated}: decoded ") and "truncated" in lines[0]
    assert json.loads((tmp_path / "store" / "extract-summary.json").read_text())["warnings"] == [lines[0][11:]]
