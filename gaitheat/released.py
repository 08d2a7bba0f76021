"""Import released FastPoseGait / OpenGait GaitHeat checkpoints into gaitheat checkpoints.

The released trainer saves ``{'model': state_dict, 'optimizer': ..., 'scheduler': ...,
'iteration': ...}`` with the names of FastPoseGait's ``GaitHeat`` module (spec §3):

==============================================  =============================================
released name                                   gaitheat name
==============================================  =============================================
``Backbone1.forward_block.conv1.conv.*``        ``stages.0.conv.*``
``Backbone1.forward_block.bn1.*``               ``stages.0.bn.*``
``Backbone1.forward_block.layer1.0.*``          ``stages.0.block.*``
``Backbone{i}.forward_block.layer{i}.0.*``      ``stages.{i-1}.*`` (i = 2..4)
``Backbone{i}_fusion.forward_block.layer{i}.0.*``  ``fusion_stages.{i-2}.*`` (i = 2..4)
``FCs_{branch}.fc_bin``                         ``heads.{branch}.fc.weight``
``BNNecks_{branch}.fc_bin``                     ``heads.{branch}.neck.classifier``
``BNNecks_{branch}.bn1d.*``                     ``heads.{branch}.neck.bn.*``
==============================================  =============================================

(``branch`` is ``part``, ``global`` or ``fusion``; a uniform ``module.`` prefix from a DDP wrapper
is dropped.) The widths, strips, embedding size and classes are read from the tensor shapes, so any
width imports; the strides and the part groups cannot be seen in a ``state_dict`` and default to the
release's: strides (1, 2, 2, 1) and part streams = input channels 0 and 1 (``RELEASED_GROUPS``;
spec §3.2). The imported model uses the release's alignment (two passes, ``edge`` pixel convention)
unless told otherwise.

Anything that does not fit (a shape, a missing or an unknown key) is refused with one
``ValueError`` that lists every problem. Files load with ``torch.load(weights_only=True)``: a pickle
that holds anything but tensors and plain data is refused, never executed; zip checkpoints are
memory-mapped, so a file's size, not what it claims, bounds what is read.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from gaitheat.experiment import ExperimentConfig, ModelConfig

RELEASED_GROUPS: tuple[tuple[int, ...], ...] = ((0,), (1,))  # the release's channels 0 and 1 (spec §3.2)
RELEASED_STRIDES = (1, 2, 2, 1)
BRANCHES = ("part", "global", "fusion")
_LIST_LIMIT = 12  # names listed per kind of problem in an error message

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Backbone1\.forward_block\.conv1\.conv\.(.+)$"), r"stages.0.conv.\1"),
    (re.compile(r"^Backbone1\.forward_block\.bn1\.(.+)$"), r"stages.0.bn.\1"),
    (re.compile(r"^Backbone1\.forward_block\.layer1\.0\.(.+)$"), r"stages.0.block.\1"),
    (re.compile(r"^Backbone([234])\.forward_block\.layer\1\.0\.(.+)$"), "stages.{i1}.{rest}"),
    (re.compile(r"^Backbone([234])_fusion\.forward_block\.layer\1\.0\.(.+)$"), "fusion_stages.{i2}.{rest}"),
    (re.compile(r"^FCs_(part|global|fusion)\.fc_bin$"), r"heads.\1.fc.weight"),
    (re.compile(r"^BNNecks_(part|global|fusion)\.fc_bin$"), r"heads.\1.neck.classifier"),
    (re.compile(r"^BNNecks_(part|global|fusion)\.bn1d\.(.+)$"), r"heads.\1.neck.bn.\2"),
)


@dataclass(frozen=True)
class ReleasedArchitecture:
    """What a released ``state_dict``'s shapes say about its network."""

    widths: tuple[int, int, int, int]
    parts: int
    embed_dim: int
    num_classes: int


def gaitheat_name(released: str) -> str | None:
    """The gaitheat parameter name of a released one, or None when it is not a GaitHeat name."""
    for pattern, target in _RULES:
        m = pattern.match(released)
        if m is None:
            continue
        if "{" in target:
            i, rest = int(m.group(1)), m.group(2)
            return target.format(i1=i - 1, i2=i - 2, rest=rest)
        return m.expand(target)
    return None


def released_name(ours: str) -> str:
    """The released name of a gaitheat parameter (the inverse of :func:`gaitheat_name`)."""
    parts = ours.split(".")
    rest = ".".join(parts[2:])
    if parts[0] == "stages" and parts[1] == "0":
        inner = ".".join(parts[3:])
        prefix = {"conv": "conv1.conv", "bn": "bn1", "block": "layer1.0"}[parts[2]]
        return f"Backbone1.forward_block.{prefix}.{inner}"
    if parts[0] == "stages":
        i = int(parts[1]) + 1
        return f"Backbone{i}.forward_block.layer{i}.0.{rest}"
    if parts[0] == "fusion_stages":
        i = int(parts[1]) + 2
        return f"Backbone{i}_fusion.forward_block.layer{i}.0.{rest}"
    branch = parts[1]
    if rest == "fc.weight":
        return f"FCs_{branch}.fc_bin"
    if rest == "neck.classifier":
        return f"BNNecks_{branch}.fc_bin"
    return f"BNNecks_{branch}.bn1d.{'.'.join(parts[4:])}"


def read_released_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], int]:
    """The model ``state_dict`` of a released checkpoint file, and its training iteration.

    Accepts ``{'model': state_dict, 'iteration': n, ...}`` (the released trainer's format) or a bare
    ``state_dict`` (iteration 0).

    Raises:
        ValueError: naming the file, when it cannot be read, is not a safe ``torch.save`` file, or
            holds no ``state_dict``.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    try:
        mmap = zipfile.is_zipfile(path)  # the zip format maps; the legacy format cannot
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, OSError,
            KeyError, IndexError, MemoryError, zipfile.BadZipFile) as exc:
        if isinstance(exc, pickle.UnpicklingError):
            # weights_only refuses any global outside tensors and plain data: a hostile pickle lands here
            why = next((ln.strip() for ln in str(exc).splitlines() if "global" in ln.lower()), "")
            why = why.split(" was not an allowed")[0].removeprefix("WeightsUnpickler error: ")
            raise ValueError(f"{path}: refused: it holds objects other than tensors and plain data, which are "
                             f"never unpickled ({why[:200] or 'weights_only load failed'})") from exc
        text = " ".join(str(exc).split())
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: "
                         f"{text[:200] or 'empty or truncated file'})") from exc
    state = payload.get("model", payload) if isinstance(payload, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        keys = sorted(map(str, payload))[:8] if isinstance(payload, Mapping) else type(payload).__name__
        raise ValueError(f"{path}: holds no model state_dict (expected {{'model': state_dict, ...}} or a "
                         f"state_dict; found {keys})")
    iteration = payload.get("iteration", 0) if state is not payload else 0
    iteration = iteration if isinstance(iteration, int) and iteration >= 0 else 0
    names = list(state)
    if all(n.startswith("module.") for n in names):  # saved from a DDP wrapper
        return {n[len("module."):]: state[n] for n in names}, iteration
    return dict(state), iteration


def _stage_weight(i: int) -> str:
    if i == 1:
        return "Backbone1.forward_block.conv1.conv.weight"
    return f"Backbone{i}.forward_block.layer{i}.0.conv1.weight"


def infer_architecture(state: Mapping[str, torch.Tensor], source: str = "state_dict") -> ReleasedArchitecture:
    """Widths, strips, embedding size and classes from the tensor shapes of a released ``state_dict``.

    Raises:
        ValueError: naming ``source``, when a tensor the shapes are read from is missing or malformed.
    """
    needed = [_stage_weight(i) for i in (1, 2, 3, 4)] + ["FCs_fusion.fc_bin", "BNNecks_fusion.fc_bin"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"{source}: not a GaitHeat state_dict: missing {', '.join(missing)} "
                         f"(found e.g. {', '.join(sorted(state)[:4])})")
    convs = [state[k] for k in needed[:4]]
    fc, classifier = state["FCs_fusion.fc_bin"], state["BNNecks_fusion.fc_bin"]
    bad = [f"{k} {tuple(t.shape)}" for k, t, dim in zip(needed, [*convs, fc, classifier], [4, 4, 4, 4, 3, 3],
                                                       strict=True) if t.dim() != dim]
    if bad:
        raise ValueError(f"{source}: unexpected tensor ranks: {', '.join(bad)}")
    return ReleasedArchitecture(
        widths=(int(convs[0].shape[0]), int(convs[1].shape[0]), int(convs[2].shape[0]), int(convs[3].shape[0])),
        parts=int(fc.shape[0]),
        embed_dim=int(fc.shape[2]),
        num_classes=int(classifier.shape[2]),
    )


def model_config(arch: ReleasedArchitecture, base: object = None, *,
                 groups: Sequence[Sequence[int]] = RELEASED_GROUPS,
                 strides: Sequence[int] = RELEASED_STRIDES) -> ModelConfig:
    """A gaitheat model config for a released network: its shapes, the release's alignment.

    Args:
        arch: from :func:`infer_architecture`.
        base: a GaitHeat model config whose other fields (gamma, skip_prob, neck_to, loss settings ...)
            are kept; None or another model's config = GaitHeat's defaults.
        groups: joint indices of the part streams (the release: channels 0 and 1).
        strides: ResNet9 stage strides (not visible in a state_dict).
    """
    from gaitheat.experiment import ModelConfig

    start = base if isinstance(base, ModelConfig) else ModelConfig()  # a released GaitHeat is a GaitHeat
    return dataclasses.replace(
        start, name="gaitheat", widths=arch.widths,
        strides=(int(strides[0]), int(strides[1]), int(strides[2]), int(strides[3])),
        parts=arch.parts, embed_dim=arch.embed_dim, groups=tuple(tuple(int(j) for j in g) for g in groups),
        fusion=True,
    )


def _listed(kind: str, names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    more = f" ... and {len(names) - _LIST_LIMIT} more" if len(names) > _LIST_LIMIT else ""
    return f"{kind} ({len(names)}): {shown}{more}"


def convert_state_dict(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                       source: str = "state_dict") -> dict[str, torch.Tensor]:
    """Rename a released ``state_dict`` onto a gaitheat model's and check it fits exactly.

    Args:
        state: released names -> tensors.
        target: the gaitheat model's ``state_dict()`` (names and shapes to fit).
        source: what to name in errors (the file).
    Returns:
        gaitheat names -> tensors (a BatchNorm ``num_batches_tracked`` absent from the release is
        taken from ``target``).
    Raises:
        ValueError: one message listing every unknown key, missing key and shape mismatch.
    """
    converted: dict[str, torch.Tensor] = {}
    unknown, mismatched, seen = [], [], set()
    for name, tensor in state.items():
        ours = gaitheat_name(name)
        if ours is None or ours not in target:
            unknown.append(name)
            continue
        seen.add(ours)
        if tuple(tensor.shape) != tuple(target[ours].shape):
            mismatched.append(f"{name} {tuple(tensor.shape)} vs {tuple(target[ours].shape)}")
        else:
            converted[ours] = tensor
    missing = []
    for name, tensor in target.items():
        if name in seen:
            continue
        if name.endswith("num_batches_tracked"):
            converted[name] = tensor.clone()
        else:
            missing.append(released_name(name))
    problems = [_listed(kind, names) for kind, names in
                (("shape mismatches (released vs gaitheat)", mismatched),
                 ("unknown keys", sorted(unknown)),
                 ("missing keys", sorted(missing))) if names]
    if problems:
        raise ValueError(f"{source}: does not fit a GaitHeat network: " + "; ".join(problems))
    return converted


def imported_config(arch: ReleasedArchitecture, base: ExperimentConfig | None = None, *,
                    groups: Sequence[Sequence[int]] = RELEASED_GROUPS,
                    strides: Sequence[int] = RELEASED_STRIDES, align_mode: str = "two_pass",
                    align_pixels: str = "edge") -> ExperimentConfig:
    """The experiment config stored with an imported checkpoint: ``base`` with the network's model section."""
    from gaitheat.experiment import ExperimentConfig, ModelConfig

    base = base or ExperimentConfig()
    base_model = base.model if isinstance(base.model, ModelConfig) else None  # another model's: GaitHeat's defaults
    model = dataclasses.replace(model_config(arch, base_model, groups=groups, strides=strides),
                                align_mode=align_mode, align_pixels=align_pixels)  # type: ignore[arg-type]
    data = dataclasses.replace(base.data, num_classes=arch.num_classes)
    return dataclasses.replace(base, model=model, data=data)


def import_checkpoint(src: str | Path, out: str | Path, base: ExperimentConfig | None = None, *,
                      groups: Sequence[Sequence[int]] = RELEASED_GROUPS,
                      strides: Sequence[int] = RELEASED_STRIDES, align_mode: str = "two_pass",
                      align_pixels: str = "edge") -> dict[str, Any]:
    """Convert a released checkpoint ``src`` into a gaitheat checkpoint ``out`` (written atomically).

    The result loads with :func:`gaitheat.checkpoint.load_model` and ``gaitheat evaluate``.

    Args:
        src: the released ``.pt`` (``{'model': state_dict, ...}`` or a bare state_dict).
        out: the gaitheat checkpoint to write.
        base: experiment config to store (its data/eval sections; the model section is replaced).
        groups, strides: see :func:`model_config`.
        align_mode, align_pixels: PGHA of the imported model (default: the release's).
    Returns:
        a summary: ``architecture`` (dict), ``tensors`` (count), ``iteration`` (the release's, or 0).
    Raises:
        ValueError: naming ``src``, for anything that does not fit (every problem listed at once).
    """
    import torch

    from gaitheat.atomic import atomic_open
    from gaitheat.config import to_dict
    from gaitheat.models import build_model

    state, iteration = read_released_state_dict(src)
    arch = infer_architecture(state, str(src))
    cfg = imported_config(arch, base, groups=groups, strides=strides, align_mode=align_mode,
                          align_pixels=align_pixels)
    try:
        model = build_model(cfg.model, arch.num_classes)
    except ValueError as exc:
        raise ValueError(f"{src}: cannot build the network its shapes describe ({exc})") from exc
    converted = convert_state_dict(state, model.state_dict(), str(src))
    model.load_state_dict(converted)  # exact names and shapes were checked above
    payload = {
        "step": iteration,
        "model": model.state_dict(),
        "config": to_dict(cfg),
        "num_classes": arch.num_classes,
        "subjects": [],
        "imported_from": {"path": str(Path(src).resolve()), "format": "fastposegait", "iteration": iteration},
    }
    with atomic_open(out, "wb") as handle:
        torch.save(payload, handle)
    return {"architecture": dataclasses.asdict(arch), "tensors": len(converted), "iteration": iteration}

