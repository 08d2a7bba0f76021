"""Benchmarks on incomplete stores fail with one error listing what is missing (or, when allowed, say what
was left out); CCPG reports label every Rank-1 and pair the headline re-ID R-1 with mAP."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gaitheat import report
from gaitheat.config import load_config, to_dict
from gaitheat.evaluate import evaluate_embeddings
from gaitheat.experiment import ExperimentConfig
from gaitheat.manifest import load_manifest
from gaitheat.protocols import CASIA_B, CCPG, SUSTECH1K, MissingCells, missing_cells
from gaitheat.storage import HeatmapSequence, SequenceMeta, sequence_path, write_sequence

CASIA_CONDITIONS = (*(f"nm-0{i}" for i in range(1, 7)), "bg-01", "bg-02", "cl-01", "cl-02")
CASIA_VIEWS = tuple(f"{a:03d}" for a in range(0, 181, 18))
TINY = ["model.widths=[4,8,16,32]", "model.embed_dim=8", "model.parts=4", "data.workers=0", "eval.precision=fp32"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def labels(subjects: list[str], conditions: tuple[str, ...], views: tuple[str, ...]) -> tuple[list[str], ...]:
    rows = [(s, c, v) for s in subjects for c in conditions for v in views]
    return tuple(list(x) for x in zip(*rows, strict=True))


def test_missing_cells_lists_subjects_conditions_and_views() -> None:
    test = [f"{i:03d}" for i in range(75, 125)]
    assert not missing_cells(CASIA_B, test, *labels(test, CASIA_CONDITIONS, CASIA_VIEWS))
    some = test[:48]
    conditions = tuple(c for c in CASIA_CONDITIONS if c != "bg-02")
    views = tuple(v for v in CASIA_VIEWS if v not in ("018", "162"))
    gaps = missing_cells(CASIA_B, test, *labels(some, conditions, views), unreadable=[("a.ghs", "truncated")])
    assert gaps == MissingCells(("123", "124"), ("bg-02",), ("018", "162"), (("a.ghs", "truncated"),))
    line = gaps.describe(len(test))
    assert "\n" not in line and "2 of 50 test subjects (123, 124)" in line and "conditions bg-02" in line
    assert "views 018, 162" in line and "1 unreadable files (a.ghs: truncated)" in line
    # one whole view missing is caught; the benchmark's few missing single sequences are not a gap
    s, c, v = labels(test, CASIA_CONDITIONS, CASIA_VIEWS)
    assert not missing_cells(CASIA_B, test, s[1:], c[1:], v[1:])


def test_missing_cells_of_substring_and_exact_protocols() -> None:
    subjects = ["0001", "0003"]
    present = ("00-nm", "01-nm", "01-bg", "02-cl", "01-cr", "01-ub", "01-uf", "01-oc")  # no night ('nt')
    gaps = missing_cells(SUSTECH1K, subjects, *labels(subjects, present, ("000",)))
    assert gaps.conditions == ("NG ('nt')",) and not gaps.subjects and not gaps.views
    ccpg = ["100", "101"]
    gaps = missing_cells(CCPG, [*ccpg, "102"], *labels(ccpg, ("U0_D0", "U0_D0_BG", "U1_D1", "U2_D2", "U3_D3"),
                                                        ("1_1",)))
    assert gaps.subjects == ("102",) and gaps.conditions == ("U0_D3", "U1_D0")


def write_store(root: Path, subjects: list[str], conditions: tuple[str, ...], views: tuple[str, ...]) -> Path:
    yy, xx = np.mgrid[0:64, 0:48].astype(np.float32)
    rng = np.random.default_rng(0)
    for s in subjects:
        centres = np.random.default_rng(int(s)).uniform((10, 8), (54, 40), size=(17, 2))
        for c in conditions:
            for v in views:
                pts = centres[None] + rng.normal(scale=1.0, size=(3, 17, 2))
                hm = np.exp(-((yy - pts[..., 0, None, None]) ** 2 + (xx - pts[..., 1, None, None]) ** 2) / 8)
                write_sequence(sequence_path(root, s, c, v), HeatmapSequence(
                    hm.astype(np.float32), np.zeros((3, 17, 3), np.float32), np.arange(3, dtype=np.int64),
                    SequenceMeta(s, c, v, pose_model="synthetic")))
    load_manifest(root)
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny checkpoint, a CASIA-B store of 1 of the 50 test subjects (all 10 conditions x 11 views), and a
    partition of just that one."""
    from gaitheat.models import build_model

    tmp = tmp_path_factory.mktemp("incomplete")
    cfg = load_config(ExperimentConfig, "cpu-small", TINY)
    torch.manual_seed(0)
    model = build_model(cfg.model, num_classes=3)
    checkpoint = tmp / "tiny.pt"
    torch.save({"step": 1, "model": model.state_dict(), "config": to_dict(cfg), "num_classes": 3}, checkpoint)
    store = write_store(tmp / "store", ["075"], CASIA_CONDITIONS, CASIA_VIEWS)
    partition = tmp / "one.json"
    partition.write_text(json.dumps({"TRAIN_SET": ["001"], "TEST_SET": ["075"]}))
    return checkpoint, store, partition


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from gaitheat.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_incomplete_store_is_one_error_listing_what_is_missing(setup: tuple[Path, Path, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint, store, _ = setup
    code, _, err = run(["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(store), "--protocol",
                        "casia-b", "--out", str(tmp_path), "--no-progress"], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(store) in err and "49 of 50 test subjects (076, 077," in err and "--allow-incomplete" in err
    assert "views" not in err and "conditions" not in err  # only what is missing
    assert not list(tmp_path.iterdir())  # nothing written


def test_allowed_incomplete_store_reports_the_cells_left_out(setup: tuple[Path, Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint, store, _ = setup
    code, out, err = run(["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(store), "--protocol",
                          "casia-b", "--allow-incomplete", "--out", str(tmp_path), "--no-progress"], capsys)
    assert code == 0, err
    assert "INCOMPLETE store, evaluated without: 49 subjects (076, 077," in out
    results = json.loads((tmp_path / "tiny.casia-b.json").read_text())
    assert results["complete"] is False and len(results["left_out"]["subjects"]) == 49
    assert results["left_out"]["views"] == [] and results["left_out"]["unreadable"] == []
    assert results["views"] == list(CASIA_VIEWS) and results["num_sequences"] == 10 * 11


@pytest.mark.parametrize("damage", ["truncated_header", "corrupt_chunk"])
def test_a_broken_file_is_never_skipped_silently(setup: tuple[Path, Path, Path], tmp_path: Path, damage: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Every cell of a partition present but one broken file: an error, or listed with the cells left out."""
    import shutil

    checkpoint, store, partition = setup
    store = Path(shutil.copytree(store, tmp_path / "store"))
    bad = store / "075" / "bg-01" / "090" / "heatmaps.ghs"
    data = bytearray(bad.read_bytes())
    if damage == "truncated_header":
        bad.write_bytes(bytes(data[:40]))  # the manifest scan leaves it out (it used to, with a log line only)
    else:
        data[-50] ^= 0xFF  # inside the last compressed section: the header still validates
        bad.write_bytes(bytes(data))
    base = ["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(store), "--protocol", "casia-b",
            "--set", f"eval.partition={partition}", "--no-progress"]
    code, out, err = run([*base, "--out", str(tmp_path / "strict")], capsys)
    assert code == 2 and str(bad) in err and "Traceback" not in err, err
    assert not (tmp_path / "strict").exists()
    code, out, err = run([*base, "--allow-incomplete", "--out", str(tmp_path / "allowed")], capsys)
    assert code == 0, err
    assert f"1 unreadable files ({bad}:" in out
    results = json.loads((tmp_path / "allowed" / "tiny.casia-b.json").read_text())
    assert [u["path"] for u in results["left_out"]["unreadable"]] == [str(bad)]
    assert results["num_sequences"] == 10 * 11 - 1 and results["complete"] is False


def test_ccpg_reports_label_both_rank1s_and_pair_the_headline_with_map() -> None:
    rng = np.random.default_rng(0)
    subjects = ["100", "101", "102"]
    types = ("U0_D0", "U0_D0_BG", "U1_D1", "U2_D2", "U3_D3", "U0_D3", "U1_D0")
    s, c, v = labels(subjects, types, ("1_1", "2_1", "3_1"))
    centres = {x: rng.normal(size=(8, 2)) for x in subjects}
    emb = np.stack([centres[x] + 0.8 * rng.normal(size=(8, 2)) for x in s]).astype(np.float32)
    res = evaluate_embeddings(CCPG, emb, s, c, v)
    text = report.format_results(res)
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Re-ID R-1"))
    assert lines[first].startswith("Re-ID R-1, same subject+view removed (headline)")
    assert lines[first + 1].startswith("Re-ID mAP (headline)")
    assert lines[first + 2].startswith("Gait R-1, identical views excluded")
    assert "headline: re-ID style Rank-1 paired with mAP" in text
    r1 = [float(x) for x in lines[first].split()[-4:]]
    assert r1 == pytest.approx([round(res["headline"][f"{n} re-ID R-1"], 2) for n in ("CL", "UP", "DN", "BG")])
    rows = list(csv.DictReader(io.StringIO(_csv_text(res))))
    metrics = {(r["set"], r["metric"]) for r in rows}
    assert {("CL", "headline_reid_rank1"), ("CL", "headline_reid_mAP"), ("CL", "gait_rank1_excl_identical"),
            ("CL", "gait_rank1_incl_identical"), ("CL", "reid_rank1")} <= metrics
    assert ("CL", "headline") not in metrics and ("CL", "rank1") not in metrics  # no unlabelled Rank-1
    value = next(float(r["value"]) for r in rows if (r["set"], r["metric"]) == ("CL", "headline_reid_mAP"))
    assert value == pytest.approx(res["sets"]["CL"]["reid"]["mAP"])


def _csv_text(results: dict[str, object]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["protocol", "set", "metric", "probe_view", "gallery_view", "value"],
                            restval="")
    writer.writeheader()
    writer.writerows(report.csv_rows(results))
    return buf.getvalue()
