"""The GaitHeat network (paper §3; spec §3): PGHA, part/global streams, shared ResNet9, fusion, heads.

Per frame, the 17 aligned joint heatmaps become S = K + 1 single-channel streams: K part maps (max over
each joint group) and the global map (max over all joints). The streams go through one
parameter-shared ResNet9, batched along the sample axis. After each stage i, Max Response (MR, the
element-wise max over all streams) feeds the multi-stage fusion branch: f_1 = MR_1 and
f_i = MR_i + F_i(f_{i-1}), where F_2..F_4 are private copies of stages 2-4. Three branches leave
stage 4: *part* (max over the K part streams), *global* (the global stream) and *fusion* (f_4). Each
branch is pooled over time (set max), cut into P strips (HPM), mapped 512 -> 256 per strip
(SeparateFCs) and passed through its own BNNeck with a cosine classifier.

Training uses all three branches (triplet on the pre-BNNeck embeddings, CE on the logits); retrieval
uses the fusion branch, unit-normalised per strip (:meth:`GaitHeat.embed`): after its BNNeck as the
official model does (``retrieval: bnneck``), or before it (``retrieval: embedding``, the feature the
triplet loss shapes, as OpenGait's baselines retrieve with).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitheat.models.align import AlignMode, PixelConvention, align_heatmaps
from gaitheat.models.layers import BNNeck, SeparateFCs, horizontal_pool, max_over, set_max
from gaitheat.models.resnet9 import make_stage, make_stages
from gaitheat.models.spec import FramePolicy, LossTerm, ModelConfig, ModelSpec

BRANCHES = ("part", "global", "fusion")  # also the order of triplet_weights / ce_weights
TOP_BOTTOM = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), (11, 12, 13, 14, 15, 16))


@dataclass(frozen=True)
class GaitHeatConfig(ModelConfig):
    """GaitHeat network (paper §3; spec §3) and its losses. ``widths`` scales the whole network.

    ``input: regen_heatmaps`` trains the same network on heatmaps drawn back from keypoints (the
    paper's Table 4 comparison); the checkpoint then names its true input.
    """

    name: str = "gaitheat"
    input: Literal["heatmaps", "regen_heatmaps"] = "heatmaps"
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
    # retrieval feature, both unit L2 norm per strip: the fusion branch after its BNNeck (official) or
    # before it ("embedding"). Changes no parameter and no training step, only what embed() returns.
    retrieval: Literal["bnneck", "embedding"] = "bnneck"
    # losses (spec §4.1): batch-all triplet on pre-BNNeck embeddings + cosine CE, per branch
    triplet_margin: float = 0.2
    ce_scale: float = 16.0
    label_smoothing: float = 0.1
    # loss weights per branch, in the order part, global, fusion
    triplet_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ce_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def spec(self) -> ModelSpec:
        """Heatmaps (raw or regenerated), 30 unordered frames / all frames, six terms, Euclidean."""
        losses: list[LossTerm] = []
        for branch, w_tri, w_ce in zip(BRANCHES, self.triplet_weights, self.ce_weights, strict=True):
            losses.append(LossTerm(f"{branch}/embeddings", "triplet", w_tri, margin=self.triplet_margin))
            losses.append(LossTerm(f"{branch}/logits", "ce", w_ce, scale=self.ce_scale,
                                   smoothing=self.label_smoothing))
        return ModelSpec(inputs={"heatmaps": self.input}, frames=FramePolicy(), losses=tuple(losses),
                         distance="euc", streaming="set_max")

    @classmethod
    def tiny(cls) -> GaitHeatConfig:
        """Widths 4-32 and 8-d embeddings: a full GaitHeat (PGHA, fusion, three heads) in a few ms on a CPU."""
        return cls(widths=(4, 8, 16, 32), embed_dim=8)

    def for_target(self, target_gamma_deg: float, trained: ModelConfig) -> ModelConfig:
        """PGHA's γ at test: the target protocol's, unless this (evaluation) config changed the trained value.

        So a CASIA-B checkpoint evaluated on CCPG uses 20°, and ``--set model.gamma_deg=12`` still wins
        (spec §7.2, inferred). Everything else is the trained model's.
        """
        if not isinstance(trained, GaitHeatConfig):
            return trained
        gamma = self.gamma_deg if self.gamma_deg != trained.gamma_deg else target_gamma_deg
        return replace(trained, gamma_deg=gamma)


@dataclass(frozen=True)
class GaitOutput:
    """What :meth:`GaitHeat.forward` returns.

    Attributes:
        embeddings: per branch ("part", "global", "fusion"), (B, D, P) pre-BNNeck embeddings (triplet).
        logits: per branch, (B, K, P) cosine logits in [-1, 1] (cross-entropy, after scaling).
        embedding: (B, D, P) retrieval embedding (:meth:`GaitHeat.retrieve`), unit L2 norm per strip.
    """

    embeddings: dict[str, Tensor]
    logits: dict[str, Tensor]
    embedding: Tensor

    @property
    def features(self) -> dict[str, Tensor]:
        """The named outputs loss terms route by: ``<branch>/embeddings`` and ``<branch>/logits``."""
        out = {f"{name}/embeddings": emb for name, emb in self.embeddings.items()}
        out.update({f"{name}/logits": logit for name, logit in self.logits.items()})
        return out


class Head(nn.Module):
    """HPM + SeparateFCs + BNNeck for one branch."""

    def __init__(self, parts: int, in_channels: int, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.parts = parts
        self.fc = SeparateFCs(parts, in_channels, embed_dim)
        self.neck = BNNeck(parts, embed_dim, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """(B, C, h, w) set-pooled map -> (B, D, P) pre-BNNeck embedding."""
        return self.fc(horizontal_pool(x, self.parts))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, C, h, w) -> embedding (B, D, P), BNNeck features (B, D, P), logits (B, K, P)."""
        emb = self.embed(x)
        feats, logits = self.neck(emb)
        return emb, feats, logits


def init_parameters(module: nn.Module) -> None:
    """The official initialisation (spec §3.6): Xavier-uniform convs, unit/zero norm layers.

    The 3-D SeparateFCs and classifier tensors are initialised in their constructors.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class GaitHeat(nn.Module):
    """GaitHeat with configurable width, joint groups and alignment.

    Args:
        num_classes: training identities K (the classifier size).
        widths: ResNet9 stage widths; the last one is the SeparateFCs input.
        strides: ResNet9 stage strides.
        parts: HPM strips P (the stage-4 map height must be divisible by it).
        embed_dim: embedding dimension D.
        groups: joint indices of each part map (K groups).
        num_joints: J of the input heatmaps.
        align: apply PGHA inside the forward.
        align_mode: "composite" (one resampling) or "two_pass" (the official two).
        align_pixels: PGHA's pixel convention, "centre" (exact) or "edge" (the release's; see
            :mod:`gaitheat.models.align`).
        gamma_deg: upright threshold of PGHA, in degrees.
        skip_prob: training-time probability of leaving an upright frame unaligned.
        neck_to: (x, y) target of the neck, in heatmap pixels.
        fusion: build the multi-stage fusion branch; without it the fusion branch is MR of stage 4.
        retrieval: the retrieval feature of the fusion branch: "bnneck" (after its BNNeck, official) or
            "embedding" (before it); both unit L2 norm per strip.
    """

    Config: ClassVar[type[ModelConfig]] = GaitHeatConfig

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (1, 2, 2, 1),
        parts: int = 16,
        embed_dim: int = 256,
        groups: Sequence[Sequence[int]] = TOP_BOTTOM,
        num_joints: int = 17,
        align: bool = True,
        align_mode: AlignMode = "composite",
        align_pixels: PixelConvention = "centre",
        gamma_deg: float = 5.0,
        skip_prob: float = 0.8,
        neck_to: tuple[float, float] = (24.0, 16.0),
        fusion: bool = True,
        retrieval: Literal["bnneck", "embedding"] = "bnneck",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not groups or any(not g for g in groups):
            raise ValueError(f"joint groups must be non-empty, got {groups!r}")
        bad = sorted({j for g in groups for j in g if not 0 <= j < num_joints})
        if bad:
            raise ValueError(f"joint groups name joints {bad} outside 0..{num_joints - 1}")
        if retrieval not in ("bnneck", "embedding"):
            raise ValueError(f"retrieval must be 'bnneck' or 'embedding', got {retrieval!r}")
        self.retrieval = retrieval
        self.groups = tuple(tuple(int(j) for j in g) for g in groups)
        self.num_joints = num_joints
        self.num_classes = num_classes
        self.align, self.align_mode, self.align_pixels = align, align_mode, align_pixels
        self.gamma_deg, self.skip_prob, self.neck_to = gamma_deg, skip_prob, neck_to
        self.stages = make_stages(widths, strides)
        self.fusion_stages = nn.ModuleList(make_stage(i, widths, strides) for i in (1, 2, 3)) if fusion else None
        self.heads = nn.ModuleDict({b: Head(parts, widths[-1], embed_dim, num_classes) for b in BRANCHES})
        init_parameters(self)
        self.config: GaitHeatConfig | None = None  # set by from_config

    @classmethod
    def from_config(cls, cfg: ModelConfig, num_classes: int) -> GaitHeat:
        """The network of a :class:`GaitHeatConfig` (the registry's builder)."""
        if not isinstance(cfg, GaitHeatConfig):
            raise TypeError(f"GaitHeat needs a GaitHeatConfig, got {type(cfg).__name__}")
        model = cls(num_classes, widths=cfg.widths, strides=cfg.strides, parts=cfg.parts, embed_dim=cfg.embed_dim,
                    groups=cfg.groups, align=cfg.align, align_mode=cfg.align_mode, align_pixels=cfg.align_pixels,
                    gamma_deg=cfg.gamma_deg,
                    skip_prob=cfg.skip_prob, neck_to=cfg.neck_to, fusion=cfg.fusion, retrieval=cfg.retrieval)
        model.config = cfg
        return model

    def for_inference(self) -> nn.Module:
        """BatchNorm folded into the convs, channels-last, Winograd 3x3 convs at 128+ channels on CPU
        (:mod:`gaitheat.models.inference`): the same embeddings up to float rounding, faster."""
        from gaitheat.models.inference import optimise_for_inference

        return optimise_for_inference(self)

    @property
    def num_streams(self) -> int:
        """S = K part maps + 1 global map."""
        return len(self.groups) + 1

    def _pack(self, heatmaps: Tensor, lengths: Tensor | None, keypoints: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """(B, T, J, H, W) [+ (B, T, J, C)] -> the valid frames (N, J, H, W) [+ (N, J, C)], sequence by sequence."""
        if heatmaps.dim() != 5 or heatmaps.shape[2] != self.num_joints:
            raise ValueError(f"expected heatmaps (B, T, {self.num_joints}, H, W), got {tuple(heatmaps.shape)}")
        b, t = heatmaps.shape[:2]
        if keypoints is not None and keypoints.shape[:3] != heatmaps.shape[:3]:
            raise ValueError(f"keypoints {tuple(keypoints.shape)} do not match heatmaps {tuple(heatmaps.shape)}")
        if lengths is None:
            return heatmaps.flatten(0, 1), None if keypoints is None else keypoints.flatten(0, 1)
        if lengths.shape != (b,) or bool(((lengths < 1) | (lengths > t)).any()):
            raise ValueError(f"lengths must be (B,) = ({b},) with values in 1..{t}, got {lengths.tolist()}")
        # packing drops the padding before the CNN: less work, and padded frames never reach BatchNorm
        valid = torch.arange(t, device=heatmaps.device) < lengths.to(heatmaps.device)[:, None]
        return heatmaps[valid], None if keypoints is None else keypoints[valid]

    def streams(self, frames: Tensor) -> Tensor:
        """(N, J, H, W) aligned heatmaps -> (S * N, 1, H, W) streams, stream-major (part maps, then global)."""
        maps = [frames[:, list(g)].amax(1) for g in self.groups] + [frames.amax(1)]
        return torch.stack(maps).flatten(0, 1).unsqueeze(1)

    def trunk(self, streams: Tensor, branches: Sequence[str] = BRANCHES) -> dict[str, Tensor]:
        """Shared ResNet9 over all streams + Max Response + fusion branch.

        Args:
            streams: (S * N, 1, H, W) from :meth:`streams`.
            branches: which branch maps to return.
        Returns:
            per branch, (N, C, h, w) frame-level maps.
        """
        s = self.num_streams
        x, fused = streams, None
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if self.fusion_stages is not None:
                response = max_over(x.unflatten(0, (s, -1)), 0)
                fused = response if fused is None else response + self.fusion_stages[i - 1](fused)
        per_stream = x.unflatten(0, (s, -1))
        out = {}
        if "part" in branches:
            out["part"] = max_over(per_stream[:-1], 0)
        if "global" in branches:
            out["global"] = per_stream[-1]
        if "fusion" in branches:
            out["fusion"] = max_over(per_stream, 0) if fused is None else fused
        return out

    def forward_features(
        self,
        heatmaps: Tensor,
        lengths: Tensor | None = None,
        *,
        keypoints: Tensor | None = None,
        generator: torch.Generator | None = None,
        branches: Sequence[str] = BRANCHES,
    ) -> dict[str, Tensor]:
        """Alignment, streams, trunk and set pooling.

        Args:
            heatmaps: (B, T, J, H, W) normalised per sequence (zero-padded after ``lengths``).
            lengths: (B,) valid frames per sequence, or None when all T are valid.
            keypoints: (B, T, J, C >= 2) x, y in heatmap pixels for PGHA; None = heatmap argmax.
            generator: RNG of PGHA's random skip (training only); the global torch RNG when None.
            branches: which branches to compute.
        Returns:
            per branch, (B, C, h, w) set-pooled maps.
        """
        frames, kps = self._pack(heatmaps, lengths, keypoints)
        maps = self.frame_maps(frames, kps, generator, branches)
        return {name: set_max(m, lengths, heatmaps.shape[0]) for name, m in maps.items()}

    def frame_maps(
        self,
        frames: Tensor,
        keypoints: Tensor | None = None,
        generator: torch.Generator | None = None,
        branches: Sequence[str] = BRANCHES,
    ) -> dict[str, Tensor]:
        """PGHA, streams and trunk on packed frames: (N, J, H, W) [+ (N, J, C)] -> per branch (N, C, h, w)."""
        if self.align:
            frames = align_heatmaps(
                frames,
                keypoints,
                neck_to=self.neck_to,
                gamma_deg=self.gamma_deg,
                skip_prob=self.skip_prob,
                training=self.training,
                mode=self.align_mode,
                generator=generator,
                pixels=self.align_pixels,
            )
        return self.trunk(self.streams(frames), branches)

    def forward_head(self, features: dict[str, Tensor]) -> GaitOutput:
        """Per-branch heads over :meth:`forward_features`' output (all three branches)."""
        embeddings, logits, retrieval = {}, {}, None
        for name in BRANCHES:
            emb, feats, logit = self.heads[name](features[name])
            embeddings[name], logits[name] = emb, logit
            if name == "fusion":
                retrieval = feats if self.retrieval == "bnneck" else F.normalize(emb, dim=1)
        assert retrieval is not None
        return GaitOutput(embeddings=embeddings, logits=logits, embedding=retrieval)

    def forward(
        self,
        heatmaps: Tensor,
        lengths: Tensor | None = None,
        *,
        keypoints: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> GaitOutput:
        """(B, T, J, H, W) heatmaps (+ optional (B,) lengths) -> :class:`GaitOutput`.

        See :meth:`forward_features` for the arguments. PGHA's random skip happens only in training mode.
        """
        return self.forward_head(self.forward_features(heatmaps, lengths, keypoints=keypoints, generator=generator))

    def embed(
        self,
        heatmaps: Tensor,
        lengths: Tensor | None = None,
        *,
        keypoints: Tensor | None = None,
        chunk_frames: int = 128,
    ) -> Tensor:
        """Retrieval embedding only: (B, T, J, H, W) -> (B, D, P), unit L2 norm per strip.

        Skips the part and global heads and their pooling. In eval mode the frames go through the
        network ``chunk_frames`` at a time, folded into a running per-sequence max (set pooling is a
        max, so the result is the same), which bounds memory: at full width about 7 MB per frame is in
        flight, so a 720-frame sequence takes about 5 GB in one pass and under 1 GB in chunks of 128.
        In training mode (BatchNorm batch statistics) nothing is chunked. Deterministic in eval mode;
        call it under ``torch.inference_mode()``.

        Args:
            heatmaps: (B, T, J, H, W) normalised per sequence (zero-padded after ``lengths``).
            lengths: (B,) valid frames per sequence, or None when all T are valid.
            keypoints: (B, T, J, C >= 2) x, y in heatmap pixels for PGHA; None = heatmap argmax.
            chunk_frames: frames per pass through the network in eval mode.
        """
        frames, kps = self._pack(heatmaps, lengths, keypoints)
        b, t = heatmaps.shape[:2]
        if self.training or frames.shape[0] <= chunk_frames:
            whole = set_max(self.frame_maps(frames, kps, branches=("fusion",))["fusion"], lengths, b)
            return self.retrieve(whole)
        counts = [t] * b if lengths is None else lengths.tolist()
        sequence = torch.repeat_interleave(torch.arange(b), torch.tensor(counts))
        pooled: list[Tensor | None] = [None] * b  # running max per sequence
        for start in range(0, frames.shape[0], chunk_frames):
            part = slice(start, start + chunk_frames)
            maps = self.frame_maps(frames[part], None if kps is None else kps[part], branches=("fusion",))["fusion"]
            in_chunk = torch.bincount(sequence[part], minlength=b).tolist()
            for i, segment in enumerate(maps.split(in_chunk)):
                if in_chunk[i]:
                    best = segment.amax(0)
                    previous = pooled[i]
                    pooled[i] = best if previous is None else torch.maximum(previous, best)
        if any(p is None for p in pooled):
            raise AssertionError("every sequence has at least one frame (checked in _pack)")
        return self.retrieve(torch.stack(pooled))  # type: ignore[arg-type]

    def retrieve(self, pooled: Tensor) -> Tensor:
        """(B, C, h, w) set-pooled fusion map -> (B, D, P) retrieval embedding, unit L2 norm per strip.

        The fusion head's SeparateFCs, then its BNNeck (``retrieval="bnneck"``) or not ("embedding").
        """
        head = self.heads["fusion"]
        assert isinstance(head, Head)
        emb = head.embed(pooled)
        return head.neck.features(emb) if self.retrieval == "bnneck" else F.normalize(emb, dim=1)
