"""Inference-only rewrites of a trained GaitHeat: folded BatchNorm, channels-last weights, Winograd convs.

All are exact up to float rounding (Winograd: about 1e-5 of each conv's output; see
:mod:`gaitheat.models.winograd`). :func:`optimise_for_inference` returns a new model and leaves
the trained one untouched (a folded model has no BatchNorm left to train).

Channels-last is for inference only. On CPU (torch 2.13), BatchNorm in *training* mode on a
channels-last tensor computes its batch statistics with visibly less precision: measured against
float64, a channels-last training step of the tiny test model has gradients off by up to 3.6 %
(BN weights) where NCHW is off by 2e-5, and a lone BatchNorm2d on inputs of mean 3 and std 0.03
is off by 7e-4 where NCHW is off by 5e-6. Training therefore stays NCHW; with BN folded there is no
BatchNorm left at inference, and the channels-last embedding matches NCHW to 1e-6.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from gaitheat.models.resnet9 import BasicBlock, Stem
from gaitheat.models.winograd import use_winograd

if TYPE_CHECKING:  # GaitHeat.for_inference imports this module
    from gaitheat.models.gaitheat import GaitHeat


def _fold_pair(owner: nn.Module, conv_name: str, bn_name: str) -> None:
    conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
    if isinstance(bn, nn.BatchNorm2d):
        setattr(owner, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(owner, bn_name, nn.Identity())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d of the ResNet9 stages into the conv before it, in place.

    BN in eval mode is an affine map per channel, so conv + BN = one conv with scaled weights and a
    bias: one pass over each activation map fewer. The model must be in eval mode.

    Returns:
        the same model, for chaining.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (BatchNorm uses running statistics)")
    for m in model.modules():
        if isinstance(m, Stem):
            _fold_pair(m, "conv", "bn")
        elif isinstance(m, BasicBlock):
            _fold_pair(m, "conv1", "bn1")
            _fold_pair(m, "conv2", "bn2")
            ds = m.downsample
            if isinstance(ds, nn.Sequential) and len(ds) == 2:
                conv, bn = ds[0], ds[1]
                assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                m.downsample = nn.Sequential(fuse_conv_bn_eval(conv, bn))
    return model


def optimise_for_inference(
    model: GaitHeat, *, fold_bn: bool = True, channels_last: bool = True, winograd: bool = True,
    compile: bool = False,
) -> GaitHeat:
    """A copy of ``model`` for embedding only: eval mode, BN folded, channels-last, Winograd convs, no gradients.

    Args:
        model: a trained GaitHeat (not modified).
        fold_bn: fold BatchNorm into the convs.
        channels_last: store conv weights channels-last (NHWC), which oneDNN and cuDNN run with
            fewer layout conversions.
        winograd: run the stride-1 3x3 convs with 128 or more input channels (stages 2-4 at full width)
            by Winograd's F(4x4, 3x3) on CPU in float32 (:func:`gaitheat.models.winograd.use_winograd`);
            a quarter of their arithmetic, about 2x faster on an AVX2 core. Other devices and precisions
            run the ordinary convs.
        compile: wrap ``embed`` in ``torch.compile`` with weight freezing (Inductor pre-packs the conv
            weights and fuses the element-wise ops). Pays off only for long jobs: the first call
            compiles for about 1.5 minutes on 2 CPU cores, and a second distinct input shape
            recompiles once with dynamic shapes.
    Returns:
        the optimised copy; call its ``embed`` under ``torch.inference_mode()``.
    """
    fast = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(fast)
    if winograd and not compile:  # Inductor packs its own conv kernels: leave it the plain graph
        use_winograd(fast)  # runs only on CPU in float32: elsewhere the wrapped convs run as before
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    for p in fast.parameters():
        p.requires_grad_(False)
    if compile:
        fast.embed = torch.compile(fast.embed, options={"freezing": True})  # type: ignore[method-assign]
    return fast
