"""GaitHeat's set and part layers (spec §3.5): set pooling, HPM, SeparateFCs, BNNeck.

Set pooling takes the element-wise max over a sequence's frames; sequences in a batch may have
different lengths, given as packed frames plus ``lengths`` (the official test format concatenates
sequences along time the same way). HPM cuts the map into P horizontal strips and pools each with
mean + max. SeparateFCs and BNNeck hold one weight matrix per strip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def max_over(x: Tensor, dim: int) -> Tensor:
    """Element-wise max over ``dim``.

    With autograd recording this is ``max(dim).values``: its backward scatters the gradient to one
    maximum (as the official code's ``torch.max(...)[0]``), while ``amax``'s backward splits it among
    ties and spends several extra full-size passes counting them (measured: the costliest non-conv
    ops of a training step). Without autograd, ``amax`` skips computing indices.
    """
    if x.requires_grad and torch.is_grad_enabled():
        return x.max(dim).values
    return x.amax(dim)


def set_max(frames: Tensor, lengths: Tensor | None, batch: int) -> Tensor:
    """Max over each sequence's frames.

    Args:
        frames: (sum(lengths), C, H, W) frame features, sequences packed one after another; with
            ``lengths=None``, (B * T, C, H, W) with T frames per sequence.
        lengths: (B,) frames per sequence, or None for equal lengths.
        batch: B.
    Returns:
        (B, C, H, W).
    """
    if lengths is None:
        return max_over(frames.unflatten(0, (batch, -1)), 1)
    return torch.stack([max_over(chunk, 0) for chunk in frames.split(lengths.tolist())])


def horizontal_pool(x: Tensor, parts: int) -> Tensor:
    """Horizontal Pyramid Matching with one level of ``parts`` strips, each pooled by mean + max.

    Args:
        x: (B, C, H, W) with H divisible by ``parts``.
    Returns:
        (B, C, P).
    """
    b, c, h, _ = x.shape
    if h % parts:
        raise ValueError(f"feature map height {h} is not divisible into {parts} strips")
    strips = x.reshape(b, c, parts, -1)
    return strips.mean(-1) + max_over(strips, -1)


def xavier_3d(parts: int, fan_a: int, fan_b: int) -> Tensor:
    """A (P, a, b) tensor initialised like ``nn.init.xavier_uniform_`` on that 3-D shape.

    PyTorch's fan rule for 3-D tensors gives fan_in = a * b and fan_out = P * b, so the bound is
    sqrt(6 / (a*b + P*b)): about 0.0067 for the 16 x 512 x 256 FCs. The official model relies on this
    small scale (the triplet margin acts on the raw FC outputs), so we keep it (spec §3.6).
    """
    return nn.init.xavier_uniform_(torch.empty(parts, fan_a, fan_b))


class SeparateFCs(nn.Module):
    """One bias-free linear map per strip: (B, C, P) -> (B, D, P)."""

    def __init__(self, parts: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(xavier_3d(parts, in_channels, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, P) -> (B, D, P)."""
        return torch.einsum("bcp,pcd->bdp", x, self.weight)


class BNNeck(nn.Module):
    """BatchNorm1d over all D * P features, per-strip L2 normalisation, cosine classifier.

    The classifier weights (P, D, K) are L2-normalised over D per strip and class, so logits are
    cosines in [-1, 1]; the loss scales them (spec §3.5, §4.1).
    """

    def __init__(self, parts: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(channels * parts)
        self.classifier = nn.Parameter(xavier_3d(parts, channels, num_classes))

    def features(self, x: Tensor) -> Tensor:
        """(B, D, P) -> (B, D, P) batch-normalised, unit L2 norm per strip (the retrieval embedding)."""
        b, d, p = x.shape
        return F.normalize(self.bn(x.reshape(b, d * p)).view(b, d, p), dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, D, P) -> features (B, D, P) and cosine logits (B, K, P)."""
        feats = self.features(x)
        weight = F.normalize(self.classifier, dim=1)
        return feats, torch.einsum("bdp,pdk->bkp", feats, weight.to(feats.dtype))
