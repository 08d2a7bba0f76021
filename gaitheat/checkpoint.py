"""Training checkpoints: everything needed to continue a run bit for bit, written atomically.

A checkpoint ``OUT/checkpoints/step-0001000.pt`` is a ``torch.save`` dict with:

* ``step``: optimiser steps taken; the next global batch number (:mod:`gaitheat.sampling`);
* ``model``, ``optimizer``, ``scheduler``, ``scaler``: ``state_dict()``s (the model unwrapped from DDP);
* ``rng``: one entry per rank (python ``random``, numpy, torch CPU and CUDA generator states);
* ``sampler``: seed, P and K of the identity sampler;
* ``config``: the resolved :class:`~gaitheat.experiment.ExperimentConfig` as plain data;
* ``num_classes`` and ``subjects``: the sorted train subjects the class indices refer to;
* ``format``: 2. Format 1 (no ``format`` key) kept the loss settings in ``config.train``;
  :func:`read_checkpoint` moves them to ``config.model`` (:func:`migrate_config`), so every
  checkpoint reads in today's layout and rebuilds its model through the registry.

``last.pt`` is a hard link to (or, where links fail, a copy of) the newest step file; only the
newest ``keep_last`` step files are kept. Every file is written to a temporary sibling and renamed
(:mod:`gaitheat.atomic`), so a kill at any moment leaves the previous checkpoint intact. Files load
with ``weights_only=True``: a checkpoint holds only tensors and plain data, never pickled code.

Exported weights (``NAME.safetensors`` + its sidecar ``NAME.json``, written by
:func:`gaitheat.pretrained.export_pretrained`) load wherever a checkpoint does: :func:`read_checkpoint`
reads them through :func:`read_weights`, which checks the file's size and SHA-256 against the sidecar
*before* anything is deserialised, and the safetensors header's size before it is parsed, so a
tampered, truncated or oversized file is refused with one error naming it. The model's SHA-256 (the
gallery's fingerprint) is then that of the ``.safetensors`` file, as it is the ``.pt``'s for a checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaitheat.atomic import atomic_open
from gaitheat.experiment import migrate_config

CHECKPOINT_FORMAT = 2
CHECKPOINT_DIR = "checkpoints"
LAST_NAME = "last.pt"
_STEP_FILE = re.compile(r"^step-(\d{7,})\.pt$")

WEIGHTS_SUFFIX = ".safetensors"
WEIGHTS_FORMAT = "gaitheat-weights-1"  # the sidecar's and the safetensors metadata's "format"
MAX_WEIGHTS_BYTES = 1 << 30  # a full-width GaitHeat is far below; bounds what one file can make us read
MAX_HEADER_BYTES = 1 << 24  # safetensors' own limit is 100 MB; a state dict's tensor table is a few KB
MAX_SIDECAR_BYTES = 1 << 22
# safetensors dtype -> bytes per element (what the header's offsets must agree with)
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass
class TrainState:
    """The mutable state of a run, exactly what a checkpoint stores (besides config and RNG)."""

    step: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


def checkpoint_dir(out: str | Path) -> Path:
    """``OUT/checkpoints``."""
    return Path(out) / CHECKPOINT_DIR


def step_path(out: str | Path, step: int) -> Path:
    """``OUT/checkpoints/step-XXXXXXX.pt``."""
    return checkpoint_dir(out) / f"step-{step:07d}.pt"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP (or ``torch.compile``) wrapper."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as tensors and plain data (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(out: str | Path, state: TrainState, config: dict[str, Any], rng: list[dict[str, Any]],
                    extra: dict[str, Any], keep_last: int = 3) -> Path:
    """Write ``step-XXXXXXX.pt`` and ``last.pt`` atomically, then prune old step files.

    Args:
        out: run folder (``cfg.train.out``).
        state: the run state at the end of step ``state.step``.
        config: the resolved experiment config as plain data (``gaitheat.config.to_dict``).
        rng: per-rank RNG states (:func:`capture_rng`), in rank order.
        extra: more plain data to store (``num_classes``, ``subjects``, ``sampler`` ...).
        keep_last: step files to keep (at least 1).
    Returns:
        The step file's path.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "step": state.step,
        "model": unwrap(state.model).state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict(),
        "rng": rng,
        "config": config,
        **extra,
    }
    path = step_path(out, state.step)
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    _link_last(path)
    prune_checkpoints(out, keep_last)
    return path


def _link_last(path: Path) -> None:
    last = path.parent / LAST_NAME
    tmp = path.parent / f".{LAST_NAME}.tmp-link"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(path, tmp)
    except OSError:
        # Filesystems without hard links: fall back to a full (still atomic) copy.
        with open(path, "rb") as src, atomic_open(last, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return
    os.replace(tmp, last)


def list_checkpoints(out: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the step files under ``OUT/checkpoints``, oldest first."""
    folder = checkpoint_dir(out)
    found = []
    for p in folder.glob("step-*.pt") if folder.is_dir() else []:
        m = _STEP_FILE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def prune_checkpoints(out: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step files (``last.pt`` stays valid: it is a link or copy)."""
    for _, path in list_checkpoints(out)[: -max(keep_last, 1)]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def find_resume(out: str | Path) -> Path | None:
    """The newest step file under ``OUT/checkpoints``, else ``last.pt``, else None.

    The step file comes first because a kill between writing it and relinking ``last.pt`` leaves
    ``last.pt`` one checkpoint behind (both are complete files: every write is atomic).
    """
    found = list_checkpoints(out)
    if found:
        return found[-1][1]
    last = checkpoint_dir(out) / LAST_NAME
    return last if last.is_file() else None


def is_weights_path(path: str | Path) -> bool:
    """An exported ``.safetensors`` weights file (rather than a training ``.pt``)."""
    return Path(path).suffix.lower() == WEIGHTS_SUFFIX


def weights_sidecar(path: str | Path) -> Path:
    """``NAME.json`` next to ``NAME.safetensors``: config, provenance and the expected SHA-256."""
    return Path(path).with_suffix(".json")


class WeightsError(ValueError):
    """Exported weights that are missing, damaged, tampered with or malformed; the message names the file."""


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of the weights file ``path`` (read and checked for shape, the weights not touched).

    Raises:
        WeightsError: missing, too large, not JSON, or without the fields a load needs.
    """
    side = weights_sidecar(path)
    try:
        if side.stat().st_size > MAX_SIDECAR_BYTES:
            raise WeightsError(f"{side}: {side.stat().st_size} bytes, more than a weights sidecar can be "
                               f"({MAX_SIDECAR_BYTES})")
        meta = json.loads(side.read_text())
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: its sidecar {side.name} is missing (it holds the SHA-256 the weights are "
                           "checked against); export weights with `gaitheat export-pretrained`") from exc
    except OSError as exc:
        raise WeightsError(f"{side}: cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise WeightsError(f"{side}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{side}: not a gaitheat weights sidecar (format {WEIGHTS_FORMAT!r} expected)")
    if not isinstance(meta.get("sha256"), str) or not isinstance(meta.get("size_bytes"), int):
        raise WeightsError(f"{side}: no sha256 / size_bytes for the weights")
    return meta


def check_safetensors_header(data: bytes | memoryview, path: str | Path) -> dict[str, Any]:
    """The parsed header of safetensors bytes, after checking its size and every tensor's byte range.

    Layout: 8-byte little-endian header length N, N bytes of JSON, then the tensor bytes. N is checked
    against the file's length and :data:`MAX_HEADER_BYTES` before the JSON is read, so a header that
    claims gigabytes costs nothing.

    Raises:
        WeightsError: truncated, oversized header, malformed JSON or tensor ranges outside the data.
    """
    if len(data) < 8:
        raise WeightsError(f"{path}: {len(data)} bytes, too short for a safetensors file (truncated?)")
    size = int.from_bytes(bytes(data[:8]), "little")
    if size < 2 or size > min(MAX_HEADER_BYTES, len(data) - 8):
        raise WeightsError(f"{path}: safetensors header claims {size} bytes but the file has {len(data) - 8} "
                           f"after the length field (limit {MAX_HEADER_BYTES}); truncated or not safetensors")
    try:
        header = json.loads(bytes(data[8:8 + size]))
    except ValueError as exc:
        raise WeightsError(f"{path}: safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: safetensors header is not a JSON object")
    body = len(data) - 8 - size
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = (int(v) for v in entry["data_offsets"])
            count = int(np.prod([int(d) for d in entry["shape"]], dtype=np.int64))
            width = _DTYPE_BYTES[entry["dtype"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{path}: tensor {name!r} has a malformed header entry") from exc
        if not 0 <= start <= end <= body or end - start != count * width:
            raise WeightsError(f"{path}: tensor {name!r} lies outside the file's {body} data bytes (truncated?)")
    return header


def read_weights(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """An exported ``.safetensors`` as a checkpoint dict (``step``, ``model``, ``config``, ``sha256`` ...).

    Order matters: size and SHA-256 against the sidecar first, on the bytes read once (so what is
    checked is what is loaded), then the header, and only then are tensors built.

    Raises:
        WeightsError: (a ``ValueError``) naming the file: missing, no sidecar, wrong size, SHA-256
            mismatch (tampered or damaged), malformed header or metadata.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    path = Path(path)
    meta = read_sidecar(path)
    try:
        size = path.stat().st_size
        if size > MAX_WEIGHTS_BYTES:
            raise WeightsError(f"{path}: {size} bytes, more than gaitheat loads as weights ({MAX_WEIGHTS_BYTES})")
        if size != meta["size_bytes"]:
            raise WeightsError(f"{path}: {size} bytes but {weights_sidecar(path).name} says {meta['size_bytes']}: "
                               "the weights file is truncated or was replaced; refusing to load it")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: no such weights file") from exc
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read weights ({exc.strerror})") from exc
    sha = hashlib.sha256(data).hexdigest()
    if sha != meta["sha256"]:
        raise WeightsError(f"{path}: SHA-256 mismatch: the file is {sha[:16]}... but {weights_sidecar(path).name} "
                           f"expects {meta['sha256'][:16]}...; the weights are damaged or were tampered with, "
                           "refusing to load them")
    header = check_safetensors_header(data, path)
    stored = header.get("__metadata__") or {}
    try:
        config = json.loads(stored["config"])
        info = {"step": int(stored["step"]), "num_classes": int(stored["num_classes"]),
                "subjects": list(json.loads(stored.get("subjects", "[]")))}
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: safetensors metadata lacks the gaitheat config/step/num_classes") from exc
    if stored.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: weights format {stored.get('format')!r}, this gaitheat reads {WEIGHTS_FORMAT!r}")
    try:
        state = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: not readable safetensors ({exc})") from exc
    try:
        config = migrate_config(config)
    except ValueError as exc:
        raise WeightsError(f"{path}: stored config does not migrate ({exc})") from exc
    device = torch.device(map_location)
    return {"format": CHECKPOINT_FORMAT, "model": {k: v.to(device) for k, v in state.items()}, "config": config,
            "sha256": sha, **info}


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict (``weights_only``); raises ``ValueError`` naming the file if it is not one.

    An exported ``.safetensors`` (:func:`is_weights_path`) is read by :func:`read_weights` instead,
    into the same dict (without optimiser, scheduler or RNG state: it cannot resume training).
    """
    if is_weights_path(path):
        return read_weights(path, map_location)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read checkpoint ({exc.strerror})") from exc
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, OSError,
            KeyError, IndexError) as exc:
        # torch raises several types for a truncated zip or foreign content (a text file: KeyError from
        # its weights-only unpickler); the caller needs the file, on one line
        reason = (str(exc).strip().splitlines() or ["empty or truncated file"])[0]
        raise ValueError(f"{path}: not a readable gaitheat checkpoint ({type(exc).__name__}: {reason})") from exc
    missing = {"step", "model", "config"} - set(payload if isinstance(payload, dict) else {})
    if missing:
        raise ValueError(f"{path}: not a gaitheat checkpoint (missing {sorted(missing)})")
    payload["sha256"] = hashlib.sha256(data).hexdigest()
    if int(payload.get("format", 1)) > CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {payload['format']}, this gaitheat reads up to "
                         f"{CHECKPOINT_FORMAT}")
    if isinstance(payload["config"], dict):
        try:
            payload["config"] = migrate_config(payload["config"])
        except ValueError as exc:
            raise ValueError(f"{path}: stored config does not migrate ({exc})") from exc
    return payload


def load_checkpoint(path: str | Path, state: TrainState, map_location: str | torch.device = "cpu",
                    rank: int = 0) -> dict[str, Any]:
    """Restore ``state`` (model, optimiser, scheduler, scaler, step) and this rank's RNG from ``path``.

    RNG streams are restored only when the checkpoint holds one for ``rank`` (i.e. the world size did
    not grow); otherwise they keep their fresh seeding and the resume is not bit-exact.

    Returns:
        The checkpoint dict (for its config, subjects and sampler entries).
    """
    payload = read_checkpoint(path, map_location)
    restore_state(payload, state, rank)
    return payload


def restore_state(payload: dict[str, Any], state: TrainState, rank: int = 0) -> None:
    """Put a loaded checkpoint dict (:func:`read_checkpoint`) into ``state`` and this rank's RNG."""
    if "optimizer" not in payload:
        raise ValueError("exported weights (.safetensors) hold no optimiser state and cannot resume training; "
                         "resume from the training checkpoint (.pt) they were exported from")
    unwrap(state.model).load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    state.scaler.load_state_dict(payload["scaler"])
    state.step = int(payload["step"])
    rng = payload.get("rng") or []
    if rank < len(rng):
        restore_rng(rng[rank])


def load_model(checkpoint_path: str | Path, map_location: str | torch.device = "cpu",
               model_config: Any = None) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """The trained network of a checkpoint, ready for inference.

    Args:
        checkpoint_path: a ``.pt`` written by training (any format), or exported weights
            (``.safetensors`` with its sidecar, SHA-256 checked before loading).
        map_location: where the model goes.
        model_config: build with this model config instead of the stored one (same weights), e.g.
            the stored one adjusted for a target protocol (:meth:`ModelConfig.for_target`).
    Returns:
        (model in eval mode on ``map_location``, its :class:`~gaitheat.experiment.ExperimentConfig`,
        info with ``num_classes``, ``step``, ``sha256`` of the checkpoint file, ``subjects`` and ``path``).
    Raises:
        ValueError: the file is missing, not a checkpoint, or its weights do not fit its config.
    """
    from gaitheat.config import ConfigError, from_dict
    from gaitheat.experiment import ExperimentConfig
    from gaitheat.models import build_model

    payload = read_checkpoint(checkpoint_path, map_location)
    try:
        cfg = from_dict(ExperimentConfig, payload["config"])
    except ConfigError as exc:
        raise ValueError(f"{checkpoint_path}: stored config does not load ({exc})") from exc
    num_classes = int(payload.get("num_classes", 0))
    try:
        model = build_model(cfg.model if model_config is None else model_config, num_classes)
    except KeyError as exc:
        raise ValueError(f"{checkpoint_path}: {exc.args[0] if exc.args else exc}") from exc
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise ValueError(f"{checkpoint_path}: weights do not match the stored model config ({exc})") from exc
    model.to(map_location).eval()
    info = {"num_classes": num_classes, "step": int(payload["step"]), "sha256": payload["sha256"],
            "subjects": list(payload.get("subjects", [])), "path": str(checkpoint_path)}
    return model, cfg, info
