"""Each baseline's loss terms on a tiny batch of its own outputs equal the same losses computed by hand.

The hand versions below are plain loops over anchors (numpy, float64), written from the released
definitions: SupCon as in FastPoseGait's ``SupConLoss_Re`` (GaitGraph; dot products of unit
embeddings) and pytorch-metric-learning's ``SupConLoss`` with ``LpDistance`` (GaitGraph2), the
batch-hard triplet of FastPoseGait (GaitTR, GPGait), OpenGait's batch-all triplet (GaitBase,
SkeletonGait) and the scaled, optionally smoothed cross-entropy over strips.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_model_zoo import build, tiny_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LABELS = np.array([0, 0, 1, 1, 2, 0, 2])  # every label twice: SupCon needs positives


def supcon_by_hand(f: np.ndarray, labels: np.ndarray, tau: float, lp: bool, scale: float) -> float:
    """Mean over anchors that have a positive of -scale * mean_p log softmax_{j != i}(sim_ij / tau)[p]."""
    n = len(f)
    if lp:
        u = f / np.linalg.norm(f, axis=1, keepdims=True)
        sim = -np.linalg.norm(u[:, None] - u[None], axis=-1)
    else:
        sim = f @ f.T
    losses = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        positives = [j for j in others if labels[j] == labels[i]]
        if not positives:
            continue
        top = max(sim[i, j] / tau for j in others)
        lse = top + math.log(sum(math.exp(sim[i, j] / tau - top) for j in others))
        losses.append(-scale * sum(sim[i, p] / tau - lse for p in positives) / len(positives))
    return float(np.mean(losses))


def triplet_by_hand(emb: np.ndarray, labels: np.ndarray, margin: float, hard: bool) -> float:
    """Per strip: batch-all (mean over non-zero triples, anchor counted among its positives) or
    batch-hard (per anchor farthest positive vs nearest negative, mean over non-zero); mean over strips."""
    n, _, p = emb.shape
    per_strip = []
    for s in range(p):
        x = emb[:, :, s]
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        terms = []
        for a in range(n):
            pos = [q for q in range(n) if labels[q] == labels[a]]
            neg = [q for q in range(n) if labels[q] != labels[a]]
            if hard:
                terms.append(max(0.0, max(d[a, pos]) - min(d[a, neg]) + margin))
            else:
                terms += [max(0.0, d[a, q] - d[a, m] + margin) for q in pos for m in neg]
        nonzero = [t for t in terms if t > 0]
        per_strip.append(sum(nonzero) / len(nonzero) if nonzero else 0.0)
    return float(np.mean(per_strip))


def ce_by_hand(logits: np.ndarray, labels: np.ndarray, scale: float, smoothing: float) -> float:
    """Mean over samples and strips of (1 - eps) NLL + eps * mean_c(-log p_c) of softmax(scale * logits)."""
    n, _, p = logits.shape
    total = 0.0
    for i in range(n):
        for s in range(p):
            z = scale * logits[i, :, s]
            logp = z - (z.max() + math.log(np.exp(z - z.max()).sum()))
            total += (1 - smoothing) * -logp[labels[i]] + smoothing * -logp.mean()
    return total / (n * p)


def _outputs(name: str) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    model = build(name).train()
    (key, kind), *_ = model.config.spec().inputs.items()
    with torch.no_grad():
        out = model(**{key: tiny_inputs(kind, len(LABELS), 12, seed=3)})
    return out.features, model


def _compute(terms: tuple, features: dict[str, torch.Tensor]) -> dict[str, float]:
    from gaitheat.losses import compute_losses

    labels = torch.from_numpy(LABELS)
    total, parts = compute_losses(terms, features, labels)
    return {k: float(v) for k, v in parts.items()} | {"total": float(total)}


def _by_hand(term: object, features: dict[str, torch.Tensor]) -> float:
    x = features[term.output].double().numpy()  # type: ignore[attr-defined]
    kind = term.kind  # type: ignore[attr-defined]
    if kind == "supcon":
        # SupConLoss_Re's temperature / 0.07 factor is the term's weight (GaitGraph)
        lp = getattr(term, "similarity", "cos") == "l2"
        return supcon_by_hand(x[:, :, 0], LABELS, term.temperature, lp, 1.0)  # type: ignore[attr-defined]
    if kind == "triplet":
        return triplet_by_hand(x, LABELS, term.margin, term.mining == "hard")  # type: ignore[attr-defined]
    return ce_by_hand(x, LABELS, term.scale, term.smoothing)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["gaitgraph", "gaitgraph2", "gaittr", "gpgait", "skeletongait", "gaitbase"])
def test_loss_terms_match_hand_computed(name: str) -> None:
    features, model = _outputs(name)
    terms = model.config.spec().losses
    computed = _compute(terms, features)
    expected = [t.weight * _by_hand(t, features) for t in terms]
    assert computed["total"] == pytest.approx(sum(expected), rel=1e-4, abs=1e-6)
    assert sum(expected) > 0
