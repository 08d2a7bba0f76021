"""SkeletonGait (Fan et al., AAAI 2024; OpenGait ``configs/skeletongait``): DeepGaitV2 on skeleton maps.

Input: per frame a 2-channel skeleton map (joint Gaussians, limb lines; :func:`gaitheat.heatmaps.
render_skeleton_maps`), 64 x 64, cut to its central 44 columns inside :meth:`SkeletonGait.forward`
(OpenGait's ``BaseSilCuttingTransform``). The network is DeepGaitV2 in its pseudo-3D mode: a 3x3
stem and one 2-D BasicBlock per frame (width 64), then three P3D stages (widths 128-256-512, spatial
strides 2-2-1), each a per-frame 3x3 conv whose output also passes through a 3x1x1 temporal conv
(added back), a second per-frame 3x3 conv and a residual. Then set pooling (max over frames),
16 horizontal strips, SeparateFCs 512 -> 256 and a BNNeck with cosine classifier. Loss: batch-all
triplet (margin 0.2) + cross-entropy (scale 16, label smoothing 0.1). Retrieval: the BNNeck features
(``use_emb2: true``), Euclidean distance.

There is no released CASIA-B config. Parameter count at ``configs/skeletongait/skeletongait_CCPG.yaml``
(100 classes): **8,446,464** (backbone 5,931,520 + SeparateFCs 2,097,152 + BNNeck 8,192 + classifier
409,600); SUSTech1K (``skeletongait_SUSTech1K.yaml``, 250 classes): 9,060,864; with CASIA-B's 74
classes (our CASIA-B variant): 8,339,968.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from gaitheat import transforms
from gaitheat.models import ModelOutput
from gaitheat.models.gaitbase import opengait_init
from gaitheat.models.layers import BNNeck, SeparateFCs, horizontal_pool, max_over
from gaitheat.models.pose_features import per_sequence
from gaitheat.models.resnet9 import BasicBlock, conv3x3
from gaitheat.models.spec import FramePolicy, LossTerm, ModelConfig, ModelSpec
from gaitheat.models.winograd import inference_copy

CUT = 10  # columns cut from each side of a 64-wide map: 64 -> 44, OpenGait's silhouette width


def per_frame(module: nn.Module, x: Tensor) -> Tensor:
    """Apply a 2-D module to every frame: (N, C, T, H, W) -> (N, C', T, H', W')."""
    n, c, t, h, w = x.shape
    y = module(x.transpose(1, 2).reshape(n * t, c, h, w))
    return y.view(n, t, *y.shape[1:]).transpose(1, 2)


class P3DBlock(nn.Module):
    """DeepGaitV2's pseudo-3D BasicBlock: (N, C_in, T, H, W) -> (N, C_out, T, H / s, W / s)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(conv3x3(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels), nn.ReLU())
        self.temporal = nn.Conv3d(out_channels, out_channels, (3, 1, 1), padding=(1, 0, 0), bias=False)
        self.temporal_bn = nn.BatchNorm3d(out_channels)
        self.conv2 = nn.Sequential(conv3x3(out_channels, out_channels), nn.BatchNorm2d(out_channels))
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = per_frame(self.conv1, x)
        out = F.relu(out + self.temporal_bn(self.temporal(out)))
        out = per_frame(self.conv2, out)
        return F.relu(out + self.downsample(x))


@dataclass(frozen=True)
class SkeletonGaitConfig(ModelConfig):
    """SkeletonGait at its released CCPG recipe (``skeletongait_CCPG.yaml``); augmentations p = 0.2 each."""

    name: str = "skeletongait"
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    parts: int = 16
    embed_dim: int = 256
    margin: float = 0.2
    scale: float = 16.0
    smoothing: float = 0.1
    perspective_prob: float = 0.2
    flip_prob: float = 0.2
    rotate_prob: float = 0.2
    ordered: bool = True  # train on consecutive frames (CCPG recipe); False: unordered (SUSTech1K recipe)

    @classmethod
    def tiny(cls) -> SkeletonGaitConfig:
        """A few-thousand-parameter variant for CPU tests."""
        return cls(widths=(4, 8, 16, 32), embed_dim=8)

    def spec(self) -> ModelSpec:
        augment = functools.partial(
            transforms.augment_maps,
            key="skeleton_maps",
            perspective=self.perspective_prob,
            hflip=self.flip_prob,
            rotate=self.rotate_prob,
        )
        return ModelSpec(
            inputs={"skeleton_maps": "skeleton_maps"},
            frames=FramePolicy("window" if self.ordered else "random", "all"),
            losses=(
                LossTerm("embeddings", "triplet", margin=self.margin),
                LossTerm("logits", "ce", scale=self.scale, smoothing=self.smoothing),
            ),
            distance="euc",
            augment=augment,
        )


class SkeletonGait(nn.Module):
    """SkeletonGait: skeleton maps (B, T, 2, 64, 64) -> BNNeck embedding (B, D, P)."""

    Config: ClassVar[type[ModelConfig]] = SkeletonGaitConfig

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (64, 128, 256, 512),
        parts: int = 16,
        embed_dim: int = 256,
        in_channels: int = 2,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config if config is not None else SkeletonGaitConfig()
        self.parts = parts
        self.stem = nn.Sequential(
            conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(), BasicBlock(widths[0], widths[0])
        )
        self.stages = nn.Sequential(
            P3DBlock(widths[0], widths[1], 2), P3DBlock(widths[1], widths[2], 2), P3DBlock(widths[2], widths[3], 1)
        )
        self.fc = SeparateFCs(parts, widths[-1], embed_dim)
        self.neck = BNNeck(parts, embed_dim, num_classes)
        opengait_init(self)

    @classmethod
    def from_config(cls, cfg: ModelConfig, num_classes: int) -> SkeletonGait:
        if not isinstance(cfg, SkeletonGaitConfig):
            raise TypeError(f"SkeletonGait needs a SkeletonGaitConfig, got {type(cfg).__name__}")
        return cls(num_classes, cfg.widths, cfg.parts, cfg.embed_dim, config=cfg)

    def _pooled(self, maps: Tensor) -> Tensor:
        """(B, T, C, H, W) -> (B, D, P) pre-BNNeck embedding."""
        if maps.shape[-1] == 64:
            maps = maps[..., CUT:-CUT]
        x = per_frame(self.stem, maps.transpose(1, 2))
        x = self.stages(x)
        return self.fc(horizontal_pool(max_over(x, 2), self.parts))

    def forward(self, *, skeleton_maps: Tensor, lengths: Tensor | None = None) -> ModelOutput:
        """-> features {"embeddings": (B, D, P), "logits": (B, K, P)}; ``embedding`` = BNNeck features."""
        emb = per_sequence(self._pooled, skeleton_maps, lengths)
        feats, logits = self.neck(emb)
        return ModelOutput(features={"embeddings": emb, "logits": logits}, embedding=feats)

    def embed(self, *, skeleton_maps: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, 2, 64, 64) -> (B, D, P) BNNeck features, unit norm per strip."""
        return self.neck.features(per_sequence(self._pooled, skeleton_maps, lengths))

    def for_inference(self) -> nn.Module:
        """An eval-mode copy whose 3x3 convs at 128+ channels run by Winograd on CPU (exact up to rounding)."""
        return inference_copy(self)
