"""What a recognition model declares about itself: its inputs, frame sampling, losses and distance.

Training, evaluation, the gallery, ``compare`` and the exporters read a model only through this
spec and the model's keyword interface, so adding a model is one file in ``gaitheat/models/``,
one YAML and one line in :data:`gaitheat.models.MODELS`. This module is dataclasses only (no torch).

Final signatures (what other modules code against)::

    InputKind = Literal["heatmaps", "keypoints", "regen_heatmaps", "skeleton_maps", "silhouettes"]

    @dataclass(frozen=True)
    class FramePolicy:
        train: Literal["random", "window"] = "random"  # unordered draw | consecutive window, tiled when short
        test: Literal["all", "window"] = "all"         # first data.frames_test_max in order | centred data.frames_test
        views: int = 1                                 # augmented copies per training pick (SupCon: 2)

    @dataclass(frozen=True)
    class LossTerm:
        output: str                                    # a key of ModelOutput.features, e.g. "fusion/embeddings"
        kind: Literal["triplet", "ce", "supcon"]
        weight: float = 1.0
        margin: float = 0.2                            # triplet
        mining: Literal["all", "hard"] = "all"         # triplet: batch-all | batch-hard
        scale: float = 16.0                            # ce: logit scale
        smoothing: float = 0.1                         # ce: label smoothing
        temperature: float = 0.01                      # supcon
        similarity: Literal["cos", "l2"] = "cos"       # supcon: cosine, or minus the L2 distance of unit vectors
        name: str = ""                                 # log name; "" = "<kind>/<output prefix>"

    Augment = Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]]

    @dataclass(frozen=True)
    class ModelSpec:
        inputs: Mapping[str, InputKind]                # forward/embed keyword -> input kind
        frames: FramePolicy
        losses: tuple[LossTerm, ...]
        distance: Literal["euc", "cos"]                # what eval.distance "auto" and galleries use
        augment: Augment | None = None                 # in the loader worker, rng = default_rng([seed, view])
        streaming: Literal["set_max", "window"] = "window"   # live: running max, or re-embed a window

    @dataclass(frozen=True)
    class ModelConfig:                                 # base of every model's config (the YAML `model:` section)
        name: str = ""
        def spec(self) -> ModelSpec
        def for_target(self, target_gamma_deg: float, trained: ModelConfig) -> ModelConfig  # default: trained
        @classmethod
        def tiny(cls) -> ModelConfig                   # small CPU-test instance (tests/test_seam.py); default cls()

    # a model class (gaitheat/models/<name>.py), registered in gaitheat.models.MODELS = {name: "module:Class"}
    class GaitModel(Protocol):
        Config: ClassVar[type[ModelConfig]]
        config: ModelConfig
        @classmethod
        def from_config(cls, cfg: ModelConfig, num_classes: int) -> nn.Module
        def forward(self, *, lengths: Tensor | None = None, **inputs: Tensor) -> ModelOutput
        def embed(self, *, lengths: Tensor | None = None, **inputs: Tensor) -> Tensor   # (B, D, P), eval mode
        def for_inference(self) -> nn.Module           # what evaluation/gallery run: a copy (BN folded, Winograd)

    # ModelOutput: any object with `.features: dict[str, Tensor]` and `.embedding: Tensor (B, D, P)`
    # (gaitheat.models.ModelOutput is a plain dataclass of the two; GaitHeat's GaitOutput has both).

    # gaitheat.models:  MODELS, model_class(name), config_class(name), build_model(cfg, num_classes)
    # gaitheat.datasets.sequences:  Batch(inputs, lengths, labels, indices), collate(items) -> Batch,
    #     GaitDataset(root, rows, subjects, frames=30 | None, max_frames=720, open_files=64, *, inputs, policy,
    #                 window=60, augment=None, needed_by="")   # item: (inputs dict, label, row) or a list of views
    # gaitheat.inputs:  INPUTS[kind] -> InputLoader(kind, sections, frame_shape, load(source, positions, test, where)),
    #     load_inputs(source, inputs, positions, test=True, where="", needed_by="") -> dict[str, ndarray],
    #     check_sections(held, inputs, where, needed_by)   # source: SequenceFile | HeatmapSequence
    # gaitheat.losses:  compute_losses(terms, features, labels, gathered=None, gathered_labels=None),
    #     triplet_loss, cross_entropy_loss, supcon_loss(features (B, D[, P]), labels, temperature)
    # gaitheat.evaluate:  embed_batches(model, Iterable[Batch], device, precision),
    #     embed_sequences(model, Sequence[HeatmapSequence | ndarray], device, max_frames, batch_size, precision,
    #                     spec=None, window=60), embed_store(..., spec=None, window=60, needed_by="")
    # gaitheat.train:  loss_terms(output, labels, losses, world_size),
    #     train_step(state, batch, losses, amp, world_size), build_optimizer(model, train_cfg),
    #     build_scheduler(optimizer, train_cfg), build_train_dataset(data_cfg, model_cfg)

Every :class:`LossTerm` names one model output; pairwise kinds (triplet, supcon) see the embeddings
of the global batch under DDP, ``ce`` the local logits. Single-vector models return ``(B, D, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import numpy as np

InputKind = Literal["heatmaps", "keypoints", "regen_heatmaps", "skeleton_maps", "silhouettes"]
INPUT_KINDS: tuple[str, ...] = get_args(InputKind)
LossKind = Literal["triplet", "ce", "supcon"]
Distance = Literal["euc", "cos"]

# (inputs: keyword -> (T, *frame_shape) array, rng) -> inputs; runs in the DataLoader worker
Augment = Callable[[dict[str, "np.ndarray"], "np.random.Generator"], dict[str, "np.ndarray"]]


@dataclass(frozen=True)
class FramePolicy:
    """Which frames a model sees; the counts (``data.frames_train``, ``frames_test``, ``frames_test_max``)
    stay in the data config.

    Attributes:
        train: ``random``: an unordered draw without replacement (with it only when short);
            ``window``: a consecutive window at a random start, the sequence tiled when shorter.
        test: ``all``: every frame in order, the first ``data.frames_test_max``; ``window``: the centred
            ``data.frames_test`` consecutive frames (tiled when shorter), so scores are repeatable.
        views: augmented copies of each training pick (2 for SupCon's two views); each view is a
            separate batch row with the same label.
    """

    train: Literal["random", "window"] = "random"
    test: Literal["all", "window"] = "all"
    views: int = 1

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError(f"FramePolicy.views must be >= 1, got {self.views}")


@dataclass(frozen=True)
class LossTerm:
    """One weighted loss on one named model output (see the module docstring for the fields)."""

    output: str
    kind: LossKind
    weight: float = 1.0
    margin: float = 0.2
    mining: Literal["all", "hard"] = "all"
    scale: float = 16.0
    smoothing: float = 0.1
    temperature: float = 0.01
    # supcon: "cos" (dot products of unit vectors, Khosla et al.) or "l2" (minus their L2 distance:
    # pytorch-metric-learning's SupConLoss with LpDistance, as released for GaitGraph2)
    similarity: Literal["cos", "l2"] = "cos"
    name: str = ""

    @property
    def log_name(self) -> str:
        """``name``, or ``<kind>/<first part of output>`` (``triplet/fusion`` for ``fusion/embeddings``)."""
        return self.name or f"{self.kind}/{self.output.split('/')[0]}"

    @property
    def pairwise(self) -> bool:
        """Whether the term compares samples with each other (then it sees the global batch under DDP)."""
        return self.kind in ("triplet", "supcon")


@dataclass(frozen=True)
class ModelSpec:
    """What the data side, the trainer and the evaluator need to know about a model (section 1 of
    ``models_and_inputs.md``); derived from the model's config, so it always matches a checkpoint."""

    inputs: Mapping[str, InputKind]
    frames: FramePolicy
    losses: tuple[LossTerm, ...]
    distance: Distance
    augment: Augment | None = None
    streaming: Literal["set_max", "window"] = "window"

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.inputs.items() if v not in INPUT_KINDS}
        if not self.inputs or bad:
            raise ValueError(f"ModelSpec.inputs must map keywords to {INPUT_KINDS}, got {dict(self.inputs)}")
        if not self.losses:
            raise ValueError("ModelSpec.losses is empty: a model needs at least one loss term")

    @property
    def needs_pairs(self) -> bool:
        """Whether some loss compares samples (so a batch must hold positives: K * views >= 2)."""
        return any(term.pairwise for term in self.losses)


@dataclass(frozen=True)
class ModelConfig:
    """Base of every model's config dataclass (the ``model:`` YAML section, picked by ``name``).

    A subclass lives in its model's file as ``Model.Config``, sets ``name``'s default to its registry
    name, and implements :meth:`spec`.
    """

    name: str = ""

    def spec(self) -> ModelSpec:
        """The model's :class:`ModelSpec` (inputs, frame policy, losses, distance)."""
        raise NotImplementedError(f"{type(self).__name__} does not define spec()")

    def for_target(self, target_gamma_deg: float, trained: ModelConfig) -> ModelConfig:
        """The config to evaluate with on a target protocol whose upright threshold is ``target_gamma_deg``.

        ``self`` is the evaluation's config, ``trained`` the checkpoint's; the result builds the network the
        checkpoint's weights load into. Default: ``trained`` unchanged (evaluation never changes a
        model); GaitHeat takes the target's PGHA γ unless the evaluation config changed it.
        """
        return trained

    @classmethod
    def tiny(cls) -> ModelConfig:
        """A small instance for CPU tests (the registry test builds every model from it); default: ``cls()``."""
        return cls()
