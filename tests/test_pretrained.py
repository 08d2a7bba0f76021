"""The shipped pretrained model's mechanism: export, SHA-256-checked load, default model, doctor, card, size.

The weights here are a tiny GaitHeat made in the test and exported with the real exporter into a
stand-in weights folder (``gaitheat.pretrained.WEIGHTS_DIR`` pointed at it); the package's own
folder is checked by the size test, and the real shipped file (SHA-256 pinned here) by the last test:
it verifies, names held-out synthetic walkers it never trained on, and is refused once tampered.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from gaitheat import pretrained
from gaitheat.checkpoint import WeightsError
from gaitheat.cli import main
from tests.conftest import gaussian_heatmaps, write_tiny_checkpoint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pretrained.PretrainedInfo]:
    folder = tmp_path_factory.mktemp("pretrained")
    ckpt = write_tiny_checkpoint(folder / "tiny.pt", step=7)
    return ckpt, pretrained.export_pretrained(ckpt, folder / "weights", recipe={"command": "test"})


@pytest.fixture
def shipped(exported: tuple[Path, pretrained.PretrainedInfo], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> pretrained.PretrainedInfo:
    """The exported tiny model as the package's shipped one (a private copy: tests may damage it)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    info = exported[1]
    for path in (info.weights, info.sidecar):
        (folder / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(pretrained, "_announced", set())
    return pretrained.read_info(folder / info.weights.name)


@pytest.fixture
def nothing_ships(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "no-weights")
    return tmp_path / "no-weights"


def _copy(info: pretrained.PretrainedInfo, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in (info.weights, info.sidecar):
        (folder / path.name).write_bytes(path.read_bytes())
    return folder / info.weights.name


# ------------------------------------------------------------------------------------------- export / load


def test_export_then_load_embeds_exactly_like_the_checkpoint(exported: tuple[Path, pretrained.PretrainedInfo]
                                                             ) -> None:
    import hashlib

    from gaitheat.checkpoint import load_model
    from gaitheat.gallery.service import load_embedder

    ckpt, info = exported
    assert info.weights.read_bytes()[:8] != b"PK\x03\x04"  # safetensors, not a torch zip/pickle
    assert info.sha256 == hashlib.sha256(info.weights.read_bytes()).hexdigest()
    assert info.size_bytes == info.weights.stat().st_size
    meta = json.loads(info.sidecar.read_text())
    assert meta["embedding_shape"] == [32, 4] and meta["distance"] == "euc-strip-mean"
    assert meta["gamma_deg"] == 5.0 and meta["input"] == ["heatmaps"] and meta["model"]["widths"] == [8, 16, 32, 64]
    assert meta["source"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["recipe"] == {"command": "test"} and meta["threshold"] is None and meta["step"] == 7

    rng = np.random.default_rng(5)
    seqs = [gaussian_heatmaps(t, rng) for t in (3, 17, 40)]
    from_ckpt, from_weights = load_embedder(ckpt, "cpu"), load_embedder(info.weights, "cpu")
    a, b = from_ckpt.embed(seqs), from_weights.embed(seqs)
    assert a.shape == (3, 32, 4) and np.array_equal(a, b)
    assert from_weights.sha256 == info.sha256 != from_ckpt.sha256  # the gallery fingerprint is the file's
    _, cfg_a, info_a = load_model(ckpt)
    model_b, cfg_b, info_b = pretrained.load_pretrained(info.weights)
    assert cfg_a == cfg_b and not model_b.training
    assert {k: info_a[k] for k in ("step", "num_classes", "subjects")} == \
        {k: info_b[k] for k in ("step", "num_classes", "subjects")}


def test_export_refuses_weights_over_the_size_limit(tmp_path: Path,
                                                    exported: tuple[Path, pretrained.PretrainedInfo]) -> None:
    with pytest.raises(ValueError, match="over the 0 MB limit"):
        pretrained.export_pretrained(exported[0], tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_tampered_weights_are_refused_before_deserialising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           exported: tuple[Path, pretrained.PretrainedInfo]) -> None:
    import safetensors.torch

    weights = _copy(exported[1], tmp_path)
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x40  # one bit of one weight, same size
    weights.write_bytes(bytes(data))

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("deserialised before the SHA-256 check")

    monkeypatch.setattr(safetensors.torch, "load", must_not_run)
    with pytest.raises(WeightsError, match=r"SHA-256 mismatch.*tampered with, refusing to load") as exc:
        pretrained.load_pretrained(weights)
    assert str(weights) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(WeightsError, match="SHA-256 mismatch"):
        pretrained.verify(weights)


def test_tampered_weights_make_the_cli_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            exported: tuple[Path, pretrained.PretrainedInfo]) -> None:
    weights = _copy(exported[1], tmp_path)
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x40
    weights.write_bytes(bytes(data))
    ghs = tmp_path / "walk.ghs"
    ghs.write_bytes(b"")  # never read: the model is refused first
    code = main(["enrol", "--gallery", str(tmp_path / "g.db"), "--checkpoint", str(weights), "--name", "ann",
                 str(ghs), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "SHA-256 mismatch" in err[0] and not (tmp_path / "g.db").exists()


def test_truncated_and_malformed_weights_are_refused(tmp_path: Path,
                                                     exported: tuple[Path, pretrained.PretrainedInfo]) -> None:
    import hashlib

    weights = _copy(exported[1], tmp_path)
    full = weights.read_bytes()
    weights.write_bytes(full[: len(full) // 2])
    with pytest.raises(WeightsError, match="truncated or was replaced"):
        pretrained.load_pretrained(weights)

    def forge(data: bytes) -> None:  # a sidecar that agrees with the damaged file: the header checks must catch it
        weights.write_bytes(data)
        meta = json.loads(weights.with_suffix(".json").read_text())
        meta |= {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
        weights.with_suffix(".json").write_text(json.dumps(meta))

    forge(full[: len(full) - 100])
    with pytest.raises(WeightsError, match="lies outside the file"):
        pretrained.load_pretrained(weights)
    forge((1 << 60).to_bytes(8, "little") + full[8:])  # a header claiming an exabyte: refused, nothing allocated
    with pytest.raises(WeightsError, match="header claims 1152921504606846976 bytes"):
        pretrained.load_pretrained(weights)
    forge(b"\x01")
    with pytest.raises(WeightsError, match="too short"):
        pretrained.load_pretrained(weights)
    weights.with_suffix(".json").unlink()
    with pytest.raises(WeightsError, match=r"sidecar gaitheat-synth\.json is missing"):
        pretrained.load_pretrained(weights)


# ------------------------------------------------------------------------------------------- default model


def test_default_model_is_the_shipped_one_and_is_announced_once(shipped: pretrained.PretrainedInfo,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from gaitheat.cli.enrol import default_model

    with caplog.at_level(logging.INFO, logger="gaitheat.pretrained"):
        assert default_model(None, None) == str(shipped.weights)
        assert default_model(None, None) == str(shipped.weights)
    lines = [r.getMessage() for r in caplog.records if r.name == "gaitheat.pretrained"]
    assert len(lines) == 1 and "gaitheat-synth" in lines[0] and shipped.sha256[:12] in lines[0]
    assert pretrained.default_checkpoint() == shipped.weights


def test_default_model_follows_the_gallery(shipped: pretrained.PretrainedInfo, tmp_path: Path) -> None:
    from gaitheat.cli import UserError
    from gaitheat.cli.enrol import default_model
    from gaitheat.gallery.db import GalleryDB, SequenceSource

    vec = np.ones((32, 4), np.float32)
    with GalleryDB(tmp_path / "shipped.db", create=True) as db:
        # built with the shipped model at another install's path: the shipped model is the gallery's model
        db.enrol("ann", [(vec, SequenceSource("a.avi"))], shipped.sha256, "/elsewhere/gaitheat-synth.safetensors")
        assert default_model(db, db.meta()["checkpoint"]) == str(shipped.weights)
    other = tmp_path / "other.pt"
    other.write_bytes(b"x")
    with GalleryDB(tmp_path / "other.db", create=True) as db:
        db.enrol("bob", [(vec, SequenceSource("b.avi"))], "f" * 64, str(other))
        assert default_model(db, str(other)) == str(other)  # its own checkpoint, still there
        other.unlink()
        with pytest.raises(UserError, match=r"built with model ffffffffffff\.\.\. \(recorded at .*which is gone\), "
                                            r"not the shipped gaitheat-synth"):
            default_model(db, str(other))


def test_without_a_shipped_model_checkpoint_is_required(nothing_ships: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    ghs = tmp_path / "walk.ghs"
    ghs.write_bytes(b"")
    assert main(["enrol", "--gallery", str(tmp_path / "g.db"), "--name", "ann", str(ghs), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint is required: no pretrained model ships with this gaitheat" in err
    assert main(["evaluate", "--data-root", str(tmp_path)]) == 2
    assert "--checkpoint is required: no pretrained model ships" in capsys.readouterr().err
    assert pretrained.shipped_model() is None and pretrained.default_checkpoint() is None
    with pytest.raises(pretrained.NoPretrainedModel, match="no pretrained model ships"):
        pretrained.load_pretrained()


def test_evaluate_without_checkpoint_uses_the_shipped_model(shipped: pretrained.PretrainedInfo, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    # an empty store: the run gets as far as the data (so the model was resolved, verified and loaded)
    (tmp_path / "store").mkdir()
    with caplog.at_level(logging.INFO, logger="gaitheat.pretrained"):
        code = main(["evaluate", "--data-root", str(tmp_path / "store"), "--protocol", "custom", "--no-progress"])
    assert code == 2
    assert [r.getMessage() for r in caplog.records if "shipped pretrained model" in r.getMessage()]
    err = capsys.readouterr().err
    assert "no such checkpoint" not in err and "--checkpoint is required" not in err


# ------------------------------------------------------------------------------------------- doctor, package


def test_doctor_shows_the_shipped_model(shipped: pretrained.PretrainedInfo, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    main(["doctor"])
    line = [x for x in capsys.readouterr().out.splitlines() if "pretrained model" in x]
    assert len(line) == 1 and line[0].startswith("[ok  ]") and shipped.sha256[:16] in line[0]
    assert f"{shipped.size_bytes / 1e6:.2f} MB" in line[0] and "verified" in line[0]
    data = bytearray(shipped.weights.read_bytes())
    data[-5] ^= 1
    shipped.weights.write_bytes(bytes(data))
    assert main(["doctor"]) == 1
    line = [x for x in capsys.readouterr().out.splitlines() if "pretrained model" in x]
    assert line[0].startswith("[FAIL]") and "SHA-256 mismatch" in line[0]


def test_doctor_says_when_no_model_ships(nothing_ships: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["doctor"])
    line = [x for x in capsys.readouterr().out.splitlines() if "pretrained model" in x]
    assert len(line) == 1 and line[0].startswith("[none]") and "need --checkpoint" in line[0]


def test_package_weights_fit_the_wheel_and_verify() -> None:
    """Whatever is in the package's weights folder: <= 10 MB in all, in the wheel, and (if a model ships) intact."""
    folder = REPO / "gaitheat" / "weights"
    assert folder.resolve() == pretrained.WEIGHTS_DIR
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total <= pretrained.MAX_SHIPPED_BYTES, f"{folder}: {total} bytes"
    project = (REPO / "pyproject.toml").read_text()  # (tomllib is 3.11+; gaitheat supports 3.10)
    package_data = project[project.index("[tool.setuptools.package-data]"):]
    assert '"weights/*.safetensors"' in package_data and '"weights/*.json"' in package_data
    assert '"safetensors>=' in project[project.index("dependencies = ["):]
    info = pretrained.shipped_model()
    if info is not None:  # the real shipped file: its SHA-256 must verify
        assert pretrained.verify(info.weights).sha256 == info.sha256


# ------------------------------------------------------------------------------------------- card, benchmark


def test_model_card_results_are_generated_from_the_measurements() -> None:
    from gaitheat.model_card import BEGIN, END, load_results, render_card, render_results

    card = (REPO / "MODEL_CARD.md").read_text()
    assert card.startswith("---\n") and "license:" in card.split("---")[1]
    results = load_results(REPO / "MODEL_CARD.json")
    assert render_card(card, results) == card, "MODEL_CARD.md drifted from MODEL_CARD.json: rerun --card"
    if results is None:
        assert "Not measured yet" in card[card.index(BEGIN):card.index(END)]
    else:
        info = pretrained.shipped_model()
        assert info is not None and results["model"]["sha256"] == info.sha256, "the card measures another model"
    assert "never been tested on real people" in card
    fake = {"model": {"name": "m", "sha256": "ab" * 32, "parameters": 5}, "measured": {
        "date": "2026-01-01", "gaitheat_version": "0", "torch_version": "0"},
        "data": {"subjects": 50, "sequences": 10, "views": ["000", "018"], "complete": True},
        "closed_set": {"sets": {"NM": {"rank1": 0.8125, "per_view": {"000": 0.75, "018": 0.875}}}},
        "open_set": {"threshold": 0.5, "far": 0.0125, "frr": 0.25, "tar_at_far1": 0.625, "enrolled": 25,
                     "calibration_strangers": 12, "evaluation_strangers": 13,
                     "evaluation_walks": {"known": 1, "strangers": 2}},
        "speed": {"statistic": "median", "repeats": 10, "clip_frames": 60, "torch_threads": 2, "cpu_count": 2},
        "keys": {"weights_mb": 2.5, "infer_ms_per_frame": 1.25}}
    text = render_results(fake)
    assert "| NM | 0.750 | 0.875 | **0.812** |" in text and "| 0.5000 | 0.013 | 0.250 | 0.625 | 25 | 12 / 13 |" in text


def _benchmark_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_pretrained", REPO / "benchmarks" / "pretrained.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_pretrained"] = module
    spec.loader.exec_module(module)
    return module


def test_benchmark_fails_clearly_without_a_shipped_model(nothing_ships: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    bench = _benchmark_module()
    assert bench.main(["--data-root", str(tmp_path), "--partition", str(tmp_path / "p.json"), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no shipped pretrained model to benchmark" in err[0] and "--weights" in err[0]
    assert bench.split_open_set([f"{i:03d}" for i in range(10, 0, -1)]) == (
        ["001", "003", "005", "007", "009"], ["002", "006", "010"], ["004", "008"])


# ------------------------------------------------------------------------------------------- the shipped file

# pinned: a swapped or missing shipped file fails here
SHIPPED_SHA256 = "3f4c16ee672ebe3b00c4144a4ef5ec1713d9e6fc89688ab011fc12da3fd6a031"


@pytest.mark.slow
def test_shipped_weights_verify_and_identify_a_held_out_walker(tmp_path: Path) -> None:
    """The real shipped model: SHA-256 verified, and it names a held-out walker it never trained on."""
    from gaitheat.config import dump_config
    from gaitheat.synth import write_dataset
    from gaitheat.synth.dataset import sequence_paths
    from gaitheat.synth.plan import extract_config, get_plan

    info = pretrained.shipped_model()
    assert info is not None, f"no pretrained model ships in {pretrained.WEIGHTS_DIR}"
    assert pretrained.verify(info.weights).sha256 == info.sha256 == SHIPPED_SHA256
    plan = get_plan("pretrain")
    people, view = plan.subjects()[1][:5], "090"  # held-out identities, rendered exactly as the plan renders them
    write_dataset(tmp_path / "videos", people, ["nm-01", "nm-02", "nm-05"],
                  **(plan.render_settings() | {"views": [view]}), workers=1, progress=False)

    def video(subject: str, condition: str) -> Path:
        return sequence_paths(tmp_path / "videos", subject, condition, view)[0]

    enrol_csv = tmp_path / "enrol.csv"
    enrol_csv.write_text("name,video\n" + "".join(f"{s},{video(s, c)}\n" for s in people for c in ("nm-01", "nm-02")))
    extract = tmp_path / "extract.yaml"  # the plan's own extraction settings
    extract.write_text(dump_config(extract_config(plan)))
    gallery, common = str(tmp_path / "g.db"), ["--extract-config", str(extract), "--no-progress"]
    assert main(["enrol", "--gallery", gallery, "--from-csv", str(enrol_csv), *common]) == 0  # no --checkpoint
    hits = 0
    for person in people:
        report = tmp_path / f"who-{person}.json"
        assert main(["identify", "--gallery", gallery, str(video(person, "nm-05")), "--threshold", "1e9",
                     "--json", str(report), *common]) == 0
        data = json.loads(report.read_text())
        assert data["model_sha256"] == SHIPPED_SHA256 and len(data["tracks"]) == 1
        hits += data["tracks"][0]["label"] == person
    assert hits >= 4, f"{hits}/5 held-out walkers named correctly"

    bad = tmp_path / "tampered"  # the real file with one bit flipped: refused
    bad.mkdir()
    for p in (info.weights, info.sidecar):
        (bad / p.name).write_bytes(p.read_bytes())
    flipped = bytearray((bad / info.weights.name).read_bytes())
    flipped[-5] ^= 1
    (bad / info.weights.name).write_bytes(bytes(flipped))
    with pytest.raises(WeightsError, match="SHA-256"):
        pretrained.load_pretrained(bad / info.weights.name)
