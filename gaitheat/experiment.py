"""The experiment config: what ``gaitheat train`` and ``gaitheat evaluate`` read from YAML.

One frozen dataclass per stage (data, model, train, eval), composed into :class:`ExperimentConfig`.
Shipped experiment files live in ``gaitheat/configs/`` (``casia-b``, ``ccpg``, ``sustech1k``,
``cpu-small``) and load with ``load_config(ExperimentConfig, "casia-b", ["train.lr=0.05"])``.
Unknown keys are errors (:mod:`gaitheat.config`).

The ``model`` section is polymorphic: its ``name`` picks the model's config dataclass through the
registry (:func:`gaitheat.models.config_class`), so ``model: {name: gaitgraph, ...}`` loads
GaitGraph's config and rejects GaitHeat's keys. :class:`GaitHeatConfig` (GaitHeat's, also on raw or
regenerated heatmaps) lives in :mod:`gaitheat.models.gaitheat` with its model; ``ModelConfig``
here stays its alias for older code.

Loss settings belong to the model (they are part of what a model is trained as): configs and
checkpoints that still carry ``train.{triplet_margin, ce_scale, label_smoothing, triplet_weights,
ce_weights}`` are migrated by :func:`migrate_config` when loaded.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gaitheat.models.gaitheat import GaitHeatConfig
from gaitheat.models.spec import ModelConfig as BaseModelConfig

Precision = Literal["auto", "fp32", "fp16", "bf16"]  # auto: gaitheat.device.resolve_precision
log = logging.getLogger(__name__)
# loss settings that moved from `train` to `model` (checkpoint format 2)
MOVED_TO_MODEL = ("triplet_margin", "ce_scale", "label_smoothing", "triplet_weights", "ce_weights")


@dataclass(frozen=True)
class DataConfig:
    """Where the heatmap store is and how sequences are sampled from it."""

    root: str = ""  # store root (ROOT/<subject>/<condition>/<view>/<name>.ghs + manifest.csv)
    dataset: str = "casia-b"  # casia-b | ccpg | sustech1k | custom: picks the shipped partition
    partition: str = ""  # partition JSON (TRAIN_SET/TEST_SET); "" = the shipped one for `dataset`
    frames_train: int = 30  # random frames per training sequence (with replacement only when shorter)
    frames_test_max: int = 720  # test: all frames in order, first 720 at most
    frames_test: int = 60  # test frames of a model whose frame policy tests a centred window
    batch_p: int = 8  # identities per batch
    batch_k: int = 8  # sequences per identity
    workers: int = 2  # DataLoader worker processes
    # classes of the classifier heads; 0 = the train subjects found on disk. When set, a store with a
    # different number of train subjects is an error (the official configs pin 74 / 100 / 250).
    num_classes: int = 0


ModelConfig = GaitHeatConfig  # the name older code and tests use


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, iteration-based: GaitHeat's is SGD + MultiStepLR (spec §4.2)."""

    steps: int = 60000
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1  # the peak LR under onecycle
    momentum: float = 0.9  # sgd only
    weight_decay: float = 5e-4
    scheduler: Literal["multistep", "onecycle"] = "multistep"
    milestones: tuple[int, ...] = (20000, 40000, 50000)  # multistep
    lr_gamma: float = 0.1  # multistep
    warmup_fraction: float = 0.3  # onecycle: share of the steps spent rising to lr
    precision: Precision = "auto"  # fp16 AMP on CUDA, bf16 on CPUs with native bf16, else fp32
    seed: int = 0
    out: str = "runs/experiment"  # checkpoints, TensorBoard, reports
    checkpoint_every: int = 10000
    keep_last: int = 3
    log_every: int = 50
    eval_every: int = 0  # 0: no periodic evaluation
    sync_bn: bool = True  # on CUDA under DDP only
    # torch.compile (Inductor) the training forward/backward: fused BatchNorm/ReLU/adds, planned buffers,
    # channels-last convs; costs 20-50 s once per run, and needs a C++ compiler on CPU (else eager, warned)
    compile: bool = True
    # CPU: keep freed activations in the heap instead of re-faulting them in every step (gaitheat.heap)
    retain_heap: bool = True


@dataclass(frozen=True)
class EvalConfig:
    """How a checkpoint is evaluated (see ``gaitheat.protocols``)."""

    protocol: str = "casia-b"  # casia-b | ccpg | sustech1k | custom
    distance: Literal["auto", "euc", "cos"] = "auto"  # auto: the model's own (ModelSpec.distance)
    batch_size: int = 4  # sequences per forward pass on CUDA (zero-padded + lengths); CPU: one at a time
    # test subjects: partition name or JSON; "" = the protocol's shipped one (custom: data.partition, else all)
    partition: str = ""
    precision: Precision = "auto"  # autocast at test as train's auto (fp16 on CUDA only); embeddings are fp32
    # custom protocol only: gallery conditions and named probe sets of conditions (shell patterns)
    gallery: tuple[str, ...] = ()
    probes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    exclude_identical_view: bool = True  # custom protocol only; benchmarks fix their own rule
    # a benchmark on a store without some test subjects, conditions or views of its partition (or with
    # unreadable files) is an error listing them; true evaluates what is there and reports what was left out
    allow_incomplete: bool = False
    retain_heap: bool = True  # CPU: reuse freed activations across sequences (gaitheat.heap)


def model_config_class(data: Mapping[str, Any]) -> type[BaseModelConfig]:
    """The config dataclass a ``model:`` mapping loads into, by its ``name`` (GaitHeat by default).

    Raises:
        KeyError: an unknown model name (the message names the nearest registered one).
    """
    from gaitheat.models import config_class

    return config_class(str(data.get("name", "gaitheat")))


def migrate_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """An experiment config (plain data) in today's layout: loss settings moved from ``train`` to ``model``.

    Older configs and checkpoints (format 1) kept ``train.{triplet_margin, ce_scale, label_smoothing,
    triplet_weights, ce_weights}``. Returns a new dict; the input is left as it was.

    Raises:
        ValueError: a setting is given in both sections.
    """
    out = copy.deepcopy(dict(data))
    train, model = out.get("train"), out.get("model")
    if not isinstance(train, dict):
        return out
    moved = [k for k in MOVED_TO_MODEL if k in train]
    if not moved:
        return out
    model = dict(model) if isinstance(model, Mapping) else {}
    both = [k for k in moved if k in model]
    if both:
        raise ValueError(f"{', '.join(both)} given in both train and model; they belong to model")
    for key in moved:
        model[key] = train.pop(key)
    out["model"] = model
    return out


def _migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    moved = [k for k in MOVED_TO_MODEL if isinstance(data.get("train"), Mapping) and k in data["train"]]
    if moved:
        log.warning("config: train.%s moved to model.%s (loss settings belong to the model)",
                    "/".join(moved), "/".join(moved))
    return migrate_config(data)


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    # polymorphic: `config_class` picks the dataclass from the mapping's `name` (gaitheat.config.from_dict)
    model: BaseModelConfig = field(default_factory=GaitHeatConfig, metadata={"config_class": model_config_class})
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # gaitheat.config.from_dict runs this on the plain data first (older layouts load unchanged)
    __migrate__ = staticmethod(_migrate)

def with_absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with its relative file paths made absolute: what a checkpoint records.

    A checkpoint's config is reused wherever the checkpoint goes (``gaitheat evaluate`` run from
    another folder), so ``data.root``, ``train.out`` and partition files are resolved against the
    folder the run started in. Shipped partition names (``casia-b``) and empty values stay as they are.
    """
    import dataclasses
    from pathlib import Path

    from gaitheat.datasets.partition import SHIPPED

    def path(value: str) -> str:
        return str(Path(value).expanduser().resolve()) if value else value

    def partition(value: str) -> str:
        return value if not value or value.lower() in SHIPPED else path(value)

    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, root=path(cfg.data.root), partition=partition(cfg.data.partition)),
        train=dataclasses.replace(cfg.train, out=path(cfg.train.out)),
        eval=dataclasses.replace(cfg.eval, partition=partition(cfg.eval.partition)),
    )
