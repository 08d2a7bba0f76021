"""3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, CVPR 2016), for CPU inference.

A stride-1, padding-1 3x3 convolution computes each 4 x 4 output tile from a 6 x 6 input tile. Winograd's
algorithm moves both into a 6 x 6 transform domain where the convolution is an element-wise product:

    Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A

summed over input channels, so the 36 transform positions become 36 independent matrix products
(tiles x C_in) @ (C_in x C_out): 36 multiplications per 16 outputs instead of 144, a quarter of the
arithmetic. The transforms cost O(C) per tile, not O(C_in x C_out), so the gain grows with the width.

Why here: GaitHeat's stages 2-4 at full width are such convolutions on small maps (32 x 24, 16 x 12)
with 128-512 channels, and oneDNN on AVX2 CPUs runs them directly, already at the core's fp32 peak
(no Winograd kernel for AVX2), so arithmetic is all that is left to save. Measured against the direct
convolutions: ``benchmarks/winograd.py`` (figures in the README's CPU speed section).

Exactness: the same function in a different summation order; in float32 the outputs differ from the
direct convolution by about 1e-5 of their magnitude (the points 0, +-1, +-2, infinity keep the
transform's constants small). Used only where it pays and is accurate: float32 on a CPU, outside
autocast and autograd; everywhere else :class:`WinogradConv2d` runs the ordinary convolution.

Memory: the transformed weights are 36 / 9 = 4x the kernels they replace; at full width GaitHeat's eight
wrapped convolutions hold 137 MB of them beside the network's 65 MB of weights.
"""

from __future__ import annotations

import copy
import functools
from typing import TypeGuard

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray, eq. 10 and 11)
_BT = ((4, 0, -5, 0, 1, 0),
       (0, -4, -4, 1, 1, 0),
       (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0),
       (0, 2, -1, -2, 1, 0),
       (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0),
      (-1 / 6, -1 / 6, -1 / 6),
      (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6),
      (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0),
       (0, 1, -1, 2, -2, 0),
       (0, 1, 1, 4, 4, 0),
       (0, 1, -1, 8, -8, 1))
TILE = 4  # output tile side m; the input tile side is m + 2
# Images go through in chunks whose transform-domain working set (36 x tiles x max(C_in, C_out) floats)
# is about this many elements (8 MB): a 128-frame evaluation chunk does not double its peak memory, and
# the temporaries stay under glibc's largest mmap threshold (32 MB), so they are reused, not page-faulted
# in afresh. Measured (full width, 30 frames, 2 cores, per frame): 43.0 ms at 2M elements, 46.4 at 4M,
# 56.8 at 8M; the direct convolutions 63-66 ms.
CHUNK_ELEMENTS = 2 * 2**20


def transform_weight(weight: Tensor) -> Tensor:
    """(C_out, C_in, 3, 3) kernel -> (36, C_in, C_out) transform-domain weights G g G^T, float32.

    Computed in float64 (G holds 1/6 and 1/24) and rounded once.
    """
    if weight.dim() != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"Winograd F(4x4, 3x3) needs a (C_out, C_in, 3, 3) kernel, got {tuple(weight.shape)}")
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ai,ocij,bj->aboc", g, weight.detach().double(), g)
    return u.reshape(36, weight.shape[0], weight.shape[1]).transpose(1, 2).contiguous().float()


def winograd_conv3x3(x: Tensor, u: Tensor, bias: Tensor | None = None) -> Tensor:
    """Stride-1, padding-1 3x3 convolution of float32 ``x`` by F(4x4, 3x3).

    Args:
        x: (N, C_in, H, W), any memory format (channels-last reads without a copy).
        u: (36, C_in, C_out) from :func:`transform_weight`.
        bias: (C_out,) or None.
    Returns:
        (N, C_out, H, W), channels-last.
    """
    n, c, h, w = x.shape
    if u.shape[:2] != (36, c):
        raise ValueError(f"transformed weights {tuple(u.shape)} do not take {c} input channels")
    co = u.shape[2]
    th, tw = -(-h // TILE), -(-w // TILE)
    out = torch.empty(n, th * TILE, tw * TILE, co, dtype=x.dtype, device=x.device)  # NHWC
    step = max(1, CHUNK_ELEMENTS // (36 * th * tw * max(c, co)))
    for start in range(0, n, step):
        part = slice(start, start + step)
        _tiles(x[part], u, bias, out[part], th, tw)
    return out[:, :h, :w].permute(0, 3, 1, 2)


@functools.cache
def _transforms(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """B^T (6, 6) and A^T (4, 6) as tensors, made once per dtype and device (not per call on the hot path)."""
    return torch.tensor(_BT, dtype=dtype, device=device), torch.tensor(_AT, dtype=dtype, device=device)


def _tiles(x: Tensor, u: Tensor, bias: Tensor | None, out: Tensor, th: int, tw: int) -> None:
    """One chunk of :func:`winograd_conv3x3`: (n, C, H, W) in, written into ``out`` (n, 4 th, 4 tw, C_out)."""
    n, c, h, w = x.shape
    co = u.shape[2]
    bt, at = _transforms(x.dtype, x.device)
    # NHWC, zero-padded by 1 (the convolution's padding) and up to whole tiles
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, TILE * tw + 1 - w, 1, TILE * th + 1 - h))
    d = padded.unfold(1, TILE + 2, TILE).unfold(2, TILE + 2, TILE)  # (n, th, tw, C, 6, 6), overlapping tiles
    d = d.permute(4, 5, 0, 1, 2, 3).reshape(TILE + 2, -1)  # (6 rows, 6 cols x tiles x C)
    # B^T d B as two small products on the whole chunk: rows, then columns (batched over the rows)
    v = bt @ torch.matmul(bt, d).view(6, 6, -1)  # (6, 6, tiles x C)
    m = torch.bmm(v.view(36, n * th * tw, c), u)  # (36, tiles, C_out): the convolution's arithmetic
    y = at @ torch.matmul(at, m.view(6, -1)).view(4, 6, -1)  # A^T M A: (4 rows, 4 cols, tiles x C_out)
    tiles = y.view(TILE, TILE, n, th, tw, co).permute(2, 3, 0, 4, 1, 5)  # (n, th, row, tw, col, C_out)
    target = out.view(n, th, TILE, tw, TILE, co)
    if bias is None:
        target.copy_(tiles)
    else:
        torch.add(tiles, bias, out=target)


class WinogradConv2d(nn.Module):
    """A stride-1, padding-1, bias-optional 3x3 :class:`torch.nn.Conv2d` that runs by F(4x4, 3x3) where it pays.

    Float32 on a CPU, under ``torch.no_grad`` / ``inference_mode`` and outside autocast: Winograd; anything
    else (CUDA, whose cuDNN has its own Winograd; bf16 / fp16 autocast, where the transform constants
    would cost accuracy; training): the wrapped convolution. The transformed weights (4x the kernel's
    size) are made at the first Winograd call and kept, not registered: they follow no ``.to(device)``
    and stay out of the state dict. So the wrapped weights must not change afterwards.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not is_winograd_conv(conv):
            raise ValueError(f"not a stride-1, padding-1, ungrouped 3x3 convolution: {conv}")
        self.conv = conv
        self._u: Tensor | None = None  # worker threads may race to make it: both make the same tensor

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H, W)."""
        if (x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled()
                or torch.is_autocast_enabled("cpu")):
            return self.conv(x)
        if self._u is None:
            self._u = transform_weight(self.conv.weight)
        return winograd_conv3x3(x, self._u, self.conv.bias)


def is_winograd_conv(conv: nn.Module) -> TypeGuard[nn.Conv2d]:
    """Whether ``conv`` is a convolution :class:`WinogradConv2d` computes: 3x3, stride 1, padding 1, no groups."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


def use_winograd(model: nn.Module, min_channels: int = 128) -> int:
    """Wrap, in place, every eligible 3x3 convolution with at least ``min_channels`` input channels.

    Below about 128 channels the transforms cost more than they save (measured: 64 -> 64 at 64 x 48
    is 0.5x the direct convolution's speed on one AVX2 core, 128 -> 128 at 32 x 24 is 1.4x, 512 -> 512 at
    16 x 12 is 2.3x). Returns the number of convolutions wrapped.
    """
    wrapped = 0
    for owner in list(model.modules()):
        for name, child in owner.named_children():
            if is_winograd_conv(child) and child.in_channels >= min_channels:
                setattr(owner, name, WinogradConv2d(child))
                wrapped += 1
    return wrapped


def inference_copy(model: nn.Module, min_channels: int = 128) -> nn.Module:
    """An eval-mode, gradient-free copy of ``model`` with :func:`use_winograd` applied; ``model`` is untouched.

    A copy, because the transformed weights are cached: training the original afterwards must not leave a
    stale transform behind (and the original keeps training with the ordinary convs in any case).
    """
    fast = copy.deepcopy(model).eval()
    use_winograd(fast, min_channels)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast
