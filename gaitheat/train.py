"""Training as plain functions (torchvision reference / nanoGPT style): ``train_step`` and ``train``.

``train(cfg)`` runs the same code on one CPU, one GPU or under ``torchrun`` (DDP, gloo on CPU and NCCL
on CUDA; :mod:`gaitheat.distributed`), for any registered model: it knows a model only through its
spec (``cfg.model.spec()``: inputs, frame policy, loss terms) and calls it by keyword,
``model(**batch.inputs, lengths=batch.lengths)``. It is iteration-based; GaitHeat's recipe (spec §4.2)
is SGD 0.1 / 0.9 / 5e-4 on all parameters with MultiStepLR stepped per iteration (skipped when AMP
skipped the optimiser step); ``train.optimizer: adam|adamw`` and ``train.scheduler: onecycle`` serve
other models. fp16 autocast with a GradScaler on CUDA or optional bf16 autocast, through one code path
with ``enabled=`` flags. Rank 0 logs (gaitheat.progress, TensorBoard) and writes checkpoints
(:mod:`gaitheat.checkpoint`); a run resumes bit-exactly from the newest checkpoint in ``OUT/checkpoints``.

Losses: the model's :class:`~gaitheat.models.spec.LossTerm` list, each on a named output (GaitHeat,
spec §4.1: per branch a batch-all triplet loss on the pre-BNNeck embeddings and a cosine
cross-entropy on the logits). Under DDP the step gathers the outputs of the pairwise terms (triplet,
SupCon) and the labels of all ranks explicitly (:func:`gaitheat.distributed.all_gather_with_grad`)
so they see the global batch, as the official code does; cross-entropy uses local logits. The loss
functions themselves stay pure.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from gaitheat import distributed
from gaitheat.atomic import atomic_write_text
from gaitheat.checkpoint import (
    TrainState,
    capture_rng,
    find_resume,
    load_checkpoint,
    load_model,
    read_checkpoint,
    restore_rng,
    restore_state,
    save_checkpoint,
    step_path,
)
from gaitheat.datasets.sequences import Batch
from gaitheat.device import Amp, amp_for
from gaitheat.experiment import DataConfig, ExperimentConfig, TrainConfig, with_absolute_paths
from gaitheat.heap import retain_freed_memory
from gaitheat.models.spec import LossTerm, ModelConfig, ModelSpec

__all__ = ["Amp", "EvalFn", "TrainState", "amp_for", "build_optimizer", "build_scheduler", "build_state",
           "build_train_dataset", "check_batch_shape", "compile_for_training",
           "forward_backward", "load_checkpoint", "load_model", "loss_terms", "make_loader", "save_checkpoint", "train",
           "train_step"]

log = logging.getLogger(__name__)

# (model in eval mode, step) -> named numbers to log; runs on rank 0 only
EvalFn = Callable[[torch.nn.Module, int], dict[str, float]]


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` in the forward pass, ``factor`` times its gradient in the backward pass."""
    return x * factor - x.detach() * (factor - 1)


def loss_terms(output: Any, labels: torch.Tensor, losses: Sequence[LossTerm], world_size: int = 1
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A model's weighted loss terms on a local batch, the pairwise ones (triplet, SupCon) over the global batch.

    Under DDP the outputs the pairwise terms name, and the labels, are gathered from all ranks here,
    explicitly, and the pure :func:`gaitheat.losses.compute_losses` gets them; cross-entropy stays on
    the local logits. Each rank's gathered batch carries gradient only through its own slice, so that
    slice's gradient is scaled by ``world_size`` (the official code multiplies the loss instead): after
    DDP averages the ranks' gradients, the result is exactly the gradient of the global-batch pairwise
    losses plus the mean of the ranks' cross-entropies, i.e. what one process computes on the whole batch.

    Args:
        output: the model's output (``.features``: named (B_local, ...) tensors).
        labels: (B_local,) long.
        losses: the model's ``spec().losses``.
        world_size: number of ranks (1 without DDP).
    Returns:
        (loss to backpropagate, detached named terms from ``compute_losses``).
    """
    from gaitheat.losses import compute_losses

    features = output.features
    if world_size == 1:
        return compute_losses(losses, features, labels)
    names = sorted({t.output for t in losses if t.pairwise})
    gathered = {name: distributed.all_gather_with_grad(scale_grad(features[name].float(), world_size))
                for name in names}
    all_labels = distributed.all_gather_with_grad(labels)
    return compute_losses(losses, features, labels, gathered, all_labels)


def forward_backward(model: torch.nn.Module, batch: Batch, losses: Sequence[LossTerm], amp: Amp,
                     scaler: torch.amp.GradScaler, world_size: int = 1
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward under autocast (``model(**batch.inputs, lengths=batch.lengths)``), losses in fp32, scaled
    backward; gradients accumulate into ``.grad``.

    Returns:
        (detached loss, detached terms); see :func:`loss_terms`.
    """
    with torch.autocast(device_type=amp.device_type, dtype=amp.dtype, enabled=amp.autocast):
        output = model(**batch.inputs, lengths=batch.lengths)
    loss, terms = loss_terms(output, batch.labels, losses, world_size)
    scaler.scale(loss).backward()
    return loss.detach(), terms


def train_step(state: TrainState, batch: Batch, losses: Sequence[LossTerm], amp: Amp, world_size: int = 1
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimiser step on one batch; advances ``state.step`` and the LR schedule.

    The scheduler steps only when the GradScaler did not skip the update for overflow (as the
    official trainer does), so the milestones count real updates.
    """
    state.optimizer.zero_grad(set_to_none=True)
    report, terms = forward_backward(state.model, batch, losses, amp, state.scaler, world_size)
    scale = state.scaler.get_scale()
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if state.scaler.get_scale() >= scale:
        state.scheduler.step()
    state.step += 1
    return report, terms


def _has_cxx_compiler() -> bool:
    """Whether Inductor can build CPU kernels: it needs a C++ compiler (``$CXX`` or g++/c++/clang++)."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    return any(shutil.which(name) for name in names)


def compile_for_training(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile(model)`` for the training step, or ``model`` itself where Inductor cannot build.

    Inductor fuses BatchNorm, ReLU, Max Response and the residual adds into few kernels, plans its
    buffers (far fewer fresh allocations, which on CPU means far fewer page faults) and runs the convs
    channels-last. Its BatchNorm statistics keep fp32 precision in that layout, unlike eager
    channels-last BatchNorm on CPU (see :mod:`gaitheat.models.inference`). Random ops fall back to
    the eager kernels (a process-wide Inductor setting) so PGHA's random skips draw exactly what an
    eager run draws: same batches, exact resume. The first step compiles (20-50 s).
    """
    if device.type == "cpu" and not _has_cxx_compiler():
        log.warning("train.compile: no C++ compiler found (set CXX or install g++); training runs eagerly")
        return model
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    if device.type == "cpu" and _has_narrow_strided_1x1(model):
        # oneDNN's channels-last backward of a strided 1x1 conv with fewer than 8 input channels
        # hangs or crashes on AVX2-only CPUs (seen on AMD EPYC without AVX-512, torch 2.13): keep
        # Inductor's layout for such tiny networks (only test-sized widths have them).
        inductor_config.layout_optimization = False
    return cast(torch.nn.Module, torch.compile(model))


def _has_narrow_strided_1x1(model: torch.nn.Module) -> bool:
    """Whether ``model`` has a 1x1 convolution with stride > 1 and fewer than 8 input channels."""
    return any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1
               and m.in_channels < 8 for m in model.modules())


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``train.optimizer`` on all parameters, no warm-up: sgd (GaitHeat, with momentum) | adam | adamw."""
    params = model.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown train.optimizer {cfg.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """``train.scheduler``: multistep (``milestones``, ``lr_gamma``) | onecycle (peak ``lr`` over ``steps``)."""
    if cfg.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.lr_gamma)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(cfg.steps, 2),
                                                   pct_start=cfg.warmup_fraction)
    raise ValueError(f"unknown train.scheduler {cfg.scheduler!r}")


def build_state(model: torch.nn.Module, cfg: TrainConfig, amp: Amp) -> TrainState:
    """Optimiser, LR schedule (``train.optimizer`` / ``train.scheduler``) and GradScaler for ``model``."""
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(amp.device_type, enabled=amp.grad_scaler)
    return TrainState(step=0, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)


def _check_resume(payload: dict[str, Any], cfg: ExperimentConfig, subjects: list[str], path: Path) -> None:
    from gaitheat.config import ConfigError, from_dict, to_dict

    stored = payload["config"]
    try:  # through the dataclasses, so fields added since the checkpoint compare at their defaults
        stored_model = to_dict(from_dict(ExperimentConfig, stored).model)
    except ConfigError as exc:
        raise ValueError(f"{path}: the checkpoint's config does not load ({exc})") from exc
    if stored_model != to_dict(cfg.model):
        # loss settings are part of the model section, so changing them on resume is refused too
        raise ValueError(f"{path}: the checkpoint's model config differs from this run's; use another train.out")
    if list(payload.get("subjects", subjects)) != subjects:
        raise ValueError(f"{path}: the checkpoint was trained on other subjects than this store's train split")
    for section in ("data", "train"):  # the checkpoint records absolute paths
        if stored.get(section) != to_dict(getattr(with_absolute_paths(cfg), section)):
            log.warning("resuming %s with a changed '%s' config section", path, section)


def build_train_dataset(dc: DataConfig, model: ModelConfig | None = None) -> tuple[Any, list[str]]:
    """The training ``GaitDataset`` of ``dc`` for ``model``'s inputs and its sorted subjects
    (class ``i`` = ``subjects[i]``). ``model`` None: GaitHeat's defaults."""
    from gaitheat.datasets.sequences import GaitDataset, split_rows
    from gaitheat.models.gaitheat import GaitHeatConfig

    model = model or GaitHeatConfig()
    spec = model.spec()
    rows, subjects = split_rows(dc.root, dc.dataset, dc.partition, "train")
    if dc.num_classes and dc.num_classes != len(subjects):
        raise ValueError(f"data.num_classes={dc.num_classes} but {dc.root} holds {len(subjects)} train subjects; "
                         "fix the store or set data.num_classes=0 to use the subjects found")
    dataset = GaitDataset(dc.root, rows, subjects, frames=dc.frames_train, inputs=spec.inputs, policy=spec.frames,
                          window=dc.frames_test, augment=spec.augment, needed_by=f"model {model.name}")
    return dataset, subjects


def check_batch_shape(spec: ModelSpec, dc: DataConfig, world_size: int) -> None:
    """Refuse batches a model's losses cannot use: a pairwise loss needs ``K * views >= 2`` (an anchor
    needs a positive), and the ``P * K`` picks must split evenly over the ranks."""
    if spec.needs_pairs and dc.batch_k * spec.frames.views < 2:
        raise ValueError(f"data.batch_k={dc.batch_k} with {spec.frames.views} view(s): a pairwise loss needs at least "
                         "two samples per identity (batch_k * views >= 2)")
    if (dc.batch_p * dc.batch_k) % world_size:
        raise ValueError(f"data.batch_p * data.batch_k = {dc.batch_p * dc.batch_k} does not split over {world_size} "
                         "ranks")


def make_loader(dataset: Any, dc: DataConfig, seed: int, dist: distributed.DistInfo, start: int) -> Any:
    """Endless DataLoader of this rank's share of the P x K batches (as :class:`Batch`), from batch ``start``."""
    from gaitheat.datasets.sequences import collate
    from gaitheat.sampling import IdentityBatchSampler

    sampler = IdentityBatchSampler(dataset.labels, dc.batch_p, dc.batch_k, seed=seed, rank=dist.rank,
                                   world_size=dist.world_size, start=start)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=dc.workers, pin_memory=dist.device.type == "cuda",
        collate_fn=collate,
        generator=torch.Generator(),  # its own generator: creating the loader leaves the global RNG untouched
    )


def _resume(path: Path, state: TrainState, cfg: ExperimentConfig, subjects: list[str],
            dist: distributed.DistInfo) -> None:
    # on the CPU: RNG states must stay CPU tensors; load_state_dict moves weights to the model's device
    payload = read_checkpoint(path, "cpu")
    _check_resume(payload, cfg, subjects, path)
    restore_state(payload, state, dist.rank)
    ranks = len(payload.get("rng") or [])
    if ranks != dist.world_size:
        log.warning("resuming a %d-rank run on %d ranks: RNG streams are not continued exactly", ranks,
                    dist.world_size)
    if dist.is_main:
        log.info("resumed from %s at step %d", path, state.step)


def train(cfg: ExperimentConfig, *, device: str | None = None, resume: str | Path | None = None,
          eval_fn: EvalFn | None = None, progress: bool = True) -> Path:
    """Train ``cfg`` to ``cfg.train.steps`` steps; returns the final checkpoint's path.

    Args:
        cfg: the experiment (data, model, train sections are used).
        device: ``"cpu"`` / ``"cuda"`` / None (CUDA when available).
        resume: a checkpoint to continue from; None: the newest in ``OUT/checkpoints``, if any.
        eval_fn: periodic evaluation every ``cfg.train.eval_every`` steps (rank 0); None uses
            ``gaitheat.evaluate.make_train_eval(cfg)`` when that module is available.
        progress: rank 0 reports progress on stderr (:mod:`gaitheat.progress`: a bar on a terminal,
            a line every 30 s in a log).
    Raises:
        ValueError: the store, partition or resumed checkpoint does not fit ``cfg``.
    """
    dist = distributed.setup(device)
    try:
        return _train(cfg, dist, resume, eval_fn, progress)
    finally:
        distributed.cleanup()


def _train(cfg: ExperimentConfig, dist: distributed.DistInfo, resume: str | Path | None,
           eval_fn: EvalFn | None, progress: bool = True) -> Path:
    from gaitheat.config import dump_config, to_dict
    from gaitheat.models import build_model

    tc, dc = cfg.train, cfg.data
    if tc.retain_heap and dist.device.type == "cpu":
        retain_freed_memory()
    spec = cfg.model.spec()
    check_batch_shape(spec, dc, dist.world_size)
    dataset, subjects = build_train_dataset(dc, cfg.model)
    amp = amp_for(tc.precision, dist.device)
    seed_everything(tc.seed)
    model = build_model(cfg.model, len(subjects)).to(dist.device)
    if dist.distributed and dist.device.type == "cuda" and tc.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif dist.distributed and tc.sync_bn and dist.is_main:
        log.info("SyncBN is CUDA-only: BatchNorm statistics stay per rank on %s", dist.device)
    state = build_state(model, tc, amp)
    # each rank draws its own PGHA skips; the initial weights above are shared (DDP broadcasts them anyway)
    seed_everything(tc.seed + 1000 * dist.rank + 1)
    resume_path = Path(resume) if resume else find_resume(tc.out)
    if resume_path is not None:
        _resume(resume_path, state, cfg, subjects, dist)
    if state.step >= tc.steps:
        log.info("already trained to step %d (train.steps=%d)", state.step, tc.steps)
        return resume_path or step_path(tc.out, state.step)
    if dist.is_main:
        atomic_write_text(Path(tc.out) / "config.yaml", dump_config(cfg))
        log.info("training %d sequences of %d subjects on %s x %d (%s), steps %d..%d", len(dataset),
                 len(subjects), dist.device, dist.world_size, tc.precision, state.step, tc.steps)
    loader = make_loader(dataset, dc, tc.seed, dist, state.step)
    if dist.distributed:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        state.model = torch.nn.parallel.DistributedDataParallel(state.model, device_ids=ids)
    if tc.compile:
        state.model = compile_for_training(state.model, dist.device)
    extra = {"num_classes": len(subjects), "subjects": subjects, "sampler": loader.batch_sampler.state_dict()}
    config = to_dict(with_absolute_paths(cfg))  # evaluable from any folder
    batches = iter(loader)
    try:
        _loop(state, batches, cfg, spec, dist, amp, lambda: _save(state, config, extra, tc, dist), progress,
              eval_fn if eval_fn is not None else _default_eval(cfg))
    finally:
        # the loader is endless: stop its worker processes now, not at interpreter exit after the
        # process group is gone (seen there as an abort under torchrun)
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        del batches
    return step_path(tc.out, state.step)


def _save(state: TrainState, config: dict[str, Any], extra: dict[str, Any], tc: TrainConfig,
          dist: distributed.DistInfo) -> None:
    rng = distributed.all_gather_objects(capture_rng())
    if dist.is_main:
        path = save_checkpoint(tc.out, state, config, rng, extra, tc.keep_last)
        log.debug("wrote %s", path)
    distributed.barrier()


def _default_eval(cfg: ExperimentConfig) -> EvalFn | None:
    if cfg.train.eval_every <= 0:
        return None
    try:
        evaluate = importlib.import_module("gaitheat.evaluate")
    except ImportError:
        log.warning("train.eval_every is set but gaitheat.evaluate is not available; no periodic evaluation")
        return None
    make = getattr(evaluate, "make_train_eval", None)
    if make is None:
        log.warning("gaitheat.evaluate has no make_train_eval(cfg); no periodic evaluation")
        return None
    fn: EvalFn = make(cfg)
    return fn


def _loop(state: TrainState, batches: Iterator[Any], cfg: ExperimentConfig, spec: ModelSpec,
          dist: distributed.DistInfo, amp: Amp, save: Callable[[], None], progress: bool,
          eval_fn: EvalFn | None) -> None:
    from gaitheat.progress import Progress

    tc = cfg.train
    writer = _writer(tc.out) if dist.is_main else None
    frames_per_step = cfg.data.batch_p * cfg.data.batch_k * spec.frames.views * cfg.data.frames_train
    bar = Progress(tc.steps, initial=state.step, desc="train", unit="step", enabled=progress and dist.is_main)
    state.model.train()
    tic = time.perf_counter()
    try:
        while state.step < tc.steps:
            batch = next(batches).to(dist.device)
            report, terms = train_step(state, batch, spec.losses, amp, dist.world_size)
            loss = float(report)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {state.step}; the last checkpoint is in {tc.out}")
            toc = time.perf_counter()
            rate = frames_per_step / max(toc - tic, 1e-9)
            tic = toc
            bar.set_postfix(loss=f"{loss:.4f}", frames_s=f"{rate:.0f}")
            bar.update(1)
            if state.step % tc.log_every == 0 or state.step == tc.steps:
                _log_scalars(writer, state, terms, rate)
            if state.step % tc.checkpoint_every == 0 or state.step == tc.steps:
                save()
            if eval_fn is not None and tc.eval_every > 0 and state.step % tc.eval_every == 0:
                _evaluate(state, eval_fn, writer, dist)
    finally:
        bar.close()
        if writer is not None:
            writer.close()


def _writer(out: str) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(Path(out) / "tensorboard"))


def _log_scalars(writer: Any, state: TrainState, terms: dict[str, torch.Tensor], rate: float) -> None:
    # every rank joins the one reduction (local CE and accuracy differ per rank); only rank 0 writes
    names = sorted(terms)
    means = distributed.mean_across_ranks(torch.stack([terms[n].float() for n in names])).tolist()
    if writer is None:
        return
    for name, value in zip(names, means, strict=True):
        writer.add_scalar(f"loss/{name}" if name == "total" else name, value, state.step)
    writer.add_scalar("lr", state.optimizer.param_groups[0]["lr"], state.step)
    writer.add_scalar("frames_per_s", rate, state.step)
    if state.scaler.is_enabled():
        writer.add_scalar("amp/scale", state.scaler.get_scale(), state.step)


def _evaluate(state: TrainState, eval_fn: EvalFn, writer: Any, dist: distributed.DistInfo) -> None:
    from gaitheat.checkpoint import unwrap

    if dist.is_main:
        # evaluation must not shift the training RNG streams, or resumed runs would diverge
        rng = capture_rng()
        model = unwrap(state.model)
        model.eval()
        with torch.no_grad():
            results = eval_fn(model, state.step)
        model.train()
        restore_rng(rng)
        log.info("step %d: %s", state.step, ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
        if writer is not None:
            for name, value in results.items():
                writer.add_scalar(f"eval/{name}", value, state.step)
    distributed.barrier()
