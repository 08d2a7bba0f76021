"""GaitGraph (Teepe et al., ICIP 2021; FastPoseGait ``gaitgraph1``): a ResGCN over COCO-17 keypoints.

A ResGCN (Song et al., ACM MM 2020) is a stack of modules, each a spatial graph convolution over the
joints (distance-partitioned adjacency with a learnable per-edge weight, see :mod:`.graph`) followed
by a temporal convolution (kernel 9) over frames, both with bottleneck residual blocks. One *input
branch* per input (BatchNorm, then modules) feeds the *main stream*; global average pooling over
time and joints and a linear layer give the embedding.

GaitGraph has one input, the raw keypoints (x, y, score); its embedding is L2-normalised and
trained with supervised contrastive loss (SupCon, Khosla et al. 2020) on two augmented views of
each sequence. At test the embedding is averaged with that of the time-reversed sequence (TTA).
Distance: Euclidean, as the paper and its released config (``metric: euc``) use; on unit vectors it
ranks like cosine.

Released CASIA-B config: input branch (3, 64, 64, 32), main stream (32, 128, 128, 256, 256),
bottleneck reduction 8, 128-d embedding: **319,530** parameters.

Temporal strides follow the released code (``fastposegait/modeling/components/units/unit_tcn.py``):
the first main-stream module halves time, and so does every module that widens the channels.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitheat import transforms
from gaitheat.models import ModelOutput
from gaitheat.models.graph import COCO, COCO_FLIP, hop_adjacency
from gaitheat.models.pose_features import per_sequence
from gaitheat.models.spec import FramePolicy, LossTerm, ModelConfig, ModelSpec

MAX_HOP = 3  # the adjacency stack the edge weights are sized for (hops 0-3)
GRAPH_DISTANCE = 2  # hops the spatial convolution uses (0-2): the fourth edge slice is never read
TEMPORAL_KERNEL = 9


class SpatialGraphConv(nn.Module):
    """1x1 conv to ``K`` hop-partitions of ``out`` channels, each aggregated over its adjacency slice."""

    def __init__(self, in_channels: int, out_channels: int, partitions: int = GRAPH_DISTANCE + 1) -> None:
        super().__init__()
        self.partitions = partitions
        self.conv = nn.Conv2d(in_channels, out_channels * partitions, 1)

    def forward(self, x: Tensor, adjacency: Tensor) -> Tensor:
        """(N, C_in, T, V), (>= K, V, V) -> (N, C_out, T, V)."""
        y = self.conv(x)
        n, kc, t, v = y.shape
        y = y.view(n, self.partitions, kc // self.partitions, t, v)
        return torch.einsum("nkctv,kvw->nctw", y, adjacency[: self.partitions])


class BasicModule(nn.Module):
    """The "initial" module of an input branch: graph conv + BN + ReLU, temporal conv + BN + ReLU, no residual."""

    def __init__(self, in_channels: int, out_channels: int, max_hop: int, num_joints: int) -> None:
        super().__init__()
        self.gcn = SpatialGraphConv(in_channels, out_channels)
        self.gcn_bn = nn.BatchNorm2d(out_channels)
        pad = (TEMPORAL_KERNEL - 1) // 2
        self.tcn = nn.Conv2d(out_channels, out_channels, (TEMPORAL_KERNEL, 1), padding=(pad, 0))
        self.tcn_bn = nn.BatchNorm2d(out_channels)
        self.edge = nn.Parameter(torch.ones(max_hop + 1, num_joints, num_joints))

    def forward(self, x: Tensor, adjacency: Tensor) -> Tensor:
        """(N, C_in, T, V) -> (N, C_out, T, V)."""
        x = F.relu(self.gcn_bn(self.gcn(x, adjacency * self.edge)))
        return F.relu(self.tcn_bn(self.tcn(x)))


def _conv_bn(in_channels: int, out_channels: int, kernel: tuple[int, int] = (1, 1), stride: int = 1) -> nn.Sequential:
    pad = ((kernel[0] - 1) // 2, 0)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=(stride, 1), padding=pad), nn.BatchNorm2d(out_channels)
    )


class BottleneckModule(nn.Module):
    """Spatial bottleneck (1x1 down, graph conv, 1x1 up) then temporal bottleneck (1x1, k x 1, 1x1).

    Each half has its own residual: identity when shapes match, else a 1x1 conv + BN (with the
    temporal stride on the temporal side).

    Args:
        stride: temporal stride (1 or 2).
        reduction: bottleneck channels = out_channels // reduction.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, reduction: int, max_hop: int, num_joints: int
    ) -> None:
        super().__init__()
        mid = out_channels // reduction
        self.s_res: nn.Module = nn.Identity() if in_channels == out_channels else _conv_bn(in_channels, out_channels)
        self.s_down = _conv_bn(in_channels, mid)
        self.gcn = SpatialGraphConv(mid, mid)
        self.gcn_bn = nn.BatchNorm2d(mid)
        self.s_up = _conv_bn(mid, out_channels)
        self.t_res: nn.Module = nn.Identity() if stride == 1 else _conv_bn(out_channels, out_channels, stride=stride)
        self.t_down = _conv_bn(out_channels, mid)
        self.tcn = _conv_bn(mid, mid, (TEMPORAL_KERNEL, 1), stride)
        self.t_up = _conv_bn(mid, out_channels)
        self.edge = nn.Parameter(torch.ones(max_hop + 1, num_joints, num_joints))

    def forward(self, x: Tensor, adjacency: Tensor) -> Tensor:
        """(N, C_in, T, V) -> (N, C_out, T / stride, V)."""
        y = F.relu(self.s_down(x))
        y = F.relu(self.gcn_bn(self.gcn(y, adjacency * self.edge)))
        x = F.relu(self.s_up(y) + self.s_res(x))
        y = F.relu(self.t_down(x))
        y = F.relu(self.tcn(y))
        return F.relu(self.t_up(y) + self.t_res(x))


class InputBranch(nn.Module):
    """BatchNorm over the raw input, a basic module, then bottleneck modules (no temporal stride)."""

    def __init__(self, channels: Sequence[int], reduction: int) -> None:
        super().__init__()
        v = COCO.num_joints
        self.bn = nn.BatchNorm2d(channels[0])
        layers: list[nn.Module] = [BasicModule(channels[0], channels[1], MAX_HOP, v)]
        for c_in, c_out in itertools.pairwise(channels[1:]):
            layers.append(BottleneckModule(c_in, c_out, 1, reduction, MAX_HOP, v))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, adjacency: Tensor) -> Tensor:
        """(N, C_0, T, V) -> (N, C_last, T, V)."""
        x = self.bn(x)
        for layer in self.layers:
            x = layer(x, adjacency)
        return x


class ResGCN(nn.Module):
    """Input branches (one per input) + main stream + global average pooling + linear embedding.

    Args:
        inputs: number of input branches I.
        input_branch: channels through each branch, e.g. (3, 64, 64, 32); the first module is basic.
        main_stream: channels through the main stream; its first entry is per branch (times I in).
        embed_dim: output dimension.
        reduction: bottleneck reduction.
    """

    def __init__(
        self, inputs: int, input_branch: Sequence[int], main_stream: Sequence[int], embed_dim: int, reduction: int
    ) -> None:
        super().__init__()
        v = COCO.num_joints
        self.register_buffer("adjacency", torch.from_numpy(hop_adjacency(COCO, MAX_HOP)), persistent=False)
        self.branches = nn.ModuleList(InputBranch(input_branch, reduction) for _ in range(inputs))
        main: list[nn.Module] = []
        widths = [main_stream[0] * inputs, *main_stream[1:]]
        for i, (c_in, c_out) in enumerate(itertools.pairwise(widths)):
            stride = 2 if i == 0 or c_in != c_out else 1  # the released temporal downsampling
            main.append(BottleneckModule(c_in, c_out, stride, reduction, MAX_HOP, v))
        self.main = nn.ModuleList(main)
        self.fc = nn.Linear(main_stream[-1], embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(N, I, C, T, V) -> (N, embed_dim)."""
        adjacency: Tensor = self.adjacency  # type: ignore[assignment]
        y = torch.cat([branch(x[:, i], adjacency) for i, branch in enumerate(self.branches)], 1)
        for module in self.main:
            y = module(y, adjacency)
        return self.fc(y.mean((2, 3)))


@dataclass(frozen=True)
class GaitGraphConfig(ModelConfig):
    """GaitGraph at its released CASIA-B recipe (``configs/gaitgraph1/gaitgraph1_phase1.yaml``).

    Augmentation amounts are in our keypoint units (heatmap pixels of the 64 x 48 crop, where a
    walker is ~55 px tall); the released ones are in CASIA-B frame pixels (~110 px tall), so each
    noise std is half the released one (0.2 -> 0.1, 0.05 -> 0.025).
    """

    name: str = "gaitgraph"
    input_branch: tuple[int, ...] = (3, 64, 64, 32)
    main_stream: tuple[int, ...] = (32, 128, 128, 256, 256)
    embed_dim: int = 128
    reduction: int = 8
    temperature: float = 0.01
    tta: bool = True  # test: mean with the time-reversed sequence
    swap_prob: float = 0.1  # per frame: swap left/right joints (InversePosesPre)
    reverse_prob: float = 0.5  # play the window backwards (FlipSequence)
    point_noise: float = 0.025  # per joint and frame (PointNoise 0.05 released)
    joint_noise: float = 0.1  # per joint, the same in every frame (JointNoise 0.2 released)

    @classmethod
    def tiny(cls) -> GaitGraphConfig:
        """A few-thousand-parameter variant for CPU tests."""
        return cls(input_branch=(3, 8, 8, 8), main_stream=(8, 16, 16, 32, 32), embed_dim=16, reduction=4)

    def spec(self) -> ModelSpec:
        augment = functools.partial(
            transforms.augment_keypoints,
            swap_prob=self.swap_prob,
            reverse_prob=self.reverse_prob,
            point_std=self.point_noise,
            joint_std=self.joint_noise,
            flip=COCO_FLIP,
        )
        return ModelSpec(
            inputs={"keypoints": "keypoints"},
            frames=FramePolicy("window", "window", views=2),
            # the released SupConLoss_Re scales the loss by temperature / base_temperature (0.07)
            losses=(
                LossTerm("embeddings", "supcon", weight=self.temperature / 0.07, temperature=self.temperature),
            ),
            distance="euc",
            augment=augment,
        )


class GaitGraph(nn.Module):
    """GaitGraph: keypoints (B, T, 17, 3) -> unit-norm embedding (B, D, 1).

    Args:
        input_branch, main_stream, embed_dim, reduction: see :class:`ResGCN`.
        tta: average with the time-reversed sequence in :meth:`embed`.
    """

    Config: ClassVar[type[ModelConfig]] = GaitGraphConfig

    def __init__(
        self,
        input_branch: Sequence[int] = (3, 64, 64, 32),
        main_stream: Sequence[int] = (32, 128, 128, 256, 256),
        embed_dim: int = 128,
        reduction: int = 8,
        tta: bool = True,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config if config is not None else GaitGraphConfig()
        self.tta = tta
        self.net = ResGCN(1, input_branch, main_stream, embed_dim, reduction)

    @classmethod
    def from_config(cls, cfg: ModelConfig, num_classes: int) -> GaitGraph:
        """Build from a :class:`GaitGraphConfig` (``num_classes`` is unused: SupCon has no classifier)."""
        if not isinstance(cfg, GaitGraphConfig):
            raise TypeError(f"GaitGraph needs a GaitGraphConfig, got {type(cfg).__name__}")
        return cls(cfg.input_branch, cfg.main_stream, cfg.embed_dim, cfg.reduction, cfg.tta, config=cfg)

    def _embed(self, keypoints: Tensor) -> Tensor:
        """(B, T, 17, 3) -> (B, D) unit L2 norm."""
        x = keypoints.permute(0, 3, 1, 2).unsqueeze(1)  # (B, 1, C, T, V)
        return F.normalize(self.net(x), dim=1)

    def forward(self, *, keypoints: Tensor, lengths: Tensor | None = None) -> ModelOutput:
        """(B, T, 17, 3) keypoints -> features {"embeddings": (B, D, 1)} and the same as ``embedding``."""
        emb = per_sequence(self._embed, keypoints, lengths).unsqueeze(-1)
        return ModelOutput(features={"embeddings": emb}, embedding=emb)

    def embed(self, *, keypoints: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, 17, 3) -> (B, D, 1); with TTA, the mean of the clip's and the reversed clip's embeddings."""

        def one(x: Tensor) -> Tensor:
            e = self._embed(x)
            return (e + self._embed(x.flip(1))) / 2 if self.tta else e

        return per_sequence(one, keypoints, lengths).unsqueeze(-1)

    def for_inference(self) -> nn.Module:
        return self.eval()
