"""The experiment config: what ``gaitheat train`` and ``gaitheat evaluate`` read from YAML.

One frozen dataclass per stage (data, model, train, eval), composed into :class:`ExperimentConfig`.
Shipped experiment files live in ``gaitheat/configs/`` (``casia-b``, ``ccpg``, ``sustech1k``,
``cpu-small``) and load with ``load_config(ExperimentConfig, "casia-b", ["train.lr=0.05"])``.
Unknown keys are errors (:mod:`gaitheat.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Precision = Literal["auto", "fp32", "fp16", "bf16"]  # auto: gaitheat.device.resolve_precision


@dataclass(frozen=True)
class DataConfig:
    """Where the heatmap store is and how sequences are sampled from it."""

    root: str = ""  # store root (ROOT/<subject>/<condition>/<view>/<name>.ghs + manifest.csv)
    dataset: str = "casia-b"  # casia-b | ccpg | sustech1k | custom: picks the shipped partition
    partition: str = ""  # partition JSON (TRAIN_SET/TEST_SET); "" = the shipped one for `dataset`
    frames_train: int = 30  # random frames per training sequence (with replacement only when shorter)
    frames_test_max: int = 720  # test: all frames in order, first 720 at most
    batch_p: int = 8  # identities per batch
    batch_k: int = 8  # sequences per identity
    workers: int = 2  # DataLoader worker processes
    # classes of the classifier heads; 0 = the train subjects found on disk. When set, a store with a
    # different number of train subjects is an error (the official configs pin 74 / 100 / 250).
    num_classes: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """GaitHeat network (paper §3; spec §3). ``widths`` scales the whole network."""

    name: str = "gaitheat"
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    strides: tuple[int, int, int, int] = (1, 2, 2, 1)
    parts: int = 16  # horizontal strips (HPM bins)
    embed_dim: int = 256
    # joint groups of the K part maps (COCO-17); default: top {0-10}, bottom {11-16}
    groups: tuple[tuple[int, ...], ...] = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), (11, 12, 13, 14, 15, 16))
    align: bool = True  # pose-guided heatmap alignment
    align_mode: Literal["composite", "two_pass"] = "composite"
    # PGHA pixel convention: centre (exact) | edge (the release's x -> 2x/W - 1; see models/align.py)
    align_pixels: Literal["centre", "edge"] = "centre"
    gamma_deg: float = 5.0  # |tilt| <= gamma: no alignment at eval, random skip (p=skip_prob) in training
    skip_prob: float = 0.8
    neck_to: tuple[float, float] = (24.0, 16.0)  # (x, y) target of the neck in heatmap pixels
    fusion: bool = True  # multi-stage fusion branch


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (spec §4.2): SGD, MultiStepLR, iteration-based."""

    steps: int = 60000
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (20000, 40000, 50000)
    lr_gamma: float = 0.1
    triplet_margin: float = 0.2
    ce_scale: float = 16.0
    label_smoothing: float = 0.1
    # loss weights per branch, in the order part, global, fusion
    triplet_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ce_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
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
    distance: Literal["euc", "cos"] = "euc"
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


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


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
