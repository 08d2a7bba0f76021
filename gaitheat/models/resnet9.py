"""ResNet9 backbone of GaitHeat as four separate stages (spec §3.3), with a ``widths`` argument.

Stage 1 is a 3x3 stem conv (in_channels -> widths[0]) + BN + ReLU + one BasicBlock; stages 2-4 are one
BasicBlock each, with a 1x1 conv + BN shortcut where the width or stride changes. No max-pool, all
convs bias-free, strides (1, 2, 2, 1) by default: a 64 x 48 map leaves stage 4 at 16 x 12.

Stages are returned separately because GaitHeat runs them one at a time: the shared trunk over all
streams, and private copies of stages 2-4 in the multi-stage fusion branch.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU (torchvision's BasicBlock, expansion 1).

    ``bn1``/``bn2``/the shortcut BN become ``nn.Identity`` after :func:`gaitheat.models.fold_batchnorm`.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1: nn.Module = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2: nn.Module = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Stem(nn.Module):
    """Stage 1: conv3x3 (stride 1) + BN + ReLU + BasicBlock(width, width, stride)."""

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = conv3x3(in_channels, width)
        self.bn: nn.Module = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.block = BasicBlock(width, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, width, H / stride, W / stride)."""
        return self.block(self.relu(self.bn(self.conv(x))))


def make_stage(index: int, widths: Sequence[int], strides: Sequence[int], in_channels: int = 1) -> nn.Module:
    """Build ResNet9 stage ``index`` (0-based) for the given widths and strides.

    Args:
        index: 0 = stem stage, 1-3 = the BasicBlock stages.
        widths: output channels of the four stages, e.g. (64, 128, 256, 512).
        strides: strides of the four stages, e.g. (1, 2, 2, 1).
        in_channels: input channels of stage 0 (one heatmap stream per sample).
    """
    if len(widths) != 4 or len(strides) != 4:
        raise ValueError(f"ResNet9 needs 4 widths and 4 strides, got {tuple(widths)} and {tuple(strides)}")
    if not 0 <= index < 4:
        raise ValueError(f"ResNet9 stage index must be 0-3, got {index}")
    if index == 0:
        return Stem(in_channels, widths[0], strides[0])
    return BasicBlock(widths[index - 1], widths[index], strides[index])


def make_stages(widths: Sequence[int], strides: Sequence[int], in_channels: int = 1) -> nn.ModuleList:
    """All four ResNet9 stages, in order."""
    return nn.ModuleList(make_stage(i, widths, strides, in_channels) for i in range(4))
