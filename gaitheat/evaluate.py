"""Evaluate a trained checkpoint on a heatmap store under a benchmark protocol (or a custom one).

Pipeline: load the checkpoint (:func:`gaitheat.checkpoint.load_model`) -> choose the protocol and its test
subjects -> embed every gallery/probe sequence (all frames in order, the first 720 at most, per-sequence
min-max normalisation, deterministic PGHA in eval mode; zero-padded batches with lengths on CUDA, one
sequence at a time on CPU) -> metrics per named probe set (:func:`gaitheat.protocols.evaluate_embeddings`)
-> a plain, JSON-ready results dict that :mod:`gaitheat.report` prints and writes.

A benchmark protocol first checks the store against its partition (:func:`protocol_rows`): missing
test subjects, conditions or views, or unreadable files, stop the run with one error listing them
all, unless ``eval.allow_incomplete`` (``--allow-incomplete``), which evaluates what is there and
records the cells left out in the results (``complete``, ``left_out``).

Under torchrun each rank embeds the records ``rank::world_size`` and the embeddings are gathered by
record index, so no record is duplicated or lost whatever the world size.

Cross-domain testing (paper Table 3): a checkpoint trained on one dataset is evaluated on another's
test split and protocol. Only the retrieval embedding is used, so the classifier's size (the source's
number of training subjects) never has to match the target; the model is built from the checkpoint's
own config. PGHA's upright threshold γ is set to the *target* dataset's (5° CASIA-B and SUSTech1K,
20° CCPG), since γ describes how upright the target's walkers are filmed (spec §7.2, inferred); an
explicit ``model.gamma_deg`` in the evaluation config overrides it (:func:`choose_gamma`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gaitheat.protocols import (
    MissingCells,
    Protocol,
    custom_protocol,
    evaluate_embeddings,
    evaluation_subjects,
    get_protocol,
    missing_cells,
    select_conditions,
)
from gaitheat.storage import HeatmapSequence, StoreError

if TYPE_CHECKING:
    import torch

    from gaitheat.datasets.sequences import Batch
    from gaitheat.experiment import EvalConfig, ExperimentConfig
    from gaitheat.manifest import ManifestRow
    from gaitheat.models.spec import Distance, FramePolicy, ModelSpec

log = logging.getLogger(__name__)


def embed_batches(
    model: torch.nn.Module,
    batches: Iterable[Batch | tuple[torch.Tensor, torch.Tensor | None]],
    device: str | torch.device | None = None,
    precision: str = "fp32",
) -> Iterator[np.ndarray]:
    """Yield (B, D, P) float32 embeddings of batches: ``model.embed(**batch.inputs, lengths=batch.lengths)``.

    A batch is a :class:`~gaitheat.datasets.sequences.Batch`, or a ``(heatmaps, lengths)`` pair (the
    heatmaps-only layout). Inputs must already be loaded (:mod:`gaitheat.inputs`: normalised) and
    zero-padded after ``lengths``. The model is put in eval mode (deterministic) and run under
    ``torch.inference_mode``; a model without ``embed`` gives its forward's ``embedding``.
    """
    import torch

    from gaitheat.device import amp_for, device_of

    dev = device_of(model, device)
    model.to(dev).eval()
    amp = amp_for(precision, dev)
    embed = getattr(model, "embed", None)
    with torch.inference_mode():
        for batch in batches:
            if isinstance(batch, tuple):
                inputs, lengths = {"heatmaps": batch[0]}, batch[1]
            else:
                inputs, lengths = batch.inputs, batch.lengths
            inputs = {k: v.to(dev, non_blocking=True) for k, v in inputs.items()}
            with torch.autocast(dev.type, dtype=amp.dtype, enabled=amp.autocast):
                out = embed(**inputs, lengths=lengths) if embed is not None else \
                    model(**inputs, lengths=lengths).embedding
            yield out.float().cpu().numpy()


def pad_batch(sequences: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, J, H, W) arrays into zero-padded (B, T_max, J, H, W) float32 and (B,) lengths."""
    import torch

    lengths = torch.tensor([s.shape[0] for s in sequences], dtype=torch.long)
    out = torch.zeros((len(sequences), int(lengths.max()), *sequences[0].shape[1:]), dtype=torch.float32)
    for b, seq in enumerate(sequences):
        out[b, : seq.shape[0]] = torch.from_numpy(np.ascontiguousarray(seq, dtype=np.float32))
    return out, lengths


def test_positions(num_frames: int, frames: FramePolicy, max_frames: int, window: int) -> np.ndarray:
    """The frames a test embedding uses: the first ``max_frames`` in order (``all``) or the centred window."""
    from gaitheat.datasets.sequences import centred_window_positions, eval_frame_positions

    if frames.test == "window":
        return centred_window_positions(num_frames, window)
    return eval_frame_positions(num_frames, max_frames)


def embed_sequences(
    model: torch.nn.Module,
    sequences: Iterable[HeatmapSequence | np.ndarray],
    device: str | torch.device | None = None,
    max_frames: int = 720,
    batch_size: int = 1,
    precision: str = "fp32",
    spec: ModelSpec | None = None,
    window: int = 60,
) -> np.ndarray:
    """Retrieval embeddings of in-memory sequences, in input order, through the model's declared inputs.

    Args:
        model: a registered network (``embed(*, lengths, **inputs) -> (B, D, P)``) or anything with
            that method.
        sequences: :class:`~gaitheat.storage.HeatmapSequence` s (the inputs of ``spec`` are loaded from
            them by :func:`gaitheat.inputs.load_inputs`), or raw (T, J, H, W) heatmap arrays (GaitHeat's
            input). Test frames follow ``spec.frames``: the first ``max_frames`` (``<= 0``: all) or the
            centred ``window``; loaded inputs are normalised as at test time.
        device: where to run; None = where the model's parameters are.
        batch_size: sequences per forward pass (zero-padded, with lengths; the result does not depend on it).
        precision: ``auto`` (:func:`gaitheat.device.resolve_precision`) | ``fp32`` | ``fp16`` (CUDA only) |
            ``bf16`` autocast.
        spec: the model's spec (None: GaitHeat's, raw heatmaps).
        window: test frames under a ``window`` test policy.
    Returns:
        (N, D, P) float32.
    Raises:
        StoreError: a sequence lacks a section the inputs need; ValueError: a malformed array.
    """
    from gaitheat.datasets.sequences import collate
    from gaitheat.inputs import load_inputs
    from gaitheat.models.spec import FramePolicy
    from gaitheat.storage import SequenceMeta

    inputs = spec.inputs if spec is not None else {"heatmaps": "heatmaps"}
    frames = spec.frames if spec is not None else FramePolicy()

    def batches() -> Iterator[Batch]:
        pending: list[Any] = []
        for i, seq in enumerate(sequences):
            if not isinstance(seq, HeatmapSequence):
                arr = np.asarray(seq)
                if arr.ndim != 4 or arr.shape[0] < 1:
                    raise ValueError(f"sequence {i}: expected (T, J, H, W) heatmaps with T >= 1, got shape {arr.shape}")
                seq = HeatmapSequence(arr, None, np.arange(arr.shape[0]), SequenceMeta("", "", ""))
            positions = test_positions(seq.num_frames, frames, max_frames, window)
            pending.append((load_inputs(seq, inputs, positions, test=True, where=f"sequence {i}"), -1, i))
            if len(pending) == batch_size:
                yield collate(pending)
                pending = []
        if pending:
            yield collate(pending)

    parts = list(embed_batches(model, batches(), device, precision))
    if not parts:
        raise ValueError("embed_sequences got no sequences")
    return np.concatenate(parts)


def batch_size_for(device: torch.device, configured: int) -> int:
    """Sequences per forward pass: ``eval.batch_size`` on CUDA, one at a time on CPU.

    Measured on the 2-core CPU box (cpu-small width, 8 sequences of 20-60 frames): one at a time took
    1.3 s of CPU, padded batches of 4 took 2.7 s: bigger activations only cost memory bandwidth there.
    """
    return max(1, configured) if device.type == "cuda" else 1


def shard_indices(total: int, rank: int, world_size: int) -> np.ndarray:
    """Record indices of one rank: ``rank, rank + world_size, ...`` (strided keeps lengths balanced)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    return np.arange(rank, total, world_size, dtype=np.int64)


def assemble_by_index(parts: Sequence[tuple[np.ndarray, np.ndarray]], total: int) -> np.ndarray:
    """Put per-rank (indices (n_r,), embeddings (n_r, D, P)) back in record order.

    Indices < 0 mark padding rows and are dropped. Raises ``ValueError`` if a record is missing or
    arrives twice.
    """
    shapes = {e.shape[1:] for i, e in parts if len(i)}
    if len(shapes) != 1:
        raise ValueError(f"ranks returned embeddings of different shapes {sorted(shapes)}" if shapes
                         else "no embeddings to assemble")
    out = np.zeros((total, *shapes.pop()), dtype=np.float32)
    seen = np.zeros(total, dtype=np.int64)
    for indices, emb in parts:
        keep = indices >= 0
        out[indices[keep]] = emb[keep]
        np.add.at(seen, indices[keep], 1)
    if not np.all(seen == 1):
        bad = np.flatnonzero(seen != 1)
        raise ValueError(f"records {bad[:5].tolist()} were embedded {seen[bad[:5]].tolist()} times, expected once")
    return out


def gather_by_index(local: np.ndarray, indices: np.ndarray, total: int, world_size: int) -> np.ndarray:
    """All-gather every rank's embeddings and indices and return all ``total`` in record order.

    Each rank pads its part to ``ceil(total / world_size)`` rows with index -1, so the collective sees
    equal shapes; padding is dropped by index, never by position. Without a process group (or with
    ``world_size == 1``) the local part must already hold every record.
    """
    import torch

    if world_size == 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return assemble_by_index([(indices, local)], total)
    from gaitheat.distributed import all_gather_objects

    # a rank with no records still has to send the right (D, P): ask the others
    dp = next(s for s in all_gather_objects(local.shape[1:] if len(indices) else None) if s is not None)
    rows = math.ceil(total / world_size)
    dev = torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" else None
    emb = torch.zeros((rows, *dp), dtype=torch.float32, device=dev)
    idx = torch.full((rows,), -1, dtype=torch.long, device=dev)
    if len(indices):
        emb[: len(indices)] = torch.from_numpy(local)
        idx[: len(indices)] = torch.from_numpy(indices)
    all_emb = [torch.empty_like(emb) for _ in range(world_size)]
    all_idx = [torch.empty_like(idx) for _ in range(world_size)]
    torch.distributed.all_gather(all_emb, emb)
    torch.distributed.all_gather(all_idx, idx)
    return assemble_by_index([(i.cpu().numpy(), e.cpu().numpy()) for i, e in zip(all_idx, all_emb, strict=True)],
                             total)


class _TestItems:
    """Test-mode items ``indices`` of a dataset; a :class:`StoreError` is *returned*, not raised.

    A DataLoader worker re-raises errors as a ``RuntimeError`` holding a traceback; passing the error
    back as data lets the main process raise the original, which names the bad file.
    """

    def __init__(self, dataset: Any, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices.tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        try:
            return self.dataset[self.indices[i]]
        except StoreError as exc:
            return exc


def _collate_or_error(items: Sequence[Any]) -> Any:
    from gaitheat.datasets.sequences import collate

    errors = [x for x in items if isinstance(x, StoreError)]
    return errors[0] if errors else collate(items)


def embed_store(
    model: torch.nn.Module,
    root: str | Path,
    rows: Sequence[ManifestRow],
    device: str | torch.device | None = None,
    max_frames: int = 720,
    batch_size: int = 1,
    workers: int = 0,
    precision: str = "fp32",
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    spec: ModelSpec | None = None,
    window: int = 60,
    needed_by: str = "",
) -> np.ndarray:
    """Embeddings of stored sequences, in ``rows`` order, sharded over ranks when ``world_size > 1``.

    Reads lazily through :class:`gaitheat.datasets.sequences.GaitDataset` in test mode (the inputs of
    ``spec``, GaitHeat's heatmaps when None; first ``max_frames`` frames or the centred ``window`` as
    ``spec.frames`` says, normalised per sequence), ``workers`` DataLoader processes decoding ahead.

    Returns:
        (len(rows), D, P) float32 on every rank.
    """
    import torch

    from gaitheat.datasets.sequences import GaitDataset
    from gaitheat.progress import Progress

    mine = shard_indices(len(rows), rank, world_size)
    extra: dict[str, Any] = {} if spec is None else {"inputs": spec.inputs, "policy": spec.frames}
    dataset = GaitDataset(root, rows, subjects=[], frames=None, max_frames=max_frames, window=window,
                          needed_by=needed_by, **extra)
    items: Any = _TestItems(dataset, mine)
    loader: Any = torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=False, num_workers=workers,
                                              collate_fn=_collate_or_error)
    bar = Progress(len(mine), desc=f"embed (rank 0 of {world_size})" if world_size > 1 else "embed",
                   unit="sequence", enabled=progress and rank == 0)
    parts, order = [], []

    def batches() -> Iterator[Batch]:
        for batch in loader:
            if isinstance(batch, StoreError):
                raise batch
            order.append(batch.indices.numpy())
            yield batch

    for emb in embed_batches(model, batches(), device, precision):
        parts.append(emb)
        bar.update(len(emb))
    bar.close()
    local = np.concatenate(parts) if parts else np.zeros((0, 0, 0), dtype=np.float32)
    indices = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    return gather_by_index(local, indices, len(rows), world_size)


def resolve_protocol(eval_cfg: EvalConfig, gamma_deg: float = 5.0) -> Protocol:
    """The protocol named by ``eval.protocol``; ``custom`` is built from ``eval.gallery``/``eval.probes``.

    Args:
        gamma_deg: γ recorded for a custom protocol (benchmarks carry their own).
    """
    if eval_cfg.protocol == "custom":
        return custom_protocol(eval_cfg.gallery, eval_cfg.probes, eval_cfg.exclude_identical_view, gamma_deg)
    return get_protocol(eval_cfg.protocol)


def select_rows(rows: Sequence[ManifestRow], protocol: Protocol, subjects: Sequence[str] | None,
                root: str | Path = "") -> list[ManifestRow]:
    """Rows of the test subjects that some probe set or gallery uses; warns about missing subjects and sets.

    Raises:
        ValueError: no probe set has both probe and gallery sequences.
    """
    if subjects is not None:
        wanted = set(subjects)
        present = {r.subject for r in rows} & wanted
        if len(present) < len(wanted):
            log.warning("%s: %d of %d %s test subjects have no sequences in the store (e.g. %s)", root,
                        len(wanted) - len(present), len(wanted), protocol.name, sorted(wanted - present)[:3])
        rows = [r for r in rows if r.subject in wanted]
    conditions = [r.condition for r in rows]
    used = np.zeros(len(rows), dtype=bool)
    empty = []
    for probe_set in protocol.probes:
        probes = select_conditions(conditions, probe_set.conditions, protocol.match)
        gallery = select_conditions(conditions, protocol.gallery_of(probe_set), protocol.match)
        if probes.any() and gallery.any():
            used |= probes | gallery
        else:
            empty.append(f"{probe_set.name} ({int(probes.sum())} probes, {int(gallery.sum())} gallery)")
    if not used.any():
        raise ValueError(f"{root}: no {protocol.name} probe set has both probe and gallery sequences: "
                         f"{', '.join(empty)}; the store's conditions include {sorted(set(conditions))[:8]}")
    if empty:
        # a partial store (e.g. SUSTech1K without night sequences) still gives the other sets
        log.warning("%s: %s probe sets without sequences are reported as empty: %s", root, protocol.name,
                    ", ".join(empty))
    return [r for r, u in zip(rows, used, strict=True) if u]


class IncompleteStoreError(ValueError):
    """A benchmark protocol asked of a store that lacks subjects, conditions or views, or holds unreadable files."""


def unreadable_files(root: str | Path, rows: Sequence[ManifestRow],
                     subjects: Sequence[str] | None) -> list[tuple[str, str]]:
    """(path, reason) of sequence files under ``root`` that the manifest left out because they do not read.

    Only files of ``subjects`` (None = all) count. The manifest scan logs and skips such files; here
    they become part of the evaluation's record instead of disappearing.
    """
    from gaitheat.storage import SequenceFile, iter_sequence_files

    root = Path(root)
    indexed = {r.path for r in rows}
    wanted = None if subjects is None else set(subjects)
    out = []
    for file in iter_sequence_files(root):
        rel = file.relative_to(root)
        if rel.as_posix() in indexed or (wanted is not None and rel.parts[0] not in wanted):
            continue
        try:
            SequenceFile(file)
            reason = "not in the store's manifest"  # readable now: appeared after the manifest was written
        except StoreError as exc:
            reason = exc.reason
        out.append((str(file), reason))
    return out


def verified_rows(root: str | Path, rows: Sequence[ManifestRow]) -> tuple[list[ManifestRow], list[tuple[str, str]]]:
    """Rows whose files read completely (every checksum), and (path, reason) of those that do not.

    Costs one extra read of the rows' files; used only when incomplete evaluation is allowed, so that a
    corrupt file is listed with the cells left out instead of stopping the run halfway.
    """
    from gaitheat.storage import SequenceFile

    good, bad = [], []
    for row in rows:
        path = Path(root) / row.path
        try:
            SequenceFile(path).verify()
        except StoreError as exc:
            bad.append((str(path), exc.reason))
            continue
        good.append(row)
    return good, bad


def protocol_rows(cfg: ExperimentConfig, protocol: Protocol, root: str | Path
                  ) -> tuple[list[ManifestRow], str, MissingCells]:
    """Store rows the protocol evaluates, the partition used, and what the store lacks.

    The partition is ``eval.partition``, else the protocol's own (a custom protocol falls back to
    ``data.partition``, then to every subject in the store). A benchmark protocol on a store that
    lacks test subjects, conditions or views of its partition, or holds unreadable files of them,
    raises one :class:`IncompleteStoreError` listing all of it, unless ``eval.allow_incomplete``:
    then the files are verified, unreadable ones are left out too, and the returned
    :class:`~gaitheat.protocols.MissingCells` says what was left out. Unreadable files stop a custom
    protocol the same way.
    """
    from gaitheat.manifest import load_manifest

    partition = cfg.eval.partition or (cfg.data.partition if protocol.name == "custom" else "")
    subjects = evaluation_subjects(protocol, partition)
    manifest = load_manifest(root)
    wanted = None if subjects is None else set(subjects)
    tested = [r for r in manifest if wanted is None or r.subject in wanted]
    broken = unreadable_files(root, manifest, subjects)
    if cfg.eval.allow_incomplete:
        tested, corrupt = verified_rows(root, tested)
        broken += corrupt
    missing = missing_cells(protocol, subjects, [r.subject for r in tested], [r.condition for r in tested],
                            [r.view for r in tested], broken)
    if missing and not cfg.eval.allow_incomplete:
        used = partition or protocol.partition or "all subjects"
        raise IncompleteStoreError(
            f"{root}: incomplete for the {protocol.name} protocol (partition {used}): missing "
            f"{missing.describe(len(subjects or ()))}. Pass --allow-incomplete (eval.allow_incomplete: true) to "
            "evaluate what is there; the report then lists the cells left out")
    if missing:
        log.warning("%s: evaluating without %s", root, missing.describe(len(subjects or ())))
    return select_rows(tested, protocol, subjects, root), partition, missing


def eval_distance(eval_cfg: EvalConfig, spec: ModelSpec) -> Distance:
    """``eval.distance``, or the model's own (``spec.distance``) when it is ``auto``."""
    return spec.distance if eval_cfg.distance == "auto" else eval_cfg.distance


def choose_gamma(protocol: Protocol, configured: float, trained: float) -> float:
    """PGHA's γ at test: the target protocol's, unless the evaluation config changed the checkpoint's value.

    So a CASIA-B checkpoint evaluated on CCPG uses 20°, and ``--set model.gamma_deg=12`` still wins.
    """
    return configured if configured != trained else protocol.gamma_deg


def evaluate_checkpoint(
    checkpoint: str | Path,
    cfg: ExperimentConfig | None = None,
    data_root: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    onnx: str | Path | None = None,
) -> dict[str, Any] | None:
    """Evaluate a checkpoint on a store; returns the results dict (None on ranks other than 0).

    Args:
        checkpoint: a ``.pt`` written by training.
        cfg: experiment config whose ``data`` and ``eval`` sections apply (None = the checkpoint's).
        data_root: store root (overrides ``cfg.data.root``).
        device: ``cpu`` / ``cuda`` / None (CUDA when available); under torchrun one GPU per rank.
        onnx: embed with this ``gaitheat export-onnx`` file of the same checkpoint (ONNX Runtime, CPU)
            instead of PyTorch; the checkpoint still gives the config.
    """
    import torch

    from gaitheat import distributed
    from gaitheat.checkpoint import load_model
    from gaitheat.device import resolve_precision

    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    info_dist = distributed.setup(device)
    try:
        model, trained_cfg, info = load_model(checkpoint, map_location=info_dist.device)
        cfg = cfg or trained_cfg
        if cfg.eval.retain_heap and info_dist.device.type == "cpu":
            from gaitheat.heap import retain_freed_memory

            retain_freed_memory()
        raw_root = str(data_root or cfg.data.root)
        root = Path(raw_root)
        if not raw_root or not root.is_dir():
            raise ValueError(f"data root {raw_root!r} is not a folder (set --data-root or data.root)")
        protocol = resolve_protocol(cfg.eval, getattr(cfg.model, "gamma_deg", 5.0))
        # the model's evaluation-time settings for this target (GaitHeat: PGHA's γ); weights unchanged
        target = cfg.model.for_target(protocol.gamma_deg, trained_cfg.model)
        if target != trained_cfg.model:
            model, _, info = load_model(checkpoint, map_location=info_dist.device, model_config=target)
        gamma = getattr(target, "gamma_deg", None)
        spec = target.spec()
        for_inference = getattr(model, "for_inference", None)
        model = for_inference() if callable(for_inference) else model.eval()
        if onnx is not None:
            model = _onnx_model(onnx, str(info["sha256"]), gamma)
        rows, partition, missing = protocol_rows(cfg, protocol, root)
        emb = embed_store(model, root, rows, info_dist.device, cfg.data.frames_test_max,
                          batch_size_for(info_dist.device, cfg.eval.batch_size),
                          cfg.data.workers, cfg.eval.precision, info_dist.rank, info_dist.world_size, progress,
                          spec=spec, window=cfg.data.frames_test, needed_by=f"model {target.name}")
        if not info_dist.is_main:
            return None
        results = evaluate_embeddings(protocol, emb, [r.subject for r in rows], [r.condition for r in rows],
                                      [r.view for r in rows], eval_distance(cfg.eval, spec))
    finally:
        if owns_group:
            distributed.cleanup()
    results.update({
        "checkpoint": str(checkpoint), "checkpoint_sha256": info["sha256"], "step": info["step"],
        "trained_on": trained_cfg.data.dataset, "num_classes": info["num_classes"], "data_root": str(root),
        "partition": partition or protocol.partition or "all subjects", "gamma_deg": gamma,
        "num_sequences": len(rows), "num_subjects": len({r.subject for r in rows}),
        "frames_test_max": cfg.data.frames_test_max, "precision": cfg.eval.precision,
        "precision_used": "fp32" if onnx is not None else resolve_precision(cfg.eval.precision, info_dist.device),
        "backend": "torch" if onnx is None else f"onnx ({Path(onnx).name})",
        "complete": not missing, "left_out": missing.to_dict() if missing else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    results["cross_domain"] = "custom" not in (protocol.name, trained_cfg.data.dataset) and \
        trained_cfg.data.dataset != protocol.name
    return results


def _onnx_model(path: str | Path, sha256: str, gamma_deg: float | None) -> Any:
    """The ONNX export ``path`` of the checkpoint with ``sha256``, checked to embed as PyTorch would here."""
    from gaitheat.export_onnx import OnnxModel

    model = OnnxModel(path)
    if model.sha256 != sha256:
        raise ValueError(f"{path}: exported from checkpoint {model.sha256[:12]}, not from this one ({sha256[:12]})")
    if gamma_deg is not None and not math.isclose(model.gamma_deg, gamma_deg):
        raise ValueError(f"{path}: PGHA's gamma is {model.gamma_deg} deg in the graph but this protocol uses "
                         f"{gamma_deg} deg; evaluate with the PyTorch backend")
    return model


def make_train_eval(cfg: ExperimentConfig) -> Any:
    """Periodic evaluation for :func:`gaitheat.train.train` (rank 0 only): ``fn(model, step) -> headline``.

    Uses the test split of ``cfg.data.root`` under ``cfg.eval``; the embeddings are computed on the
    model's own device without sharding (the other ranks wait at the trainer's barrier).
    """
    protocol = resolve_protocol(cfg.eval, getattr(cfg.model, "gamma_deg", 5.0))
    rows, _, _ = protocol_rows(cfg, protocol, cfg.data.root)
    spec = cfg.model.spec()

    def evaluate_model(model: torch.nn.Module, step: int) -> dict[str, float]:
        from gaitheat.device import device_of

        device = device_of(model, None)
        emb = embed_store(model, cfg.data.root, rows, device, cfg.data.frames_test_max,
                          batch_size_for(device, cfg.eval.batch_size),
                          0, cfg.eval.precision, progress=False, spec=spec, window=cfg.data.frames_test)
        res = evaluate_embeddings(protocol, emb, [r.subject for r in rows], [r.condition for r in rows],
                                  [r.view for r in rows], eval_distance(cfg.eval, spec))
        return {f"{protocol.name}/{k}": float(v) for k, v in res["headline"].items()}

    return evaluate_model


__all__ = ["embed_sequences", "embed_store", "evaluate_checkpoint", "evaluate_embeddings", "gather_by_index",
           "make_train_eval", "resolve_protocol", "select_rows", "shard_indices"]
