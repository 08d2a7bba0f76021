"""Our restructured GaitHeat computes the released forward's function; inference rewrites are exact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import gaussian_heatmaps

from gaitheat.experiment import ModelConfig
from gaitheat.models import GaitHeat, build_model
from gaitheat.models.inference import fold_batchnorm, optimise_for_inference
from gaitheat.models.reference import official_forward
from gaitheat.transforms import normalise_sequence

CFG = ModelConfig(widths=(8, 16, 32, 64), embed_dim=16, align_mode="two_pass")


@pytest.fixture(scope="module")
def trained() -> tuple[GaitHeat, torch.Tensor]:
    """A tiny model whose BatchNorm running statistics moved away from the defaults, and a batch."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.stack([normalise_sequence(gaussian_heatmaps(3, rng)) for _ in range(2)]))
    torch.manual_seed(0)
    model = build_model(CFG, num_classes=5).train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    return model.eval(), x


def test_matches_the_official_dataflow(trained: tuple[GaitHeat, torch.Tensor]) -> None:
    model, x = trained
    with torch.no_grad():
        ref, ours = official_forward(model, x), model(x)
    for branch in ref.embeddings:
        assert torch.allclose(ours.embeddings[branch], ref.embeddings[branch], atol=1e-5)
        assert torch.allclose(ours.logits[branch], ref.logits[branch], atol=1e-5)
    assert torch.allclose(ours.embedding, ref.embedding, atol=1e-5)


def test_matches_the_official_dataflow_in_training() -> None:
    """Same loss inputs in training mode (batch statistics, random PGHA skip from the same RNG state)."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(np.stack([normalise_sequence(gaussian_heatmaps(2, rng)) for _ in range(3)]))
    model = build_model(CFG, num_classes=5).train()
    torch.manual_seed(3)
    ref = official_forward(model, x)
    torch.manual_seed(3)
    ours = model(x)
    for branch in ref.embeddings:
        assert torch.allclose(ours.embeddings[branch], ref.embeddings[branch], atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_optimised_copy_embeds_the_same(trained: tuple[GaitHeat, torch.Tensor], channels_last: bool) -> None:
    model, x = trained
    fast = optimise_for_inference(model, channels_last=channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original untouched
    with torch.inference_mode():
        assert torch.allclose(fast.embed(x), model.embed(x), atol=1e-5)


def test_fold_batchnorm_refuses_training_mode() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(build_model(dataclasses.replace(CFG, widths=(4, 8, 16, 32)), num_classes=3).train())
