"""Losses against hand-computed values on tiny inputs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gaitheat.experiment import GaitHeatConfig
from gaitheat.losses import cross_entropy_loss, gait_loss, pairwise_distances, triplet_loss, triplet_terms
from gaitheat.models import GaitOutput

LABELS = torch.tensor([0, 0, 1, 1])
# four 1-D embeddings in one strip: (B, D, P) = (4, 1, 1)
POINTS = torch.tensor([0.0, 0.1, 0.25, 1.0]).view(4, 1, 1)


def test_triplet_batch_all_by_hand() -> None:
    # distances: d01 .1, d02 .25, d03 1, d12 .15, d13 .9, d23 .75; margin .2.
    # Violating triples (anchor, positive, negative) -> relu(d_ap - d_an + .2):
    #   (0,1,2) .05  (1,1,2) .05  (1,0,2) .15  (2,2,1) .05  (2,3,0) .7  (2,3,1) .8  (3,2,1) .05
    # the anchor counts as its own positive (official), so 7 non-zero triples summing to 1.85
    loss, count = triplet_terms(POINTS, LABELS, 0.2)
    assert count.tolist() == [7]
    assert float(loss[0]) == pytest.approx(1.85 / 7, abs=1e-6)
    # textbook form (anchor excluded): (0,1,2) (1,0,2) (2,3,0) (2,3,1) (3,2,1) -> 1.75 / 5
    assert float(triplet_loss(POINTS, LABELS, 0.2, include_self=False)) == pytest.approx(0.35, abs=1e-6)


def test_triplet_averages_strips() -> None:
    # strip 2 collapses every sequence to one point: all 4 * 2 * 2 = 16 triples give exactly the margin
    x = torch.cat([POINTS, torch.zeros(4, 1, 1)], dim=2)
    assert float(triplet_loss(x, LABELS, 0.2)) == pytest.approx((1.85 / 7 + 0.2) / 2, abs=1e-6)


def test_triplet_is_zero_without_violations_or_negatives() -> None:
    far = torch.tensor([0.0, 0.0, 5.0, 5.0]).view(4, 1, 1)
    assert float(triplet_loss(far, LABELS, 0.2)) == 0.0
    assert float(triplet_loss(POINTS, torch.zeros(4, dtype=torch.long), 0.2)) == 0.0


def test_triplet_gradient_is_finite_for_duplicate_sequences() -> None:
    # K sequences drawn with replacement can be identical: zero distance off the diagonal
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.5, 2.0], [3.0, 1.0]]).view(4, 2, 1).requires_grad_()
    triplet_loss(x, LABELS, 0.2).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    d = pairwise_distances(x.detach().permute(2, 0, 1))
    assert float(d[0, 0, 1]) == 0.0 and float(d[0, 0, 3]) == pytest.approx(math.sqrt(4 + 1), rel=1e-6)


def test_cross_entropy_by_hand() -> None:
    # one strip, cosines (.5, -.5), label 0, scale 16, eps .1: z = (8, -8)
    # -log p0 = log(1 + e^-16), -log p1 = 16 + log(1 + e^-16)
    # loss = .9 * (-log p0) + .1 * mean(-log p0, -log p1)
    l0 = math.log1p(math.exp(-16))
    expected = 0.9 * l0 + 0.05 * (l0 + 16 + l0)
    logits = torch.tensor([0.5, -0.5]).view(1, 2, 1)
    assert float(cross_entropy_loss(logits, torch.tensor([0]), 16.0, 0.1)) == pytest.approx(expected, rel=1e-6)
    # two strips and a second sample: the mean over batch and strips
    logits2 = torch.tensor([[[0.5, 0.0], [-0.5, 0.0]], [[0.5, 0.5], [-0.5, -0.5]]])  # (2, 2, 2)
    uniform = math.log(2)  # strip with equal cosines: every class -log p = log 2, smoothing changes nothing
    wrong = 0.9 * (16 + l0) + 0.05 * (l0 + 16 + l0)  # label 1 against cosines (.5, -.5)
    got = cross_entropy_loss(logits2, torch.tensor([0, 1]), 16.0, 0.1)
    assert float(got) == pytest.approx((expected + uniform + wrong + wrong) / 4, rel=1e-6)


def fake_output(seed: int = 0, b: int = 4, k: int = 3) -> GaitOutput:
    g = torch.Generator().manual_seed(seed)
    emb = {n: torch.randn(b, 5, 2, generator=g) for n in ("part", "global", "fusion")}
    logits = {n: torch.rand(b, k, 2, generator=g) * 2 - 1 for n in emb}
    return GaitOutput(embeddings=emb, logits=logits, embedding=emb["fusion"])


def test_gait_loss_is_the_weighted_sum_of_its_terms() -> None:
    out = fake_output()
    cfg = dataclasses.replace(GaitHeatConfig(), triplet_weights=(1.0, 0.5, 0.0), ce_weights=(0.0, 2.0, 1.0))
    total, terms = gait_loss(out, LABELS, cfg)
    expected = sum(
        wt * float(triplet_loss(out.embeddings[n], LABELS, 0.2))
        + wc * float(cross_entropy_loss(out.logits[n], LABELS, 16.0, 0.1))
        for n, wt, wc in zip(("part", "global", "fusion"), cfg.triplet_weights, cfg.ce_weights, strict=True)
    )
    assert float(total) == pytest.approx(expected, rel=1e-6)
    assert float(terms["total"]) == pytest.approx(expected, rel=1e-6)
    assert 0.0 <= float(terms["triplet_nonzero/part"]) <= 1.0
    assert not any(t.requires_grad for t in terms.values())


def test_gait_loss_uses_gathered_embeddings_for_the_triplet_only() -> None:
    local, other = fake_output(0), fake_output(1)
    cfg = GaitHeatConfig()
    gathered = {n: torch.cat([local.embeddings[n], other.embeddings[n]]) for n in local.embeddings}
    labels_all = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    _, terms = gait_loss(local, LABELS, cfg, triplet_embeddings=gathered, triplet_labels=labels_all)
    assert float(terms["triplet/part"]) == pytest.approx(float(triplet_loss(gathered["part"], labels_all)), rel=1e-6)
    assert float(terms["ce/part"]) == pytest.approx(float(cross_entropy_loss(local.logits["part"], LABELS)), rel=1e-6)
    with pytest.raises(ValueError, match="together"):
        gait_loss(local, LABELS, cfg, triplet_embeddings=gathered)
