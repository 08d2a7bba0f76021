"""The pretrained GaitHeat that ships inside the package: export, verify, load, and the default model.

Files (``gaitheat/weights/``, package data, in the wheel; <= 10 MB, no pickle)::

    NAME.safetensors   the network's state dict (safetensors: raw tensors and a JSON header, no code),
                       with the experiment config, step, classes and training subjects in its metadata
    NAME.json          sidecar: format, SHA-256 and size of the .safetensors, model config, input kind,
                       PGHA's gamma, gallery distance, embedding shape, calibrated open-set threshold
                       (if known), provenance (source checkpoint and its SHA-256, recipe)

The SHA-256 in the sidecar is checked on the bytes of the weights *before* they are deserialised
(:func:`gaitheat.checkpoint.read_weights`), so a tampered or truncated file is refused with one
error naming it; that check is what every load goes through, shipped or not. The config used to
build the network is the one inside the verified ``.safetensors``; the sidecar's copy is for people
and ``gaitheat doctor``.

When ``enrol``, ``identify`` or ``evaluate`` get no ``--checkpoint``, the CLI takes the shipped
model (:func:`default_checkpoint`) and says so once (:func:`announce_default`); without one it asks
for ``--checkpoint``. A gallery enrolled with the shipped model records the ``.safetensors``' SHA-256
as its model fingerprint, exactly as it records a checkpoint's.

Dropping in a newly trained model is one command (it overwrites the package's files)::

    gaitheat export-pretrained runs/pretrained/checkpoints/last.pt
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaitheat.assets import sha256_file
from gaitheat.atomic import atomic_open, atomic_write_text
from gaitheat.checkpoint import (
    WEIGHTS_FORMAT,
    WEIGHTS_SUFFIX,
    WeightsError,
    load_model,
    read_checkpoint,
    read_sidecar,
    weights_sidecar,
)

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_NAME = "gaitheat-synth"
MAX_SHIPPED_BYTES = 10_000_000  # the limit for the wheel's weights (10 MB, decimal)
# the fixed input of the export self-check (and of the embedding shape): frames of a (T, 17, 64, 48) clip
_CHECK_FRAMES = 16

_announced: set[str] = set()


class NoPretrainedModel(ValueError):
    """No pretrained model ships in this installation (or none was given)."""


@dataclass(frozen=True)
class PretrainedInfo:
    """An exported model as its sidecar describes it (nothing here says the weights were checked).

    Attributes:
        name: file stem (``gaitheat-synth``).
        weights: the ``.safetensors`` path.
        sidecar: the ``.json`` path.
        sha256: the SHA-256 the weights must have.
        size_bytes: the size they must have.
        meta: the whole sidecar.
    """

    name: str
    weights: Path
    sidecar: Path
    sha256: str
    size_bytes: int
    meta: dict[str, Any]

    @property
    def threshold(self) -> float | None:
        value = self.meta.get("threshold")
        return None if value is None else float(value)


def read_info(weights: str | Path) -> PretrainedInfo:
    """The sidecar of ``weights`` as :class:`PretrainedInfo` (cheap: the weights are not read).

    Raises:
        WeightsError: no sidecar, or not a gaitheat weights sidecar.
    """
    weights = Path(weights)
    meta = read_sidecar(weights)
    return PretrainedInfo(weights.stem, weights, weights_sidecar(weights), meta["sha256"], meta["size_bytes"], meta)


def verify(weights: str | Path) -> PretrainedInfo:
    """Check the weights' size and SHA-256 against the sidecar (streamed: bounded memory).

    Raises:
        WeightsError: missing, truncated or SHA-256 mismatch, naming the file.
    """
    info = read_info(weights)
    if not info.weights.is_file():
        raise WeightsError(f"{info.weights}: no such weights file (its sidecar {info.sidecar.name} is there)")
    size = info.weights.stat().st_size
    if size != info.size_bytes:
        raise WeightsError(f"{info.weights}: {size} bytes but the sidecar says {info.size_bytes}: truncated or "
                           "replaced")
    sha = sha256_file(info.weights)
    if sha != info.sha256:
        raise WeightsError(f"{info.weights}: SHA-256 mismatch: the file is {sha[:16]}... but the sidecar expects "
                           f"{info.sha256[:16]}...; damaged or tampered with")
    return info


def shipped_model(folder: str | Path | None = None) -> PretrainedInfo | None:
    """The model shipped in ``folder`` (default :data:`WEIGHTS_DIR`), or None when none ships.

    :data:`DEFAULT_NAME` wins when several sidecars are there, else the first by name. A sidecar
    that is not readable still counts as shipped (the load then fails loudly, never falls back).
    """
    folder = Path(folder) if folder is not None else WEIGHTS_DIR
    sidecars = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not sidecars:
        return None
    preferred = folder / f"{DEFAULT_NAME}.json"
    chosen = preferred if preferred in sidecars else sidecars[0]
    weights = chosen.with_suffix(WEIGHTS_SUFFIX)
    try:
        return read_info(weights)
    except WeightsError:
        return PretrainedInfo(chosen.stem, weights, chosen, "", -1, {})


def default_checkpoint() -> Path | None:
    """The shipped ``.safetensors`` (what the CLI uses without ``--checkpoint``), or None."""
    info = shipped_model()
    return info.weights if info is not None else None


def no_model_message() -> str:
    return (f"--checkpoint is required: no pretrained model ships with this gaitheat ({WEIGHTS_DIR} holds none); "
            "train one (`gaitheat train`) or drop one in with `gaitheat export-pretrained CKPT`")


def announce_default(info: PretrainedInfo) -> None:
    """Say once per process which shipped model a command uses in place of ``--checkpoint``."""
    if info.sha256 in _announced:
        return
    _announced.add(info.sha256)
    log.info("no --checkpoint given: using the shipped pretrained model %s (sha256 %s...), trained on synthetic "
             "walkers only (see MODEL_CARD.md)", info.name, info.sha256[:12])


def load_pretrained(weights: str | Path | None = None, map_location: str | torch.device = "cpu",
                    model_config: Any = None) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Load exported weights (default: the shipped model), SHA-256 checked before deserialising.

    Returns what :func:`gaitheat.checkpoint.load_model` returns for the checkpoint they came from:
    (model in eval mode, its :class:`~gaitheat.experiment.ExperimentConfig`, info); ``info["sha256"]``
    is the ``.safetensors``' SHA-256.

    Raises:
        NoPretrainedModel: ``weights`` is None and none ships.
        WeightsError: tampered, truncated, no sidecar, malformed (a ``ValueError`` naming the file).
    """
    if weights is None:
        weights = default_checkpoint()
        if weights is None:
            raise NoPretrainedModel(no_model_message())
    return load_model(weights, map_location=map_location, model_config=model_config)


def check_input(seed: int = 0) -> np.ndarray:
    """The fixed (T, 17, 64, 48) heatmap clip of the export self-check: blobs on a walking skeleton."""
    from gaitheat.storage import HEATMAP_SIZE, NUM_JOINTS

    rng = np.random.default_rng(seed)
    h, w = HEATMAP_SIZE
    ys, xs = np.mgrid[0:h, 0:w]
    centres = rng.uniform([8, 8], [h - 8, w - 8], size=(NUM_JOINTS, 2))
    out = np.empty((_CHECK_FRAMES, NUM_JOINTS, h, w), np.float32)
    for t in range(_CHECK_FRAMES):
        c = centres + 2.0 * np.sin(2 * np.pi * t / _CHECK_FRAMES + np.arange(NUM_JOINTS))[:, None]
        d2 = (ys[None] - c[:, 0, None, None]) ** 2 + (xs[None] - c[:, 1, None, None]) ** 2
        out[t] = np.exp(-d2 / 8.0)
    return out


def _embed(model: torch.nn.Module, spec: Any) -> np.ndarray | None:
    """(D, P) embedding of :func:`check_input`, or None for models that do not take heatmaps."""
    from gaitheat.evaluate import embed_sequences

    if set(spec.inputs.values()) != {"heatmaps"}:
        return None
    return embed_sequences(model, [check_input()], device="cpu", precision="fp32", spec=spec)[0]


def export_pretrained(checkpoint: str | Path, out_dir: str | Path = WEIGHTS_DIR, name: str = DEFAULT_NAME, *,
                      recipe: dict[str, Any] | None = None, threshold: float | None = None,
                      max_bytes: int | None = MAX_SHIPPED_BYTES) -> PretrainedInfo:
    """Write ``out_dir/NAME.safetensors`` and ``out_dir/NAME.json`` from a training checkpoint.

    The weights are the checkpoint's state dict, unchanged (fp32, classifier included, so the load
    is ``strict``); after writing, the files are loaded back through the verified path and must
    embed a fixed clip exactly as the checkpoint does, else nothing is left behind.

    Args:
        checkpoint: a gaitheat training ``.pt``.
        out_dir: destination (default: the package's :data:`WEIGHTS_DIR`, i.e. ship it).
        name: file stem.
        recipe: provenance for the sidecar (command, config, data size, training time ...).
        threshold: a calibrated open-set distance threshold, if known (:func:`record_calibration`).
        max_bytes: refuse weights larger than this (None: no limit); the shipped limit by default.
    Returns:
        The written model's :class:`PretrainedInfo`.
    Raises:
        ValueError: not a checkpoint, too large, or the round trip does not reproduce the checkpoint.
    """
    from safetensors.torch import save as save_safetensors

    import gaitheat
    from gaitheat.config import from_dict
    from gaitheat.experiment import ExperimentConfig
    from gaitheat.gallery.db import DISTANCE_NAMES

    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"{name!r}: give a plain file stem as the model name")
    payload = read_checkpoint(checkpoint)
    cfg = from_dict(ExperimentConfig, payload["config"])
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in payload["model"].items()}
    config_json = json.dumps(payload["config"], sort_keys=True, default=list)
    metadata = {"format": WEIGHTS_FORMAT, "config": config_json, "step": str(int(payload["step"])),
                "num_classes": str(int(payload.get("num_classes", 0))),
                "subjects": json.dumps(list(payload.get("subjects", []))), "source_sha256": payload["sha256"]}
    data = save_safetensors(state, metadata)
    if max_bytes is not None and len(data) > max_bytes:
        raise ValueError(f"{checkpoint}: exported weights would be {len(data) / 1e6:.2f} MB, over the "
                         f"{max_bytes / 1e6:.0f} MB limit of a shipped model; train a narrower model")
    sha = hashlib.sha256(data).hexdigest()
    spec = cfg.model.spec()
    reference, _, _ = load_model(checkpoint)
    expected = _embed(reference, spec)
    out = Path(out_dir)
    weights = out / f"{name}{WEIGHTS_SUFFIX}"
    meta = {
        "format": WEIGHTS_FORMAT, "name": name, "weights": weights.name, "sha256": sha, "size_bytes": len(data),
        "model": json.loads(json.dumps(payload["config"].get("model", {}), default=list)),
        "input": sorted(set(spec.inputs.values())), "gamma_deg": getattr(cfg.model, "gamma_deg", None),
        "distance": DISTANCE_NAMES[spec.distance],
        "embedding_shape": None if expected is None else list(expected.shape),
        "parameters": int(sum(v.numel() for k, v in state.items() if v.is_floating_point())),
        "num_classes": int(payload.get("num_classes", 0)), "train_subjects": len(payload.get("subjects", [])),
        "step": int(payload["step"]), "threshold": threshold, "calibration": None,
        "trained_on": {"dataset": cfg.data.dataset, "root": cfg.data.root, "partition": cfg.data.partition},
        "source": {"checkpoint": Path(checkpoint).name, "sha256": payload["sha256"]},
        "recipe": recipe or {},
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gaitheat_version": gaitheat.__version__, "torch_version": torch.__version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    side = weights_sidecar(weights)
    with atomic_open(weights, "wb") as handle:
        handle.write(data)
    atomic_write_text(side, json.dumps(meta, indent=1) + "\n")
    try:  # the shipped file must behave exactly like the checkpoint, through the path every user takes
        model, _, info = load_pretrained(weights)
        got = _embed(model, spec)
        if info["sha256"] != sha or (expected is not None and (got is None or not np.array_equal(got, expected))):
            raise ValueError(f"{weights}: the exported weights do not reproduce {checkpoint}'s embeddings")
    except ValueError:
        weights.unlink(missing_ok=True)
        side.unlink(missing_ok=True)
        raise
    log.info("exported %s -> %s (%.2f MB, sha256 %s...)", checkpoint, weights, len(data) / 1e6, sha[:12])
    return read_info(weights)


def record_calibration(weights: str | Path, threshold: float, calibration: dict[str, Any]) -> PretrainedInfo:
    """Store a calibrated open-set threshold (and how it was calibrated) in the sidecar of ``weights``.

    The weights and their SHA-256 do not change; the sidecar is rewritten atomically.
    """
    info = verify(weights)
    meta = dict(info.meta) | {"threshold": float(threshold), "calibration": calibration}
    atomic_write_text(info.sidecar, json.dumps(meta, indent=1) + "\n")
    return read_info(weights)


def describe(info: PretrainedInfo | None) -> str:
    """One line for ``gaitheat doctor``: name, size, SHA-256 prefix and whether the weights verify."""
    if info is None:
        return f"none ships in {WEIGHTS_DIR} (enrol / identify / evaluate need --checkpoint)"
    verified = verify(info.weights)  # WeightsError: the caller reports it as a failure
    return (f"{verified.name} ({verified.size_bytes / 1e6:.2f} MB, sha256 {verified.sha256[:16]}... verified) "
            f"at {verified.weights}")


def evaluation_config(weights: str | Path, overrides: list[str]) -> Any:
    """The exported model's own experiment config with ``--set``-style overrides (data root, protocol ...).

    Evaluating exported weights must build the network from *their* config (widths, parts ...), not
    from whatever experiment points at the store.
    """
    from gaitheat.config import apply_overrides, from_dict
    from gaitheat.experiment import ExperimentConfig

    data = read_checkpoint(weights)["config"]
    return from_dict(ExperimentConfig, apply_overrides(dict(data), overrides))
