"""The released GaitHeat forward, restated op by op on our modules: the "faithful" baseline.

:func:`official_forward` computes what FastPoseGait's ``GaitHeat.forward`` computes (spec §3), in the
same data layout and order. Built like the release (part groups ``((0,), (1,))``, i.e. its channels 0
and 1, ``align_mode="two_pass"``, ``align_pixels="edge"``) and given the released ``state_dict``
(:mod:`gaitheat.released`), it reproduces the released code's outputs: ``tests/test_golden.py``
checks every head, in training and eval mode, against outputs of the released code itself, and
:func:`official_alignment` against its ``RotationMat`` + two ``grid_sample`` passes. What it keeps
from the release:

* two bilinear resamplings (rotation, then translation), in the model's pixel convention;
* 5-D ``[n, c, s, h, w]`` activations, each stage wrapped like ``SetBlockWrapper`` (transpose, fold the
  frames into the batch, run, unfold, transpose back, ``.contiguous()``);
* Max Response and the branch maxima over ``chunk``-ed, stacked stream tensors;
* all three heads computed at inference, with per-strip ``permute().contiguous().matmul()`` products;
* NCHW fp32, BatchNorm not folded.

What it does not keep, because none of it changes the arithmetic of a correct run: the hard
``.half()`` cast before ``grid_sample`` (fp32 throughout), the CPU ``RotationMat`` transform
(matrices are built in the forward, from given keypoints or the heatmaps' argmax), and Python's
``random`` for the skip of upright frames (the model's torch RNG). The model's own joint groups are
used, so with the default top/bottom groups it is the release's dataflow on our part maps.

It shares parameters with a :class:`GaitHeat`, so ``benchmarks/train_step.py`` can time both on the
same weights and the tests can check that our restructured forward computes the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitheat.models.align import PixelConvention, align_heatmaps
from gaitheat.models.gaitheat import BRANCHES, GaitHeat, GaitOutput, Head


def _set_block(stage: nn.Module, x: Tensor) -> Tensor:
    """Official SetBlockWrapper: [n, c, s, h, w] -> per-frame stage -> [n, c', s, h', w']."""
    n, c, s, h, w = x.shape
    y = stage(x.transpose(1, 2).reshape(-1, c, h, w))
    return y.reshape(n, s, *y.shape[1:]).transpose(1, 2).contiguous()


def _max_response(x: Tensor, streams: int) -> Tensor:
    """Element-wise max over the stream chunks of a [S*n, c, s, h, w] tensor."""
    return torch.stack(x.chunk(streams, 0)).max(0)[0]


def _official_head(head: Head, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Time max, HPM, SeparateFCs and BNNeck as released: [n, c, s, h, w] -> embed_1, embed_2, logits."""
    pooled = torch.max(x, dim=2)[0]
    n, c = pooled.shape[:2]
    strips = pooled.view(n, c, head.parts, -1)
    feat = (strips.mean(-1) + strips.max(-1)[0]).permute(2, 0, 1).contiguous()  # [p, n, c]
    embed_1 = feat.matmul(head.fc.weight).permute(1, 2, 0).contiguous()  # [n, d, p]
    d, p = embed_1.shape[1:]
    bn = head.neck.bn(embed_1.view(n, -1)).view(n, d, p)
    normed = F.normalize(bn.permute(2, 0, 1).contiguous(), dim=-1)  # [p, n, d]
    logits = normed.matmul(F.normalize(head.neck.classifier, dim=1))  # [p, n, k]
    return embed_1, normed.permute(1, 2, 0).contiguous(), logits.permute(1, 2, 0).contiguous()


def official_alignment(
    heatmaps: Tensor,
    keypoints: Tensor | None = None,
    *,
    pixels: PixelConvention = "edge",
    neck_to: tuple[float, float] = (24.0, 16.0),
    gamma_deg: float = 5.0,
    skip_prob: float = 0.8,
    training: bool = False,
) -> Tensor:
    """The released PGHA: rotation then translation, two bilinear ``grid_sample`` passes, border padding.

    Args:
        heatmaps: (N, J, H, W) one frame per row.
        keypoints: (N, J, C >= 2) x, y in heatmap pixels; None = per-channel argmax of the spine joints.
        pixels: "edge" (the release's convention, the default here) or "centre".
        neck_to, gamma_deg, skip_prob, training: as :func:`gaitheat.models.align.align_heatmaps`.
    Returns:
        (N, J, H, W) aligned heatmaps.
    """
    return align_heatmaps(heatmaps, keypoints, neck_to=neck_to, gamma_deg=gamma_deg, skip_prob=skip_prob,
                          training=training, mode="two_pass", pixels=pixels)


def official_forward(model: GaitHeat, heatmaps: Tensor, keypoints: Tensor | None = None) -> GaitOutput:
    """The released forward (two-pass PGHA, 5-D layout, all heads) with ``model``'s parameters.

    Args:
        model: a GaitHeat with the fusion branch; its ``training`` flag drives PGHA's random skip and
            its ``align_pixels`` the pixel convention.
        heatmaps: (B, T, J, H, W), all sequences T frames long.
        keypoints: (B, T, J, C >= 2) x, y in heatmap pixels for PGHA; None = the heatmaps' argmax.
    Returns:
        the same :class:`GaitOutput` contract as ``model(heatmaps)``.
    """
    if model.fusion_stages is None:
        raise ValueError("official_forward needs a model built with the fusion branch")
    n, s, j, h, w = heatmaps.shape
    x = heatmaps.reshape(n * s, j, h, w)
    if model.align:
        x = official_alignment(
            x,
            None if keypoints is None else keypoints.reshape(n * s, j, -1),
            pixels=model.align_pixels,
            neck_to=model.neck_to,
            gamma_deg=model.gamma_deg,
            skip_prob=model.skip_prob,
            training=model.training,
        )
    x = x.view(n, s, j, h, w).permute(0, 2, 1, 3, 4)  # [n, J, s, h, w]
    parts = [x[:, list(g)].max(1, keepdim=True)[0] for g in model.groups]
    streams = len(parts) + 1
    out = torch.cat([*parts, x.max(1, keepdim=True)[0]], 0)  # [S*n, 1, s, h, w]
    fused = out
    for i, stage in enumerate(model.stages):
        out = _set_block(stage, out)
        response = _max_response(out, streams)
        fused = response if i == 0 else response + _set_block(model.fusion_stages[i - 1], fused)
    chunks = out.chunk(streams, 0)
    maps = {"part": torch.stack(chunks[:-1]).max(0)[0], "global": chunks[-1], "fusion": fused}
    embeddings, logits, retrieval = {}, {}, None
    for name in BRANCHES:
        head = model.heads[name]
        assert isinstance(head, Head)
        embeddings[name], feats, logits[name] = _official_head(head, maps[name])
        if name == "fusion":
            retrieval = feats
    assert retrieval is not None
    return GaitOutput(embeddings=embeddings, logits=logits, embedding=retrieval)
