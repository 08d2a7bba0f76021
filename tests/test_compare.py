"""gaitheat compare: cost measurements on tiny models, and the table/JSON/CSV/PNG with labelled paper columns."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from test_model_zoo import build

from gaitheat.compare import (
    PAPER_CASIA_B,
    PAPER_SUITE,
    format_compare_table,
    gflops_per_frame,
    measure_costs,
    reference_columns,
    write_outputs,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_measure_costs_on_a_tiny_model() -> None:
    model = build("gaitgraph")
    spec = model.config.spec()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    costs = measure_costs(model, spec, train_batch=4, train_frames=12, test_frames=12, steps=1)
    assert costs["params"] == sum(p.numel() for p in model.parameters())
    assert costs["gflops_per_frame"] > 0 and costs["train_s_per_frame"] > 0 and costs["infer_ms_per_frame"] > 0
    for k, v in model.state_dict().items():  # measuring leaves the weights as they were
        assert (v == before[k]).all(), k


def test_gflops_count_test_time_augmentation() -> None:
    with_tta = build("gaitgraph")
    cfg = dataclasses.replace(with_tta.config, tta=False)
    without = build("gaitgraph", cfg)
    inputs = with_tta.config.spec().inputs
    assert gflops_per_frame(with_tta, inputs, 12) == pytest.approx(2 * gflops_per_frame(without, inputs, 12))


def _summary() -> dict:
    models = {
        "gaitheat": {"model": "gaitheat", "rank1": {"NM": 90.0, "BG": 80.0, "CL": 50.0}, "params": 1000,
                     "gflops_per_frame": 0.5, "train_s_per_frame": 0.01, "infer_ms_per_frame": 2.0},
        "gaitbase": {"name": "gaitbase", "model": "gaitbase", "error": "store has no 'silhouettes' section"},
        "mine": {"model": "gaitgraph", "rank1": {"NM": 40.0, "BG": None, "CL": 30.0}, "params": 10,
                 "gflops_per_frame": 0.01, "train_s_per_frame": 0.001, "infer_ms_per_frame": 0.1},
    }
    return {"models": models, "reference": reference_columns(list(models)), "protocol": "casia-b"}


def test_outputs_keep_paper_numbers_in_their_own_columns(tmp_path: Path) -> None:
    summary = _summary()
    assert set(summary["reference"]) == {"gaitheat", "gaitbase"}  # "mine" has no paper number
    paths = write_outputs(summary, tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    by_model = {r["model"]: r for r in rows}
    assert by_model["gaitheat"]["NM"] == "90.0"
    assert by_model["gaitheat"]["paper_NM"] == str(PAPER_CASIA_B["gaitheat"][1][0])
    assert by_model["gaitbase"]["NM"] == "" and by_model["gaitbase"]["paper_NM"] == "97.6"  # not run: no measured value
    assert by_model["mine"]["paper_NM"] == "" and by_model["mine"]["BG"] == ""
    assert json.loads(paths["json"].read_text())["models"]["gaitbase"]["error"].startswith("store has no")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_compare_table(summary)
    assert "gaitbase: not run: store has no 'silhouettes' section" in table
    header, gaitheat = table.splitlines()[0], next(line for line in table.splitlines() if line.startswith("gaitheat "))
    assert header.index("|") > header.index("infer ms/fr") and header.index("paper NM") > header.index("|")
    bars = {line.index("|") for line in table.splitlines()[:4]}
    assert len(bars) == 1  # the measured | published divider is one column, whatever the cells hold
    assert "90.00" in gaitheat and "98.22" in gaitheat and gaitheat.index("90.00") < gaitheat.index("98.22")


def test_paper_suite_configs_exist() -> None:
    configs = Path(__file__).resolve().parent.parent / "gaitheat" / "configs"
    for released, small in PAPER_SUITE.values():
        assert (configs / f"{released}.yaml").is_file(), released
        assert (configs / f"{small}.yaml").is_file(), small


def keypoint_store(root: Path) -> tuple[Path, Path]:
    """A keypoint-only CASIA-B-shaped store: 4 training subjects (nm-01/02), 2 test subjects (all ten
    conditions), 2 views, 8 frames; each subject a fixed skeleton plus small jitter."""
    import numpy as np

    from gaitheat.manifest import load_manifest
    from gaitheat.storage import HeatmapSequence, SequenceMeta, sequence_path, write_sequence

    conditions = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
    train, test = ["001", "002", "003", "004"], ["005", "006"]
    rng = np.random.default_rng(0)
    for s in train + test:
        base = np.random.default_rng(int(s)).uniform((14, 8), (34, 56), size=(17, 2))
        for c in conditions if s in test else conditions[:2]:
            for v in ("000", "090"):
                xy = base[None] + rng.normal(0, 0.5, size=(8, 17, 2))
                kp = np.concatenate([xy, np.ones((8, 17, 1))], -1).astype(np.float32)
                seq = HeatmapSequence(None, kp, np.arange(8), SequenceMeta(s, c, v, pose_model="synthetic"))
                write_sequence(sequence_path(root, s, c, v), seq)
    load_manifest(root)
    partition = root.parent / "partition.json"
    partition.write_text(json.dumps({"TRAIN_SET": train, "TEST_SET": test}))
    return root, partition


def test_compare_trains_evaluates_and_resumes(tmp_path: Path) -> None:
    from gaitheat.compare import compare, load_entries

    store, partition = keypoint_store(tmp_path / "store")
    tiny = {"gaitgraph": ["model.input_branch=[3,8,8,8]", "model.main_stream=[8,16,16,32,32]", "model.embed_dim=16",
                          "model.reduction=4"],
            "gaittr": ["model.channels=[10,32,32]", "model.embed_dim=16"]}
    common = [f"data.root={store}", "data.dataset=custom", f"data.partition={partition}", "eval.protocol=casia-b",
              f"eval.partition={partition}", "eval.allow_incomplete=true", "data.frames_train=8", "data.frames_test=8",
              "data.batch_p=2", "data.batch_k=2", "data.workers=0", "train.steps=2", "train.log_every=1",
              "train.checkpoint_every=2"]
    entries = {name: load_entries([f"{name}={name}-cpu-small"], common + extra)[name] for name, extra in tiny.items()}
    summary = compare(entries, tmp_path / "out", measure=False, progress=False)
    for name in tiny:
        row = summary["models"][name]
        assert set(row["rank1"]) == {"NM", "BG", "CL"} and all(0 <= v <= 100 for v in row["rank1"].values())
        assert row["steps"] == 2 and Path(row["checkpoint"]).is_file()
    marker = tmp_path / "out" / "gaitgraph" / "result.json"
    stamp = marker.stat().st_mtime_ns
    again = compare(entries, tmp_path / "out", measure=False, progress=False)  # resumed: nothing redone
    assert marker.stat().st_mtime_ns == stamp and again["models"] == summary["models"]
    for suffix in ("json", "csv", "png", "txt"):
        assert (tmp_path / "out" / f"compare.{suffix}").is_file()
