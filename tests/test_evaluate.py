"""Embedding extraction (batching, frame cap, sharding under gloo) and end-to-end evaluation of a trained model."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from gaitheat.config import load_config
from gaitheat.evaluate import assemble_by_index, embed_sequences, embed_store, shard_indices
from gaitheat.experiment import ExperimentConfig, ModelConfig
from gaitheat.manifest import load_manifest
from gaitheat.storage import HeatmapSequence, SequenceMeta, sequence_path, write_sequence

TINY_MODEL = ModelConfig(widths=(4, 8, 16, 32), embed_dim=16, parts=4)
TINY = ["model.widths=[4,8,16,32]", "model.embed_dim=16", "model.parts=4", "data.frames_train=4",
        "data.batch_p=2", "data.batch_k=2", "train.log_every=1", "train.precision=fp32", "data.workers=0"]
CASIA_TEST = ("075", "076", "077")
CASIA_CONDITIONS = (*(f"nm-0{i}" for i in range(1, 7)), "bg-01", "bg-02", "cl-01", "cl-02")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def walker_heatmaps(subject: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 17, 64, 48) Gaussian joint maps around subject-specific positions, jittered per frame."""
    base = np.random.default_rng(1000 + subject).uniform((10, 8), (54, 40), size=(17, 2))
    centres = base[None] + rng.normal(scale=1.0, size=(frames, 17, 2))
    yy, xx = np.mgrid[0:64, 0:48].astype(np.float32)
    cy, cx = centres[..., 0, None, None], centres[..., 1, None, None]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0**2)).astype(np.float32)


def write_tiny_store(root: Path, subjects: dict[str, tuple[str, ...]], views: tuple[str, ...], frames: int = 6,
                     seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for subject, conditions in subjects.items():
        for condition in conditions:
            for view in views:
                hm = walker_heatmaps(int(subject), frames, rng)
                kp = np.zeros((frames, 17, 3), dtype=np.float32)
                seq = HeatmapSequence(hm, kp, np.arange(frames, dtype=np.int64),
                                      SequenceMeta(subject, condition, view, pose_model="synthetic"))
                write_sequence(sequence_path(root, subject, condition, view), seq)
    load_manifest(root)
    return root


@pytest.fixture(scope="module")
def casia_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    subjects = {s: ("nm-01", "nm-02") for s in ("001", "002", "003")}
    subjects.update({s: CASIA_CONDITIONS for s in CASIA_TEST})
    return write_tiny_store(tmp_path_factory.mktemp("casia"), subjects, ("000", "090", "180"))


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    from gaitheat.models import build_model

    torch.manual_seed(0)
    return build_model(TINY_MODEL, num_classes=3).eval()


def test_embed_sequences_batching_order_and_frame_cap(tiny_model: torch.nn.Module) -> None:
    rng = np.random.default_rng(0)
    seqs = [walker_heatmaps(s, t, rng) * 3.0 for s, t in ((1, 5), (2, 9), (3, 3), (1, 7))]
    one = embed_sequences(tiny_model, seqs, batch_size=1)
    assert one.shape == (4, 16, 4) and one.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-5)  # unit strips
    # zero-padded batches with lengths give the same embeddings, in input order
    np.testing.assert_allclose(embed_sequences(tiny_model, iter(seqs), batch_size=3), one, atol=1e-5)
    np.testing.assert_array_equal(embed_sequences(tiny_model, seqs, batch_size=1), one)  # deterministic
    # per-sequence normalisation: a rescaled sequence embeds the same
    np.testing.assert_allclose(embed_sequences(tiny_model, [seqs[0] / 3.0]), one[:1], atol=1e-5)
    # the cap keeps the *first* frames
    capped = embed_sequences(tiny_model, seqs[1:2], max_frames=4)
    np.testing.assert_allclose(capped, embed_sequences(tiny_model, [seqs[1][:4]]), atol=1e-6)
    assert not np.allclose(capped, one[1:2], atol=1e-4)
    with pytest.raises(ValueError, match="sequence 0"):
        embed_sequences(tiny_model, [np.zeros((4, 17, 64))])


def test_embed_store_matches_embed_sequences(tiny_model: torch.nn.Module, casia_store: Path) -> None:
    from gaitheat.storage import read_sequence

    rows = [r for r in load_manifest(casia_store) if r.subject == "075"][:5]
    got = embed_store(tiny_model, casia_store, rows, batch_size=2, progress=False)
    want = embed_sequences(tiny_model, [read_sequence(casia_store / r.path).heatmaps for r in rows])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_sharding_and_assembly_by_index() -> None:
    shards = [shard_indices(5, r, 3) for r in range(3)]
    assert [s.tolist() for s in shards] == [[0, 3], [1, 4], [2]]
    parts = [(np.r_[s, -1 * np.ones(2 - len(s), dtype=np.int64)], np.arange(2)[:, None, None] + 10.0 * r)
             for r, s in enumerate(shards)]  # padding row on the last rank carries index -1
    out = assemble_by_index(parts, 5)
    assert out[:, 0, 0].tolist() == [0.0, 10.0, 20.0, 1.0, 11.0]
    with pytest.raises(ValueError, match="embedded"):
        assemble_by_index([(np.array([0, 0]), np.zeros((2, 1, 1)))], 2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sharded_worker(rank: int, world: int, port: int, state: dict, root: str, out: str) -> None:
    from gaitheat.models import build_model

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = build_model(TINY_MODEL, num_classes=3)
        model.load_state_dict(state)
        rows = load_manifest(root)[:7]  # 7 records over 2 ranks: one rank pads
        emb = embed_store(model, root, rows, batch_size=2, rank=rank, world_size=world, progress=False)
        np.save(Path(out) / f"rank{rank}.npy", emb)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_sharded_extraction_under_gloo_matches_single_process(tiny_model: torch.nn.Module, casia_store: Path,
                                                               tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    mp.spawn(_sharded_worker, args=(2, _free_port(), state, str(casia_store), str(tmp_path)), nprocs=2)
    single = embed_store(tiny_model, casia_store, load_manifest(casia_store)[:7], progress=False)
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"rank{rank}.npy"), single, atol=1e-5)


@pytest.fixture(scope="module")
def trained_checkpoint(casia_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gaitheat.train import train

    out = tmp_path_factory.mktemp("run")
    cfg = load_config(ExperimentConfig, "cpu-small", [f"data.root={casia_store}", "data.dataset=casia-b",
                                                      f"train.out={out}", "train.steps=2", *TINY])
    return train(cfg, device="cpu")


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from gaitheat.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_end_to_end_casia_b_table_and_reports(trained_checkpoint: Path, casia_store: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_cli(["evaluate", "--checkpoint", str(trained_checkpoint), "--data-root", str(casia_store),
                               "--protocol", "casia-b", "--allow-incomplete", "--out", str(tmp_path), "--no-progress"],
                              capsys)
    assert code == 0, err
    assert "INCOMPLETE store, evaluated without: 47 subjects (078, 079," in out  # 3 of the 50 test subjects
    table = out.splitlines()
    header = next(line for line in table if "NM" in line and "Mean" in line)
    assert header.split() == ["NM", "BG", "CL", "Mean"]
    r1 = next(line for line in table if line.startswith("Gait R-1"))
    values = [float(v) for v in r1.split()[-4:]]
    assert all(0.0 <= v <= 100.0 for v in values) and values[3] == pytest.approx(np.mean(values[:3]), abs=0.01)
    stem = f"{trained_checkpoint.stem}.casia-b"
    results = json.loads((tmp_path / f"{stem}.json").read_text())
    assert results["views"] == ["000", "090", "180"] and results["num_subjects"] == 3
    assert results["sets"]["NM"]["num_probes"] == 3 * 2 * 3 and results["sets"]["NM"]["num_gallery"] == 3 * 4 * 3
    assert results["step"] == 2 and not results["cross_domain"] and results["gamma_deg"] == 5.0
    assert not results["complete"] and len(results["left_out"]["subjects"]) == 47
    assert results["left_out"]["views"] == ["018", "036", "054", "072", "108", "126", "144", "162"]
    assert results["headline"]["NM"] == pytest.approx(values[0], abs=0.006)
    csv_text = (tmp_path / f"{stem}.csv").read_text().splitlines()
    assert csv_text[0] == "protocol,set,metric,probe_view,gallery_view,value"
    assert any(line.startswith("casia-b,CL,rank1_cell,000,090,") for line in csv_text)
    for png in (f"{stem}.views.png", f"{stem}.cmc.png"):
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000

    # two runs side by side
    other = dict(results, headline={k: v + 1.0 for k, v in results["headline"].items()})
    (tmp_path / "b.json").write_text(json.dumps(other))
    code, out, _ = _run_cli(["evaluate", "--compare", str(tmp_path / f"{stem}.json"), str(tmp_path / "b.json")],
                            capsys)
    assert code == 0
    mean_row = next(line for line in out.splitlines() if line.startswith("Mean"))
    assert mean_row.split()[-1] == "1.00"


@pytest.mark.slow
def test_cross_domain_casia_b_checkpoint_on_ccpg(trained_checkpoint: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    types = ("U0_D0", "U0_D0_BG", "U1_D1", "U2_D2", "U3_D3", "U0_D3", "U1_D0")
    store = write_tiny_store(tmp_path / "ccpg", {s: types for s in ("100", "101", "102", "103")},
                             ("1_1", "2_1"), frames=4, seed=1)
    code, out, err = _run_cli(["evaluate", "--checkpoint", str(trained_checkpoint), "--data-root", str(store),
                               "--protocol", "ccpg", "--allow-incomplete", "--out", str(tmp_path / "reports"),
                               "--no-progress"], capsys)
    assert code == 0, err
    assert "casia-b -> ccpg (cross-domain)" in out and "gamma 20 deg" in out
    for label in ("Re-ID R-1, same subject+view removed (headline)", "Re-ID mAP (headline)",
                  "Gait R-1, identical views excluded", "Gait R-1, identical views included", "Re-ID mINP"):
        assert label in out
    results = json.loads((tmp_path / "reports" / f"{trained_checkpoint.stem}.ccpg.json").read_text())
    assert results["num_classes"] == 3 and results["num_subjects"] == 4  # source classifier, target ids
    assert results["views"] == ["1", "2"] and results["headline_family"] == "reid"
    assert set(results["headline"]) == {f"{s} re-ID {m}" for s in ("CL", "UP", "DN", "BG") for m in ("R-1", "mAP")}
    # an explicit gamma in the evaluation config wins over the target's
    code, out, err = _run_cli(["evaluate", "--checkpoint", str(trained_checkpoint), "--data-root", str(store),
                               "--protocol", "ccpg", "--set", "model.gamma_deg=12", "--out", str(tmp_path / "g"),
                               "--allow-incomplete", "--no-progress"], capsys)
    assert code == 0 and "gamma 12 deg" in out, err


def test_cli_errors_name_the_problem(casia_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run_cli(["evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--data-root", "x"], capsys)
    assert code == 2 and "nope.pt" in err
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    code, _, err = _run_cli(["evaluate", "--checkpoint", str(tmp_path / "bad.pt")], capsys)
    assert code == 2 and "bad.pt" in err
    (tmp_path / "a.json").write_text("{}")
    code, _, err = _run_cli(["evaluate", "--compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")], capsys)
    assert code == 2 and "a.json" in err


@pytest.mark.slow
def test_store_without_the_protocols_conditions_is_a_clear_error(trained_checkpoint: Path, casia_store: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run_cli(["evaluate", "--checkpoint", str(trained_checkpoint), "--data-root", str(casia_store),
                             "--protocol", "sustech1k", "--set", "eval.partition=casia-b", "--no-progress"], capsys)
    assert code == 2 and str(casia_store) in err and "sustech1k" in err



def test_periodic_evaluation_hook_for_training(tiny_model: torch.nn.Module, casia_store: Path) -> None:
    from gaitheat.evaluate import make_train_eval

    cfg = load_config(ExperimentConfig, "cpu-small", [f"data.root={casia_store}", "data.dataset=casia-b",
                                                      "eval.protocol=casia-b", "eval.allow_incomplete=true",
                                                      *TINY])
    numbers = make_train_eval(cfg)(tiny_model, 7)
    assert set(numbers) == {"casia-b/NM", "casia-b/BG", "casia-b/CL", "casia-b/Mean"}
    assert all(0.0 <= v <= 100.0 for v in numbers.values())


@pytest.mark.slow
def test_custom_protocol_from_yaml(trained_checkpoint: Path, casia_store: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("eval:\n  protocol: custom\n  partition: casia-b\n  gallery: ['nm-0[1-4]']\n"
                      "  probes:\n    walk: [nm-05, nm-06]\n    coat: ['cl-*']\n")
    code, out, err = _run_cli(["evaluate", "--checkpoint", str(trained_checkpoint), "--data-root", str(casia_store),
                               "--config", str(config), "--set", "eval.distance=cos", "--out", str(tmp_path),
                               "--no-progress"], capsys)
    assert code == 0, err
    header = next(line for line in out.splitlines() if "walk" in line and "coat" in line)
    assert header.split() == ["walk", "coat"]  # the probes mapping's order, as the YAML gives it
    assert "Gait R-5" in out and "Re-ID mAP" in out and "cos distance" in out
    results = json.loads((tmp_path / f"{trained_checkpoint.stem}.custom.json").read_text())
    assert results["sets"]["coat"]["num_probes"] == 3 * 2 * 3 and results["num_subjects"] == 3


def test_select_rows_keeps_test_subjects_and_tolerates_partial_sets(caplog: pytest.LogCaptureFixture) -> None:
    from gaitheat.evaluate import select_rows
    from gaitheat.manifest import ManifestRow
    from gaitheat.protocols import SUSTECH1K

    rows = [ManifestRow(s, t, "000", "heatmaps", 5, f"{s}/{t}/000/heatmaps.ghs", 1)
            for s in ("0001", "0002", "0003") for t in ("00-nm", "01-nm", "01-bg", "02-zz")]
    kept = select_rows(rows, SUSTECH1K, ["0001", "0003"], "store")
    assert {r.subject for r in kept} == {"0001", "0003"}
    assert sorted({r.condition for r in kept}) == ["00-nm", "01-bg", "01-nm", "02-zz"]  # 02-zz: Overall probe
    assert "CL (0 probes" in caplog.text and "798 of 800" not in caplog.text  # only 2 subjects were asked for
    with pytest.raises(ValueError, match="no sustech1k probe set"):
        select_rows([r for r in rows if r.condition != "00-nm"], SUSTECH1K, None, "store")


@pytest.mark.slow
def test_torchrun_two_ranks_gives_the_single_process_results(trained_checkpoint: Path, casia_store: Path,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    import subprocess
    import sys

    args = ["evaluate", "--checkpoint", str(trained_checkpoint), "--data-root", str(casia_store), "--protocol",
            "casia-b", "--device", "cpu", "--allow-incomplete", "--no-progress"]
    code, _, err = _run_cli([*args, "--out", str(tmp_path / "one")], capsys)
    assert code == 0, err
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           str(_free_port()), "-m", "gaitheat", *args, "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Gait R-1") == 1  # only rank 0 reports
    one, two = (json.loads((tmp_path / d / f"{trained_checkpoint.stem}.casia-b.json").read_text())
                for d in ("one", "two"))
    assert two["num_sequences"] == one["num_sequences"] == 90
    for name in ("NM", "BG", "CL"):
        np.testing.assert_allclose(two["sets"][name]["matrix"]["rank1"], one["sets"][name]["matrix"]["rank1"])
        np.testing.assert_allclose(two["sets"][name]["cmc"], one["sets"][name]["cmc"])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_sequence_is_reported_by_name(trained_checkpoint: Path, casia_store: Path, tmp_path: Path,
                                              workers: int, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    store = Path(shutil.copytree(casia_store, tmp_path / "store"))
    bad = store / "076" / "cl-01" / "090" / "heatmaps.ghs"
    data = bytearray(bad.read_bytes())
    data[-50] ^= 0xFF  # inside the last compressed section: the header still validates
    bad.write_bytes(bytes(data))
    # a custom protocol (no fixed cells), so the broken file is met while embedding
    code, _, err = _run_cli(["evaluate", "--checkpoint", str(trained_checkpoint), "--data-root", str(store),
                             "--protocol", "custom", "--set", "eval.partition=casia-b", "--set",
                             "eval.gallery=[nm-01,nm-02,nm-03,nm-04]", "--set", "eval.probes={CL: [cl-01, cl-02]}",
                             "--set", f"data.workers={workers}", "--out", str(tmp_path), "--no-progress"], capsys)
    assert code == 2 and str(bad) in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.json"))  # no partial report
