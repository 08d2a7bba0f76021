"""GaitTR (Zhang et al., 2022; FastPoseGait ``gaittr``): spatial transformer + temporal convolution.

Input: 10 channels per joint and frame computed inside :meth:`GaitTR.forward` from (x, y) (the
score is dropped, as released in ``GaitTR_MultiInput``): position, position relative to the nose,
one- and two-frame velocities, and the bone to the parent joint.

Each block (``TCN_ST``) is a temporal convolution (kernel 9, Mish, BN) with an identity residual,
then a spatial transformer: per frame, 8-head self-attention over the 17 joints (keys and queries
of width out/4, values of width out) followed by Mish and BN, with a 1x1 residual; a 1x1 temporal
unit carries the block input past both when the width changes. After four blocks, average pooling
over joints and frames and a 1x1 convolution give the 128-d embedding, trained with batch-hard
triplet loss (margin 0.3) and compared by Euclidean distance (the released ``metric: euc``).

Released CASIA-B config: channels (10, 64, 64, 128, 256): **512,010** parameters.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitheat import transforms
from gaitheat.models import ModelOutput
from gaitheat.models.graph import COCO, COCO_CENTER, COCO_FLIP, COCO_PARENT
from gaitheat.models.pose_features import bones, per_sequence, velocities
from gaitheat.models.spec import FramePolicy, LossTerm, ModelConfig, ModelSpec


def multi_input(kp: Tensor) -> Tensor:
    """(B, T, V, 3) keypoints -> (B, 10, T, V): xy, xy - nose, two velocities, bone (x then y each)."""
    xy = kp[..., :2]
    v1, v2 = velocities(xy)
    feats = [xy, xy - xy[:, :, COCO_CENTER : COCO_CENTER + 1], v1, v2, bones(xy, COCO_PARENT)]
    return torch.cat(feats, -1).permute(0, 3, 1, 2)


class TemporalUnit(nn.Module):
    """Dropout, (k x 1) conv over time, Mish, BN (the released ``UnitConv2D``, with its He-style init)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 9, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel, 1), padding=((kernel - 1) // 2, 0))
        nn.init.normal_(self.conv.weight, 0.0, math.sqrt(2.0 / (out_channels * kernel)))
        self.act = nn.Mish()
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, T, V) -> (N, C_out, T, V)."""
        return self.bn(self.act(self.conv(self.dropout(x))))


class SpatialAttention(nn.Module):
    """Per-frame multi-head self-attention over joints: 1x1 qkv conv, softmax(q k^T / sqrt(d)), 1x1 out conv.

    Args:
        heads: Nh; the key width ``out/4`` and value width ``out`` must both divide by it.
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int = 8) -> None:
        super().__init__()
        self.dk, self.dv, self.heads = out_channels // 4, out_channels, heads
        if self.dk % heads or self.dv % heads:
            raise ValueError(f"GaitTR attention widths {self.dk}/{self.dv} must divide by {heads} heads")
        self.qkv = nn.Conv2d(in_channels, 2 * self.dk + self.dv, 1)
        self.out = nn.Conv2d(self.dv, self.dv, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, T, V) -> (N, C_out, T, V); each frame attends only within itself."""
        n, _, t, v = x.shape
        q, k, val = self.qkv(x).split([self.dk, self.dk, self.dv], 1)

        def heads(z: Tensor) -> Tensor:  # (N, h*d, T, V) -> (N*T, h, V, d)
            return z.view(n, self.heads, -1, t, v).permute(0, 3, 1, 4, 2).reshape(n * t, self.heads, v, -1)

        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(val))  # (N*T, h, V, dv/h)
        y = y.view(n, t, self.heads, v, -1).permute(0, 2, 4, 1, 3).reshape(n, self.dv, t, v)
        return self.out(y)


class SpatialTransformer(nn.Module):
    """BN over (channel, joint) per frame, spatial attention, Mish, BN (the released ``STModule``)."""

    def __init__(self, in_channels: int, out_channels: int, num_joints: int) -> None:
        super().__init__()
        self.data_bn = nn.BatchNorm1d(in_channels * num_joints)
        self.attention = SpatialAttention(in_channels, out_channels)
        self.act = nn.Mish()
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, T, V) -> (N, C_out, T, V)."""
        n, c, t, v = x.shape
        x = self.data_bn(x.permute(0, 1, 3, 2).reshape(n, c * v, t)).view(n, c, v, t).permute(0, 1, 3, 2)
        return self.bn(self.act(self.attention(x)))


class TCNST(nn.Module):
    """GaitTR block: temporal unit (+ identity), spatial transformer (+ 1x1), plus a skip over both."""

    def __init__(self, in_channels: int, out_channels: int, num_joints: int) -> None:
        super().__init__()
        self.tcn = TemporalUnit(in_channels, in_channels, 9)
        self.st = SpatialTransformer(in_channels, out_channels, num_joints)
        same = in_channels == out_channels
        self.st_res: nn.Module = (
            nn.Identity()
            if same
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        )
        self.skip: nn.Module = nn.Identity() if same else TemporalUnit(in_channels, out_channels, 1, dropout=0.0)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, T, V) -> (N, C_out, T, V)."""
        x0 = self.tcn(x) + x
        return self.st(x0) + self.st_res(x0) + self.skip(x)


@dataclass(frozen=True)
class GaitTRConfig(ModelConfig):
    """GaitTR at its released CASIA-B recipe (``configs/gaittr/gaittr.yaml``); noise in crop pixels (half)."""

    name: str = "gaittr"
    channels: tuple[int, ...] = (10, 64, 64, 128, 256)
    embed_dim: int = 128
    margin: float = 0.3
    swap_prob: float = 0.1
    point_noise: float = 0.15  # released PointNoise 0.3
    joint_noise: float = 0.15  # released JointNoise 0.3

    @classmethod
    def tiny(cls) -> GaitTRConfig:
        """A few-thousand-parameter variant for CPU tests."""
        return cls(channels=(10, 32, 32), embed_dim=16)

    def spec(self) -> ModelSpec:
        augment = functools.partial(
            transforms.augment_keypoints,
            flip=COCO_FLIP,
            swap_prob=self.swap_prob,
            point_std=self.point_noise,
            joint_std=self.joint_noise,
        )
        return ModelSpec(
            inputs={"keypoints": "keypoints"},
            frames=FramePolicy("window", "all"),
            losses=(LossTerm("embeddings", "triplet", margin=self.margin, mining="hard"),),
            distance="euc",
            augment=augment,
        )


class GaitTR(nn.Module):
    """GaitTR: keypoints (B, T, 17, 3) -> embedding (B, D, 1)."""

    Config: ClassVar[type[ModelConfig]] = GaitTRConfig

    def __init__(
        self,
        channels: Sequence[int] = (10, 64, 64, 128, 256),
        embed_dim: int = 128,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        if channels[0] != 10:
            raise ValueError(f"GaitTR's input has 10 channels per joint, got channels[0] = {channels[0]}")
        self.config = config if config is not None else GaitTRConfig()
        v = COCO.num_joints
        self.data_bn = nn.BatchNorm1d(channels[0] * v)
        self.blocks = nn.ModuleList(TCNST(a, b, v) for a, b in itertools.pairwise(channels))
        self.fc = nn.Conv1d(channels[-1], embed_dim, 1)

    @classmethod
    def from_config(cls, cfg: ModelConfig, num_classes: int) -> GaitTR:
        """Build from a :class:`GaitTRConfig` (``num_classes`` is unused: triplet loss only)."""
        if not isinstance(cfg, GaitTRConfig):
            raise TypeError(f"GaitTR needs a GaitTRConfig, got {type(cfg).__name__}")
        return cls(cfg.channels, cfg.embed_dim, config=cfg)

    def _embed(self, keypoints: Tensor) -> Tensor:
        """(B, T, 17, 3) -> (B, D)."""
        x = multi_input(keypoints)  # (B, C, T, V)
        n, c, t, v = x.shape
        x = self.data_bn(x.permute(0, 3, 1, 2).reshape(n, v * c, t)).view(n, v, c, t).permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean((2, 3)).unsqueeze(-1)).squeeze(-1)

    def forward(self, *, keypoints: Tensor, lengths: Tensor | None = None) -> ModelOutput:
        """(B, T, 17, 3) keypoints -> features {"embeddings": (B, D, 1)} (also the ``embedding``)."""
        emb = per_sequence(self._embed, keypoints, lengths).unsqueeze(-1)
        return ModelOutput(features={"embeddings": emb}, embedding=emb)

    def embed(self, *, keypoints: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, 17, 3) -> (B, D, 1)."""
        return per_sequence(self._embed, keypoints, lengths).unsqueeze(-1)

    def for_inference(self) -> nn.Module:
        return self.eval()
