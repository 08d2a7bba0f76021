"""GPGait (Fu et al., ICCV 2023; FastPoseGait ``gpgait``): HOT + HOD + Part-Aware GCN.

Inside :meth:`GPGait.forward`, from the raw keypoints:

* **HOT** (Human-Oriented Transformation, released as ``RescaleCenter``): every frame scaled to a
  skeleton 225 units tall and centred on the neck (the shoulders' midpoint);
* **HOD** (Human-oriented Descriptors, ``HOD_MultiInput``): the transformed positions (x, y), the
  bones (joint minus parent) and one angle per joint (law of cosines, :func:`.pose_features.hod_angles`).

Three branches (positions, bones, angles; the angle branch uses the 12 joints below the head) each
run a **Part-Aware GCN**: graph convolutions whose adjacency is the learned skeleton adjacency plus a
data-dependent attention, masked to stay within body parts. Three shared layers (parts = four limbs
+ head) feed one global and three part-wise stacks (upper/lower, arms/head+legs, arms/legs/head).
Each stack is max-pooled over frames and pooled over its parts' joints (mean + max), giving 8 + 8
+ 3 = 19 part features of width 256, mapped per part (SeparateFCs) and through a BNNeck with a
cosine classifier. Loss: batch-hard triplet (margin 0.3) on the pre-BNNeck embeddings + cross-
entropy (scale 16, no label smoothing). Retrieval: the BNNeck features, Euclidean distance.

Released CASIA-B config: channels (2, 64, 64, 128, 256), 3 shared layers, 74 classes:
**3,654,810** parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from gaitheat import transforms
from gaitheat.models import ModelOutput
from gaitheat.models.graph import COCO, COCO_FLIP, COCO_PARENT, NO_HEAD, Skeleton, hop_adjacency, part_mask
from gaitheat.models.layers import BNNeck, SeparateFCs
from gaitheat.models.pose_features import bones, hod_angles, per_sequence, rescale_center, upright_spine
from gaitheat.models.spec import FramePolicy, LossTerm, ModelConfig, ModelSpec

MAX_HOP = 2  # GPGait's adjacency: hops 0, 1, 2 (one attention subset each)
# (partition used by the stack's layers, partition its output is pooled over); 0 = whole body, no mask
COCO_STACKS = {"upper_lower": 2, "arms_rest": 3, "arms_legs_head": 4, "global": 0}
NO_HEAD_STACKS = {"arms_legs": 2, "global": 0}
SHARED_PARTITION = 1  # the shared layers mask to limbs (+ head)


class PartAwareGCN(nn.Module):
    """One Part-Aware graph convolution layer, with its residual: (N, C_in, T, V) -> (N, C_out, T, V).

    For each hop subset k: attention CA_k = softmax over rows of (W_a x)^T (W_b x) / (C' T) (joints
    attending to joints over the whole clip), A_k = CA_k + adjacency_k + learned offset_k, masked to
    the part partition, and z_k = W_d (x A_k). Output: Mish(BN(sum_k z_k)) + residual(x).
    """

    def __init__(self, in_channels: int, out_channels: int, skeleton: Skeleton, embed_ratio: int = 4) -> None:
        super().__init__()
        adjacency = torch.from_numpy(hop_adjacency(skeleton, MAX_HOP))
        self.subsets = adjacency.shape[0]
        self.inter = out_channels // embed_ratio
        self.register_buffer("adjacency", adjacency, persistent=False)
        masks = torch.from_numpy(np.stack([part_mask(skeleton, p) for p in range(len(skeleton.partitions))]))
        self.register_buffer("masks", masks, persistent=False)
        self.offset = nn.Parameter(torch.full_like(adjacency, 1e-6))
        self.conv_a = nn.ModuleList(nn.Conv2d(in_channels, self.inter, 1) for _ in range(self.subsets))
        self.conv_b = nn.ModuleList(nn.Conv2d(in_channels, self.inter, 1) for _ in range(self.subsets))
        self.conv_d = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1) for _ in range(self.subsets))
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.Mish()
        self.residual: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: Tensor, part: int = 0) -> Tensor:
        """``part``: index into the skeleton's partitions (0 = no mask)."""
        n, c, t, v = x.shape
        adjacency = self.adjacency + self.offset  # type: ignore[operator]
        flat = x.reshape(n, c * t, v)
        y: Tensor | None = None
        for i in range(self.subsets):
            q = self.conv_a[i](x).permute(0, 3, 1, 2).reshape(n, v, self.inter * t)
            k = self.conv_b[i](x).reshape(n, self.inter * t, v)
            a = torch.softmax(q @ k / (self.inter * t), dim=-2) + adjacency[i]
            if part:
                a = a * self.masks[part]  # type: ignore[index]
            z = self.conv_d[i]((flat @ a).view(n, c, t, v))
            y = z if y is None else y + z
        assert y is not None
        return self.act(self.bn(y)) + self.residual(x)


def part_pool(x: Tensor, groups: Sequence[Sequence[int]]) -> Tensor:
    """Semantic pyramid pooling: (N, C, V) -> (N, C, len(groups)), mean + max over each group's joints."""
    return torch.stack([x[..., list(g)].mean(-1) + x[..., list(g)].amax(-1) for g in groups], -1)


class PartAwareBranch(nn.Module):
    """BN over the input, shared Part-Aware layers, then one stack per partition; -> (N, C, parts)."""

    def __init__(self, channels: Sequence[int], first: int, shared: int, skeleton: Skeleton) -> None:
        super().__init__()
        self.skeleton = skeleton
        v = skeleton.num_joints
        widths = [first, *channels[1:]]
        self.data_bn = nn.BatchNorm1d(first * v)
        self.shared = nn.ModuleList(PartAwareGCN(widths[i], widths[i + 1], skeleton) for i in range(shared))
        self.stack_parts = COCO_STACKS if skeleton is COCO else NO_HEAD_STACKS
        self.stacks = nn.ModuleDict(
            {
                name: nn.ModuleList(
                    PartAwareGCN(widths[i], widths[i + 1], skeleton) for i in range(shared, len(widths) - 1)
                )
                for name in self.stack_parts
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, T, V) -> (N, C_out, parts)."""
        n, c, t, v = x.shape
        x = self.data_bn(x.permute(0, 3, 1, 2).reshape(n, v * c, t)).view(n, v, c, t).permute(0, 2, 3, 1)
        for layer in self.shared:
            x = layer(x, SHARED_PARTITION)
        pooled = []
        for name, part in self.stack_parts.items():
            y = x
            stack = self.stacks[name]
            assert isinstance(stack, nn.ModuleList)
            for layer in stack:
                y = layer(y, part)
            pooled.append(part_pool(y.amax(2), self.skeleton.partitions[part]))
        return torch.cat(pooled, -1)


def hod(keypoints: Tensor, upright: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """HOT + HOD: (B, T, 17, 3) -> positions (B, 2, T, 17), bones (B, 2, T, 17), angles (B, 1, T, 12).

    ``upright``: first rotate each frame's spine to the vertical (the released CCPG recipe).
    """
    xy = keypoints[..., :2]
    xy = rescale_center(upright_spine(xy) if upright else xy)
    angles = hod_angles(xy)[..., 5:]  # the angle branch has no head joints
    return xy.permute(0, 3, 1, 2), bones(xy, COCO_PARENT).permute(0, 3, 1, 2), angles.unsqueeze(1)


@dataclass(frozen=True)
class GPGaitConfig(ModelConfig):
    """GPGait at its released CASIA-B recipe (``configs/gpgait/gpgait.yaml``).

    The released joint noise (0.3) is in HOT units (a 225-tall skeleton); ours is added before HOT,
    in crop pixels where a walker is ~55 px tall: 0.3 * 55 / 225 = 0.075.
    """

    name: str = "gpgait"
    channels: tuple[int, ...] = (2, 64, 64, 128, 256)
    shared: int = 3
    embed_dim: int = 256
    margin: float = 0.3
    scale: float = 16.0
    swap_prob: float = 0.1
    joint_noise: float = 0.075
    upright: bool = False  # rotate the spine upright before HOT (released for CCPG only)

    @classmethod
    def tiny(cls) -> GPGaitConfig:
        """A few-thousand-parameter variant for CPU tests."""
        return cls(channels=(2, 8, 8, 16, 16), embed_dim=16)

    def spec(self) -> ModelSpec:
        augment = functools.partial(
            transforms.augment_keypoints, flip=COCO_FLIP, swap_prob=self.swap_prob, joint_std=self.joint_noise
        )
        return ModelSpec(
            inputs={"keypoints": "keypoints"},
            frames=FramePolicy("random", "all"),
            losses=(
                LossTerm("embeddings", "triplet", margin=self.margin, mining="hard"),
                LossTerm("logits", "ce", scale=self.scale, smoothing=0.0),
            ),
            distance="euc",
            augment=augment,
            streaming="set_max",
        )


class GPGait(nn.Module):
    """GPGait: keypoints (B, T, 17, 3) -> BNNeck embedding (B, D, 19)."""

    Config: ClassVar[type[ModelConfig]] = GPGaitConfig
    PARTS = 19

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int] = (2, 64, 64, 128, 256),
        shared: int = 3,
        embed_dim: int = 256,
        upright: bool = False,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.upright = upright
        if not 1 <= shared < len(channels) - 1:
            raise ValueError(f"GPGait needs 1 <= shared < {len(channels) - 1} layers, got {shared}")
        self.config = config if config is not None else GPGaitConfig()
        self.pose = PartAwareBranch(channels, 2, shared, COCO)
        self.bone = PartAwareBranch(channels, 2, shared, COCO)
        self.angle = PartAwareBranch(channels, 1, shared, NO_HEAD)
        self.fc = SeparateFCs(self.PARTS, channels[-1], embed_dim)
        self.neck = BNNeck(self.PARTS, embed_dim, num_classes)

    @classmethod
    def from_config(cls, cfg: ModelConfig, num_classes: int) -> GPGait:
        if not isinstance(cfg, GPGaitConfig):
            raise TypeError(f"GPGait needs a GPGaitConfig, got {type(cfg).__name__}")
        return cls(num_classes, cfg.channels, cfg.shared, cfg.embed_dim, cfg.upright, config=cfg)

    def _parts(self, keypoints: Tensor) -> Tensor:
        """(B, T, 17, 3) -> (B, C, 19) set-pooled part features."""
        pos, bone, angle = hod(keypoints, self.upright)
        return torch.cat([self.pose(pos), self.bone(bone), self.angle(angle)], -1)

    def forward(self, *, keypoints: Tensor, lengths: Tensor | None = None) -> ModelOutput:
        """-> features {"embeddings": (B, D, 19) pre-BNNeck, "logits": (B, K, 19)}; ``embedding`` = BNNeck features."""
        emb = self.fc(per_sequence(self._parts, keypoints, lengths))
        feats, logits = self.neck(emb)
        return ModelOutput(features={"embeddings": emb, "logits": logits}, embedding=feats)

    def embed(self, *, keypoints: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, 17, 3) -> (B, D, 19) BNNeck features, unit norm per part."""
        return self.neck.features(self.fc(per_sequence(self._parts, keypoints, lengths)))

    def for_inference(self) -> nn.Module:
        return self.eval()
