"""Real 2-process gloo DDP on CPU: the same loss, gradients and update as one process on the global batch.

BatchNorm is the catch. SyncBN is CUDA-only, so on CPU each rank normalises with the statistics of
its own half batch, while one process with the whole batch uses whole-batch statistics: the two
legitimately differ (the last test shows by how much). The equivalence is therefore checked twice:

* BatchNorm in eval mode (running statistics, identical on all ranks): 2 ranks == 1 process on the
  whole batch, directly;
* BatchNorm in training mode: 2 ranks == 1 process that runs the network on the same two half
  batches ("ghost batches") and computes the losses on the concatenated outputs, which is exactly
  what DDP without SyncBN means. PGHA's random skip is switched off (skip_prob=0) so both sides warp
  the same frames.

Both checks go through the real ``train_step`` (explicit all-gather of embeddings with the local
slice's gradient scaled by the world size, DDP gradient averaging, SGD update).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from gaitheat.datasets.sequences import Batch
from gaitheat.experiment import ModelConfig, TrainConfig
from gaitheat.models.spec import LossTerm
from gaitheat.train import amp_for, build_state, train_step

WORLD = 2
MODEL = ModelConfig(widths=(4, 8, 16, 32), embed_dim=8, parts=4, skip_prob=0.0)
TRAIN = TrainConfig(precision="fp32", lr=0.1)
LOSSES = ModelConfig().spec().losses  # GaitHeat's six terms
# pairwise terms other models use (SupCon, batch-hard triplet) on one named output
PAIRWISE = (LossTerm("e", "supcon", 1.0, temperature=0.1), LossTerm("e", "triplet", 0.5, mining="hard"))
NUM_CLASSES = 4


def as_batch(x: torch.Tensor, y: torch.Tensor) -> Batch:
    return Batch({"heatmaps": x}, None, y, torch.arange(len(y)))


def pairwise_features() -> torch.Tensor:
    """(8, 6, 2) features for the global batch of :func:`global_batch`'s labels."""
    return torch.randn(8, 6, 2, generator=torch.Generator().manual_seed(2))


def pairwise_grad(x: torch.Tensor, y: torch.Tensor, world_size: int) -> tuple[float, torch.Tensor]:
    """Loss and gradient w.r.t. ``x`` of the pairwise terms through the trainer's ``loss_terms``."""
    from gaitheat.models import ModelOutput
    from gaitheat.train import loss_terms

    x = x.clone().requires_grad_()
    loss, _ = loss_terms(ModelOutput(features={"e": x}, embedding=x), y, PAIRWISE, world_size)
    loss.backward()
    assert x.grad is not None
    return float(loss), x.grad


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 17, 64, 48, generator=g)
    y = torch.tensor([2, 0, 1, 3, 0, 2, 3, 1])  # every identity twice, spread over both ranks
    return x, y


def fresh_model() -> torch.nn.Module:
    from gaitheat.models import build_model

    torch.manual_seed(0)
    return build_model(MODEL, NUM_CLASSES)


def step_result(state: Any, loss: torch.Tensor) -> dict[str, Any]:
    model = getattr(state.model, "module", state.model)
    return {"loss": float(loss),
            "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters()},
            "weights": {n: p.detach().clone() for n, p in model.named_parameters()}}


def worker(rank: int, port: int, out: str) -> None:
    from gaitheat import distributed

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist = distributed.setup("cpu")
    try:
        assert torch.distributed.get_backend() == "gloo"
        results = {}
        for bn_train in (False, True):
            model = fresh_model()
            model.train(bn_train)
            amp = amp_for("fp32", dist.device)
            state = build_state(model, TRAIN, amp)
            state.model = torch.nn.parallel.DistributedDataParallel(model)
            x, y = global_batch()
            n = len(y) // WORLD
            local = slice(rank * n, (rank + 1) * n)
            loss, _ = train_step(state, as_batch(x[local], y[local]), LOSSES, amp, WORLD)
            # a rank reports the global triplet + its local CE; the ranks' mean is the global-batch loss
            results[bn_train] = step_result(state, distributed.mean_across_ranks(loss))
        _, y = global_batch()
        n = len(y) // WORLD
        local = slice(rank * n, (rank + 1) * n)  # each rank's labels are all different: positives are remote
        loss, grad = pairwise_grad(pairwise_features()[local], y[local], WORLD)
        results["pairwise"] = {"loss": distributed.all_gather_objects(loss),
                               "grad": torch.cat(distributed.all_gather_objects(grad))}
        if dist.is_main:
            torch.save(results, out)
    finally:
        distributed.cleanup()


class GhostBatches(torch.nn.Module):
    """Runs the wrapped network on consecutive chunks and concatenates the outputs (per-chunk BatchNorm)."""

    def __init__(self, model: torch.nn.Module, chunks: int) -> None:
        super().__init__()
        self.model, self.chunks = model, chunks

    def forward(self, heatmaps: torch.Tensor, lengths: torch.Tensor | None = None) -> Any:
        from gaitheat.models import GaitOutput

        outs = [self.model(part) for part in heatmaps.chunk(self.chunks)]
        return GaitOutput(
            embeddings={k: torch.cat([o.embeddings[k] for o in outs]) for k in outs[0].embeddings},
            logits={k: torch.cat([o.logits[k] for o in outs]) for k in outs[0].logits},
            embedding=torch.cat([o.embedding for o in outs]))


def single_process(bn_train: bool, ghost: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    model = fresh_model()
    model.train(bn_train)
    amp = amp_for("fp32", torch.device("cpu"))
    state = build_state(model, TRAIN, amp)
    if ghost:
        state.model = GhostBatches(model, WORLD)
    x, y = global_batch()
    loss, _ = train_step(state, as_batch(x, y), LOSSES, amp, world_size=1)
    result = step_result(state, loss)
    if ghost:
        result["grads"] = {k.removeprefix("model."): v for k, v in result["grads"].items()}
        result["weights"] = {k.removeprefix("model."): v for k, v in result["weights"].items()}
    return result


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, dict[str, Any]]:
    """One 2-rank gloo run (both BatchNorm modes), shared by the tests below."""
    out = tmp_path_factory.mktemp("ddp") / "ranks.pt"
    torch.multiprocessing.spawn(worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    results: dict[bool, dict[str, Any]] = torch.load(out, weights_only=True)
    return results


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the tensor's scale (fp32 reductions differ in order across ranks)."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def assert_same(ddp: dict[str, Any], ref: dict[str, Any]) -> None:
    assert ddp["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    assert ddp["grads"].keys() == ref["grads"].keys()
    for name in ref["grads"]:
        # measured: at most ~1e-5 (float32 summation order); real mistakes show up at 1e-2 and above
        assert max_rel_diff(ddp["grads"][name], ref["grads"][name]) < 1e-4, name
        assert max_rel_diff(ddp["weights"][name], ref["weights"][name]) < 1e-5, name
    nonzero = sum(int(g.abs().sum() > 0) for g in ref["grads"].values())
    assert nonzero > 0.9 * len(ref["grads"])  # the comparison is not between zero gradients


@pytest.mark.parametrize("bn_train", [False, True], ids=["bn-eval", "bn-train-ghost"])
def test_two_rank_gloo_ddp_equals_one_process(ddp_results: dict[bool, dict[str, Any]], bn_train: bool) -> None:
    assert_same(ddp_results[bn_train], single_process(bn_train, ghost=bn_train))


def test_pairwise_losses_see_the_global_batch_under_gloo(ddp_results: dict[Any, dict[str, Any]]) -> None:
    """SupCon and batch-hard triplet are gathered like GaitHeat's triplet: every rank's loss is the global
    batch's, and its slice's gradient is ``world_size`` times the global gradient's slice, so DDP's
    average of parameter gradients is exactly the one-process gradient."""
    _, y = global_batch()
    ref_loss, ref_grad = pairwise_grad(pairwise_features(), y, 1)
    ddp = ddp_results["pairwise"]
    assert ddp["loss"] == pytest.approx([ref_loss] * WORLD, rel=1e-5)
    assert max_rel_diff(ddp["grad"] / WORLD, ref_grad) < 1e-5
    assert float(ref_grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="single sample"):  # what one rank alone would have to refuse
        pairwise_grad(pairwise_features()[:4], y[:4], 1)


def test_per_rank_batchnorm_differs_from_whole_batch(ddp_results: dict[bool, dict[str, Any]]) -> None:
    # why the ghost-batch reference is needed on CPU: whole-batch BN statistics give other gradients
    plain = single_process(bn_train=True, ghost=False)
    ddp = ddp_results[True]
    assert max(max_rel_diff(ddp["grads"][n], plain["grads"][n]) for n in plain["grads"]) > 1e-2


def test_all_gather_is_identity_without_process_group() -> None:
    from gaitheat import distributed

    x = torch.rand(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(x) is x
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    info = distributed.setup("cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    assert not torch.distributed.is_initialized()  # a single process needs no process group


def torchrun(store: Path, out: Path, steps: int) -> list[str]:
    sets = [f"train.steps={steps}", "train.checkpoint_every=2", "data.workers=0", "model.widths=[4,8,16,32]",
            "model.embed_dim=8", "model.parts=4", "data.frames_train=3", "data.batch_p=2", "data.batch_k=2",
            "model.gamma_deg=180.0"]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
            "-m", "gaitheat", "train", "cpu-small", "--data-root", str(store), "--out", str(out),
            *[a for s in sets for a in ("--set", s)]]


@pytest.mark.slow
def test_torchrun_two_ranks_resume_exactly(tmp_path: Path) -> None:
    """Under torchrun: checkpoints hold one RNG state per rank, and a 2 + 2 step run equals a 4 step run."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_datasets_sequences import write_store

    from gaitheat.checkpoint import read_checkpoint

    store = write_store(tmp_path / "store", {f"{i:03d}": [8, 6] for i in range(1, 5)})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # PGHA's random skip is on (cpu-small's skip_prob 0.8), so each rank's RNG stream matters
    runs = [subprocess.Popen(torchrun(store, tmp_path / name, steps), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for name, steps in (("straight", 4), ("split", 2))]
    for proc in runs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    half = read_checkpoint(tmp_path / "split/checkpoints/last.pt")
    assert half["step"] == 2 and len(half["rng"]) == 2  # one RNG state per rank
    assert not torch.equal(half["rng"][0]["torch"], half["rng"][1]["torch"])
    resumed = subprocess.run(torchrun(store, tmp_path / "split", 4), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = read_checkpoint(tmp_path / "straight/checkpoints/last.pt")
    b = read_checkpoint(tmp_path / "split/checkpoints/last.pt")
    assert a["step"] == b["step"] == 4
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
