"""Trainer: steps, checkpoints (atomic, pruned, loadable), exact resume after SIGKILL, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from gaitheat.checkpoint import list_checkpoints, load_model, read_checkpoint
from gaitheat.config import load_config
from gaitheat.datasets.sequences import Batch
from gaitheat.experiment import ExperimentConfig, ModelConfig, Precision, TrainConfig
from gaitheat.train import _has_cxx_compiler, amp_for, build_state, train, train_step

sys.path.insert(0, str(Path(__file__).parent))
from test_datasets_sequences import write_store

REPO = Path(__file__).resolve().parent.parent
TINY = ["model.widths=[4,8,16,32]", "model.embed_dim=16", "model.parts=4", "data.frames_train=4",
        "data.batch_p=2", "data.batch_k=2", "train.log_every=1", "train.precision=fp32",
        "model.gamma_deg=180.0"]  # every frame "upright": PGHA's random skip draws for each one


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("store"), {f"{i:03d}": [12, 9] for i in range(1, 5)})


def tiny_config(store: Path, out: Path, *extra: str) -> ExperimentConfig:
    return load_config(ExperimentConfig, "cpu-small", [f"data.root={store}", f"train.out={out}", *TINY, *extra])


def test_amp_settings() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_for("fp16", cpu).autocast is False and amp_for("fp16", cpu).grad_scaler is False
    assert amp_for("fp16", cuda).dtype == torch.float16 and amp_for("fp16", cuda).grad_scaler
    bf16 = amp_for("bf16", cpu)
    assert bf16.autocast and bf16.dtype == torch.bfloat16 and not bf16.grad_scaler
    assert not amp_for("fp32", cuda).autocast


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_step_updates_weights_and_schedule(precision: Precision) -> None:
    from gaitheat.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=(4, 8, 16, 32), embed_dim=16, parts=4), num_classes=3)
    tc = TrainConfig(precision=precision, milestones=(2,), lr=0.1, lr_gamma=0.1)
    amp = amp_for(precision, torch.device("cpu"))
    state = build_state(model, tc, amp)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(6, 3, 17, 64, 48), torch.tensor([0, 0, 1, 1, 2, 2])
    batch, losses = Batch({"heatmaps": x}, None, y, torch.arange(6)), ModelConfig().spec().losses
    model.train()
    loss, terms = train_step(state, batch, losses, amp)
    assert torch.isfinite(loss) and loss > 0 and {"triplet/fusion", "ce/part", "total"} <= set(terms)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any("weight" in k for k in changed)
    assert state.step == 1 and state.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    train_step(state, batch, losses, amp)
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # milestone at step 2


def test_train_writes_checkpoints_and_loads_model(store: Path, tmp_path: Path) -> None:
    cfg = tiny_config(store, tmp_path / "run", "train.steps=3", "train.checkpoint_every=1", "train.keep_last=2",
                      "data.workers=0")
    final = train(cfg, device="cpu")
    assert final == tmp_path / "run/checkpoints/step-0000003.pt"
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [2, 3]  # keep_last prunes step 1
    last = tmp_path / "run/checkpoints/last.pt"
    assert last.read_bytes() == final.read_bytes()
    assert not [p for p in (tmp_path / "run/checkpoints").iterdir() if ".tmp-" in p.name]
    assert any((tmp_path / "run/tensorboard").iterdir())
    payload = read_checkpoint(last)
    assert payload["step"] == 3 and payload["subjects"] == ["001", "002", "003", "004"]
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "config", "sampler"} <= set(payload)
    model, loaded_cfg, info = load_model(last)
    assert not model.training and loaded_cfg == cfg
    assert info["num_classes"] == 4 and info["step"] == 3 and len(info["sha256"]) == 64
    with torch.no_grad():
        emb = model(torch.rand(1, 5, 17, 64, 48)).embedding
    assert tuple(emb.shape) == (1, 16, 4)
    # already done: a second call resumes, trains nothing and returns the final checkpoint
    assert train(cfg, device="cpu") == final


def test_resume_in_process_matches_uninterrupted(store: Path, tmp_path: Path) -> None:
    straight = train(tiny_config(store, tmp_path / "a", "train.steps=4", "data.workers=0"), device="cpu")
    train(tiny_config(store, tmp_path / "b", "train.steps=2", "data.workers=0"), device="cpu")
    resumed = train(tiny_config(store, tmp_path / "b", "train.steps=4", "data.workers=0"), device="cpu")
    assert_same_weights(straight, resumed)


def test_eval_hook_runs_in_eval_mode_without_shifting_the_rng(store: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, bool]] = []

    def hook(model: torch.nn.Module, step: int) -> dict[str, float]:
        calls.append((step, model.training))
        torch.rand(1000)  # an evaluation that draws random numbers must not change training
        return {"rank1": 0.5}

    with_eval = train(tiny_config(store, tmp_path / "e", "train.steps=3", "train.eval_every=2", "data.workers=0"),
                      device="cpu", eval_fn=hook)
    without = train(tiny_config(store, tmp_path / "n", "train.steps=3", "data.workers=0"), device="cpu")
    assert calls == [(2, False)]
    assert_same_weights(with_eval, without)


def test_num_classes_mismatch_and_model_change_are_errors(store: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_classes=74"):
        train(tiny_config(store, tmp_path / "x", "data.num_classes=74"), device="cpu")
    train(tiny_config(store, tmp_path / "y", "train.steps=1", "data.workers=0"), device="cpu")
    with pytest.raises(ValueError, match="model config differs"):
        train(tiny_config(store, tmp_path / "y", "train.steps=2", "model.embed_dim=8"), device="cpu")


@pytest.mark.skipif(not _has_cxx_compiler(), reason="Inductor needs a C++ compiler on CPU")
def test_compiled_training_matches_eager_and_resumes_exactly(store: Path, tmp_path: Path) -> None:
    eager = train(tiny_config(store, tmp_path / "eager", "train.steps=1", "data.workers=0"), device="cpu")
    counters.clear()
    compiled = train(tiny_config(store, tmp_path / "c", "train.steps=1", "data.workers=0", "train.compile=true"),
                     device="cpu")
    assert counters["stats"]["unique_graphs"] >= 1  # the step really ran through Inductor
    pe, pc = read_checkpoint(eager), read_checkpoint(compiled)
    assert pe["model"].keys() == pc["model"].keys()  # saved unwrapped: no "_orig_mod." prefixes
    # one step from the same weights on the same batch and PGHA skips (eager RNG): equal up to the
    # order of fp32 sums (later steps of this tiny, max-routed network amplify such differences)
    for k, v in pe["model"].items():
        if v.is_floating_point():
            assert float((pc["model"][k] - v).abs().max()) <= 1e-2 * float(v.abs().max()) + 1e-6, k
    load_model(compiled)
    # a compiled run killed and resumed continues exactly as an uninterrupted compiled run
    straight = train(tiny_config(store, tmp_path / "c3", "train.steps=3", "data.workers=0", "train.compile=true"),
                     device="cpu")
    train(tiny_config(store, tmp_path / "c2", "train.steps=2", "data.workers=0", "train.compile=true"), device="cpu")
    resumed = train(tiny_config(store, tmp_path / "c2", "train.steps=3", "data.workers=0", "train.compile=true"),
                    device="cpu")
    assert_same_weights(straight, resumed)


def test_load_model_rejects_a_non_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"bad\.pt"):
        load_model(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_model(tmp_path / "missing.pt")


def assert_same_weights(a: Path, b: Path) -> None:
    pa, pb = read_checkpoint(a), read_checkpoint(b)
    assert pa["step"] == pb["step"]
    assert pa["model"].keys() == pb["model"].keys()
    for k in pa["model"]:
        assert torch.equal(pa["model"][k], pb["model"][k]), k
    for sa, sb in zip(pa["optimizer"]["state"].values(), pb["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])


def cli(store: Path, out: Path, steps: int) -> list[str]:
    sets = [f"train.steps={steps}", "train.checkpoint_every=3", "data.workers=1", *TINY]
    return [sys.executable, "-m", "gaitheat", "train", "cpu-small", "--data-root", str(store), "--out", str(out),
            *[a for s in sets for a in ("--set", s)]]


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_same_weights(store: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    steps = 12
    straight = subprocess.Popen(cli(store, tmp_path / "straight", steps), env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    victim = subprocess.Popen(cli(store, tmp_path / "killed", steps), env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "killed/checkpoints/step-0000003.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    done = [s for s, _ in list_checkpoints(tmp_path / "killed")]
    assert done and max(done) < steps, f"the run finished before the kill ({done})"
    resumed = subprocess.run([*cli(store, tmp_path / "killed", steps), "--resume"], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and f"at step {max(done)}" in resumed.stderr
    _, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err.decode()[-2000:]
    assert_same_weights(tmp_path / "straight/checkpoints/last.pt", tmp_path / "killed/checkpoints/last.pt")


def test_cli_errors_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gaitheat.cli import main

    assert main(["train", "cpu-small"]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["train", "cpu-small", "--data-root", str(tmp_path / "nowhere")]) == 2
    assert main(["train", "cpu-small", "--data-root", str(tmp_path), "--out", str(tmp_path / "o"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "cpu-small", "--data-root", str(tmp_path), "--set", "train.stepz=3"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_training_on_cuda(store: Path, tmp_path: Path) -> None:
    cfg = tiny_config(store, tmp_path / "run", "train.steps=2", "train.precision=fp16", "data.workers=0")
    final = train(cfg, device="cuda")
    payload = read_checkpoint(final)
    assert payload["scaler"]["scale"] > 0  # the GradScaler ran
    assert all(t.device.type == "cpu" for t in payload["model"].values())
    model, _, info = load_model(final, map_location="cuda")
    assert next(model.parameters()).is_cuda and info["step"] == 2


def test_find_resume_prefers_the_newest_complete_step_file(tmp_path: Path) -> None:
    from gaitheat.checkpoint import find_resume, prune_checkpoints

    folder = tmp_path / "checkpoints"
    assert find_resume(tmp_path) is None
    folder.mkdir()
    (folder / "last.pt").write_bytes(b"2")
    assert find_resume(tmp_path) == folder / "last.pt"
    for step in (2, 4, 6):
        (folder / f"step-{step:07d}.pt").write_bytes(b"x")
    (folder / ".step-0000008.pt.tmp-abc").write_bytes(b"partial")  # a killed writer's leftover
    assert find_resume(tmp_path) == folder / "step-0000006.pt"  # last.pt lags after a kill mid-save
    prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in folder.glob("step-*.pt")) == ["step-0000004.pt", "step-0000006.pt"]
