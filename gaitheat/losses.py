"""Losses routed by a model's :class:`~gaitheat.models.spec.LossTerm` list: triplet, cosine
cross-entropy and supervised contrastive (SupCon); GaitHeat's six terms are paper eq. 9 (spec §4.1).

All are pure functions of the tensors they get: no process group inside. Under DDP the training step
gathers the embeddings and labels of all ranks and passes them here (``compute_losses(..., gathered=,
gathered_labels=)``), so the pairwise terms (triplet, SupCon) see the global batch, as the official
code's do, while cross-entropy stays on the local logits.

Choices (faithful to the official code unless noted):

* **Triplet, batch-all, per strip.** Every (anchor, positive, negative) triple is used; by default the
  positives *include the anchor itself* (distance 0), as in the official code, so each anchor also
  contributes relu(margin - d_an) for every negative: a push of all negatives beyond the margin,
  which the released results were trained with. ``include_self=False`` gives the textbook form.
  The per-strip loss is the sum over triples divided by the number of non-zero ones (0 if none);
  the loss is the mean over strips. Distances are computed on the pre-BNNeck embeddings in float32.
* **Triplet, batch-hard** (``mining: hard``): per anchor and strip, its farthest positive against its
  nearest negative, relu(d_ap - d_an + margin), averaged over the anchors that violate the margin
  (FastPoseGait's ``AvgNonZeroReducer``; 0 when none does), then over strips.
* **Cross-entropy** on ``scale * logits`` with label smoothing eps: (1 - eps) NLL + eps mean_c(-log p_c),
  averaged over the batch and strips.
* **SupCon** (Khosla et al. 2020, the "SupOut" form) on unit-normalised features per strip, in
  float32 (temperature 0.01 puts logits near 100): for each anchor, the mean over its positives
  (same label, not itself) of -log softmax over all other samples; averaged over anchors, then
  strips. Several views of one pick are separate rows with the same label. An anchor without a
  positive has no defined loss, so it is refused (``K * views >= 2`` per identity in a batch). No
  ``temperature / base_temperature`` factor: a term's ``weight`` carries any scaling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from gaitheat.models import GaitOutput
    from gaitheat.models.spec import LossTerm

BRANCHES = ("part", "global", "fusion")  # order of GaitHeatConfig.triplet_weights / ce_weights
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


def triplet_hard_terms(embeddings: Tensor, labels: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """Per-strip batch-hard triplet loss and the number of anchors violating the margin.

    Args:
        embeddings: (B, D, P).
        labels: (B,).
        margin: triplet margin.
    Returns:
        loss (P,) (mean over the anchors violating the margin, 0 if none: FastPoseGait's
        ``AvgNonZeroReducer``) and violating-anchor counts (P,).
    """
    if embeddings.dim() != 3 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"expected embeddings (B, D, P) and labels (B,), got {tuple(embeddings.shape)}, {tuple(labels.shape)}"
        )
    dist = pairwise_distances(embeddings.float().permute(2, 0, 1))  # (P, B, B)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    hardest_pos = torch.where(same, dist, torch.zeros_like(dist)).amax(2)
    hardest_neg = torch.where(same, torch.full_like(dist, float("inf")), dist).amin(2)
    has_neg = (~same).any(1)  # (B,)
    terms = F.relu(hardest_pos - hardest_neg + margin) * has_neg
    terms = torch.where(has_neg, terms, torch.zeros_like(terms))  # inf - inf never reaches the sum
    loss = terms.sum(1) / (terms > 0).sum(1).clamp_min(1)
    return loss, (terms > 0).sum(1)


def supcon_loss(features: Tensor, labels: Tensor, temperature: float = 0.01, similarity: str = "cos") -> Tensor:
    """Supervised contrastive loss (see the module docstring), in float32.

    Args:
        features: (B, D) or (B, D, P) embeddings (normalised here, per strip).
        labels: (B,); every label must occur at least twice.
        temperature: softmax temperature.
        similarity: ``cos`` (dot products of the unit vectors) or ``l2`` (minus their L2 distance).
    Returns:
        scalar float32 loss.
    Raises:
        ValueError: an anchor has no positive (a label occurs once), or bad shapes.
    """
    if features.dim() == 2:
        features = features.unsqueeze(2)
    if features.dim() != 3 or labels.shape != features.shape[:1]:
        raise ValueError(f"expected features (B, D[, P]) and labels (B,), got {tuple(features.shape)}, "
                         f"{tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"SupCon temperature must be positive, got {temperature}")
    b = labels.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=labels.device)
    positive = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~eye
    counts = positive.sum(1)
    if bool((counts == 0).any()):
        lonely = sorted(set(labels[counts == 0].tolist()))
        raise ValueError(f"SupCon: labels {lonely[:5]} have a single sample in the batch, so their anchors have "
                         "no positive; draw K * views >= 2 samples per identity")
    with torch.autocast(features.device.type, enabled=False):
        x = F.normalize(features.float(), dim=1).permute(2, 0, 1)  # (P, B, D)
        if similarity == "l2":  # -|u - v| = -sqrt(2 - 2 u.v) for unit vectors; clamped for a finite gradient
            logits = -(2 - 2 * x @ x.transpose(1, 2)).clamp_min(1e-12).sqrt() / temperature
        elif similarity == "cos":
            logits = x @ x.transpose(1, 2) / temperature  # (P, B, B)
        else:
            raise ValueError(f"SupCon similarity must be 'cos' or 'l2', got {similarity!r}")
        logits = logits.masked_fill(eye, float("-inf"))  # an anchor is never its own candidate
        log_prob = logits - torch.logsumexp(logits, dim=2, keepdim=True)
        log_prob = log_prob.masked_fill(eye, 0.0)
        per_anchor = -(log_prob * positive).sum(2) / counts  # (P, B)
        return per_anchor.mean()


def compute_losses(
    terms: Sequence[LossTerm],
    features: Mapping[str, Tensor],
    labels: Tensor,
    gathered: Mapping[str, Tensor] | None = None,
    gathered_labels: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted sum of a model's loss terms, each on the output it names.

    Args:
        terms: the model's :attr:`ModelSpec.losses`.
        features: the model's named outputs for the local batch (``ModelOutput.features``).
        labels: (B,) local labels.
        gathered: per output of a pairwise term (triplet, SupCon), (B_global, ...) features gathered
            across ranks (the local slice carrying gradient); None = ``features``.
        gathered_labels: (B_global,) labels matching ``gathered``.
    Returns:
        total loss (scalar) and detached named terms for logging, per term ``<kind>/<output prefix>``
        (or the term's ``name``), plus ``triplet_nonzero/..`` (fraction of violating triples or
        anchors), ``accuracy/..`` for CE, and ``total``.
    Raises:
        KeyError: a term names an output the model does not produce.
    """
    if (gathered is None) != (gathered_labels is None):
        raise ValueError("pass gathered and gathered_labels together")
    total = torch.zeros((), device=labels.device)
    logs: dict[str, Tensor] = {}
    for term in terms:
        if term.output not in features:
            raise KeyError(f"loss term {term.log_name!r} needs output {term.output!r}; the model gives "
                           f"{sorted(features)}")
        name = term.log_name
        if term.pairwise:
            x = features[term.output] if gathered is None else gathered[term.output]
            y = labels if gathered_labels is None else gathered_labels
            value, extra = _pairwise(term, x, y)
            logs.update({f"{key}/{name.split('/', 1)[-1]}": v for key, v in extra.items()})
        elif term.kind == "ce":
            logits = features[term.output]
            value = cross_entropy_loss(logits, labels, term.scale, term.smoothing)
            suffix = name.split("/", 1)[-1]
            logs[f"accuracy/{suffix}"] = (logits.detach().argmax(1) == labels.unsqueeze(1)).float().mean()
        else:
            raise ValueError(f"unknown loss kind {term.kind!r}")
        total = total + term.weight * value
        logs[name] = value.detach()
    logs["total"] = total.detach()
    return total, logs


def _pairwise(term: LossTerm, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Any]]:
    if term.kind == "supcon":
        return supcon_loss(x, y, term.temperature, term.similarity), {}
    if term.mining == "hard":
        strip_loss, count = triplet_hard_terms(x, y, term.margin)
        anchors = (y.unsqueeze(0) != y.unsqueeze(1)).any(1).sum().clamp_min(1)
        return strip_loss.mean(), {"triplet_nonzero": (count.float().mean() / anchors).detach()}
    strip_loss, count = triplet_terms(x, y, term.margin)
    b = len(y)
    same = (y.unsqueeze(0) == y.unsqueeze(1)).sum(1)
    triples = (same * (b - same)).sum().clamp_min(1)
    return strip_loss.mean(), {"triplet_nonzero": (count.float().mean() / triples).detach()}


def gait_loss(
    output: GaitOutput,
    labels: Tensor,
    cfg: Any,
    *,
    triplet_embeddings: dict[str, Tensor] | None = None,
    triplet_labels: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted sum of the six GaitHeat terms: triplet + CE on the part, global and fusion branches.

    A wrapper over :func:`compute_losses` with GaitHeat's terms (``cfg.spec().losses``).

    Args:
        output: the model's output for the local batch.
        labels: (B,) local labels.
        cfg: a :class:`~gaitheat.models.gaitheat.GaitHeatConfig` (margin, scale, smoothing and
            per-branch weights ``triplet_weights``/``ce_weights`` in the order part, global, fusion).
        triplet_embeddings: per branch, (B_global, D, P) embeddings gathered across ranks (the local
            slice carrying gradient); None = ``output.embeddings``.
        triplet_labels: (B_global,) labels matching ``triplet_embeddings``.
    Returns:
        total loss (scalar) and detached named terms for logging: ``triplet/<branch>``, ``ce/<branch>``,
        ``triplet_nonzero/<branch>`` (fraction of violating triples) and ``accuracy/<branch>``.
    """
    if (triplet_embeddings is None) != (triplet_labels is None):
        raise ValueError("pass triplet_embeddings and triplet_labels together")
    gathered = None if triplet_embeddings is None else {
        f"{name}/embeddings": emb for name, emb in triplet_embeddings.items()}
    return compute_losses(cfg.spec().losses, output.features, labels, gathered, triplet_labels)
