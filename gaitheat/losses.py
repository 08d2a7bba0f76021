"""GaitHeat's losses (paper eq. 9; spec §4.1): batch-all triplet + cosine cross-entropy per branch.

Both are pure functions of the tensors they get: no process group inside. Under DDP the training step
gathers the embeddings and labels of all ranks and passes them here (``gait_loss(..., triplet_embeddings=,
triplet_labels=)``), so the triplet loss sees the global batch, as the official code's does.

Choices (faithful to the official code unless noted):

* **Triplet, batch-all, per strip.** Every (anchor, positive, negative) triple is used; by default the
  positives *include the anchor itself* (distance 0), as in the official code, so each anchor also
  contributes relu(margin - d_an) for every negative: a push of all negatives beyond the margin,
  which the released results were trained with. ``include_self=False`` gives the textbook form.
  The per-strip loss is the sum over triples divided by the number of non-zero ones (0 if none);
  the loss is the mean over strips. Distances are computed on the pre-BNNeck embeddings in float32.
* **Cross-entropy** on ``scale * logits`` with label smoothing eps: (1 - eps) NLL + eps mean_c(-log p_c),
  averaged over the batch and strips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from gaitheat.experiment import TrainConfig
    from gaitheat.models import GaitOutput

BRANCHES = ("part", "global", "fusion")  # order of TrainConfig.triplet_weights / ce_weights
_EPS = 1e-12


def pairwise_distances(x: Tensor) -> Tensor:
    """Euclidean distances within each strip.

    Args:
        x: (P, B, D).
    Returns:
        (P, B, B), exactly 0 on the diagonal, with a finite gradient where distances vanish (duplicate
        sequences in a batch), unlike sqrt(relu(.)) whose gradient blows up there.
    """
    sq = (x * x).sum(-1)
    d2 = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * x @ x.transpose(1, 2)).clamp_min(0)
    eye = torch.eye(x.shape[1], dtype=torch.bool, device=x.device)
    tiny = (d2 <= _EPS) | eye
    return torch.where(tiny, torch.zeros_like(d2), torch.where(tiny, torch.ones_like(d2), d2).sqrt())


def triplet_terms(
    embeddings: Tensor, labels: Tensor, margin: float, include_self: bool = True
) -> tuple[Tensor, Tensor]:
    """Per-strip batch-all triplet loss and the number of non-zero triples.

    Args:
        embeddings: (B, D, P).
        labels: (B,) identity labels.
        margin: triplet margin.
        include_self: count the anchor among its own positives (the official behaviour).
    Returns:
        loss (P,) and non-zero triple counts (P,).
    """
    if embeddings.dim() != 3 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"expected embeddings (B, D, P) and labels (B,), got {tuple(embeddings.shape)}, {tuple(labels.shape)}"
        )
    x = embeddings.float().permute(2, 0, 1)  # (P, B, D)
    dist = pairwise_distances(x)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B)
    positive = same if include_self else same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    # (P, anchor, positive, negative); O(P * B^3) memory, a few MB at the official B = 64
    valid = positive.unsqueeze(2) & ~same.unsqueeze(1)
    terms = F.relu(dist.unsqueeze(3) - dist.unsqueeze(2) + margin) * valid
    count = (terms > 0).sum((1, 2, 3))
    loss = terms.sum((1, 2, 3)) / count.clamp_min(1)
    return loss, count


def triplet_loss(embeddings: Tensor, labels: Tensor, margin: float = 0.2, include_self: bool = True) -> Tensor:
    """Batch-all triplet loss, averaged over non-zero triples per strip, then over strips.

    Args:
        embeddings: (B, D, P) pre-BNNeck embeddings.
        labels: (B,).
        margin: triplet margin (0.2 in GaitHeat).
        include_self: the anchor is one of its own positives (official; see the module docstring).
    Returns:
        scalar float32 loss (0 when no triple violates the margin or the batch has one identity).
    """
    loss, _ = triplet_terms(embeddings, labels, margin, include_self)
    return loss.mean()


def cross_entropy_loss(logits: Tensor, labels: Tensor, scale: float = 16.0, smoothing: float = 0.1) -> Tensor:
    """Label-smoothed cross-entropy on scaled cosine logits, per strip, averaged over batch and strips.

    Args:
        logits: (B, K, P) cosines.
        labels: (B,) class indices in 0..K-1.
        scale: logit scale (16 in GaitHeat).
        smoothing: label smoothing eps.
    Returns:
        scalar float32 loss.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, K, P) and labels (B,), got {tuple(logits.shape)}, {tuple(labels.shape)}")
    target = labels.unsqueeze(1).expand(-1, logits.shape[2])
    return F.cross_entropy(scale * logits.float(), target, label_smoothing=smoothing)


def gait_loss(
    output: GaitOutput,
    labels: Tensor,
    cfg: TrainConfig,
    *,
    triplet_embeddings: dict[str, Tensor] | None = None,
    triplet_labels: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted sum of the six GaitHeat terms: triplet + CE on the part, global and fusion branches.

    Args:
        output: the model's output for the local batch.
        labels: (B,) local labels.
        cfg: margin, scale, smoothing and per-branch weights (``triplet_weights``/``ce_weights`` in
            the order part, global, fusion).
        triplet_embeddings: per branch, (B_global, D, P) embeddings gathered across ranks (the local
            slice carrying gradient); None = ``output.embeddings``.
        triplet_labels: (B_global,) labels matching ``triplet_embeddings``.
    Returns:
        total loss (scalar) and detached named terms for logging: ``triplet/<branch>``, ``ce/<branch>``,
        ``triplet_nonzero/<branch>`` (fraction of violating triples) and ``accuracy/<branch>``.
    """
    if (triplet_embeddings is None) != (triplet_labels is None):
        raise ValueError("pass triplet_embeddings and triplet_labels together")
    tri_emb = output.embeddings if triplet_embeddings is None else triplet_embeddings
    tri_lab = labels if triplet_labels is None else triplet_labels
    total = torch.zeros((), device=labels.device)
    terms: dict[str, Tensor] = {}
    for name, w_tri, w_ce in zip(BRANCHES, cfg.triplet_weights, cfg.ce_weights, strict=True):
        strip_loss, count = triplet_terms(tri_emb[name], tri_lab, cfg.triplet_margin)
        tri = strip_loss.mean()
        logits = output.logits[name]
        ce = cross_entropy_loss(logits, labels, cfg.ce_scale, cfg.label_smoothing)
        total = total + w_tri * tri + w_ce * ce
        b = len(tri_lab)
        same = (tri_lab.unsqueeze(0) == tri_lab.unsqueeze(1)).sum(1)
        triples = (same * (b - same)).sum().clamp_min(1)
        terms[f"triplet/{name}"] = tri.detach()
        terms[f"ce/{name}"] = ce.detach()
        terms[f"triplet_nonzero/{name}"] = (count.float().mean() / triples).detach()
        terms[f"accuracy/{name}"] = (logits.detach().argmax(1) == labels.unsqueeze(1)).float().mean()
    terms["total"] = total.detach()
    return total, terms
