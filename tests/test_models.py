"""GaitHeat network: shapes, gradients, parameter counts, padding and determinism, on tiny widths."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import gaussian_heatmaps

from gaitheat.experiment import ModelConfig
from gaitheat.losses import gait_loss
from gaitheat.models import MODELS, GaitHeat, GaitOutput, build_model
from gaitheat.transforms import normalise_sequence

TINY = ModelConfig(widths=(4, 8, 16, 32), embed_dim=8)
B, T, K = 4, 4, 3


def batch(b: int = B, t: int = T, seed: int = 0) -> torch.Tensor:
    """(b, t, 17, 64, 48) realistic heatmaps, normalised per sequence."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([normalise_sequence(gaussian_heatmaps(t, rng)) for _ in range(b)]))


@pytest.fixture(scope="module")
def heatmaps() -> torch.Tensor:
    return batch()


# GaitHeat's registered names (the other models are walked by tests/test_model_zoo.py)
GAITHEAT_NAMES = [n for n in sorted(MODELS) if MODELS[n] == MODELS["gaitheat"]]


@pytest.mark.parametrize("name", GAITHEAT_NAMES)
def test_forward_backward_shapes_and_finite_gradients(name: str, heatmaps: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(TINY, name=name), num_classes=K)
    model.train()
    out = model(heatmaps)
    assert isinstance(out, GaitOutput)
    assert set(out.embeddings) == set(out.logits) == {"part", "global", "fusion"}
    for branch in out.embeddings:
        assert out.embeddings[branch].shape == (B, 8, 16)
        assert out.logits[branch].shape == (B, K, 16)
        assert float(out.logits[branch].detach().abs().max()) <= 1 + 1e-5  # cosines
    assert out.embedding.shape == (B, 8, 16)
    loss, _ = gait_loss(out, torch.tensor([0, 0, 1, 1]), ModelConfig())
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert float(p.grad.abs().sum()) > 0, f"{pname} has an all-zero gradient"


def test_full_width_parameter_count() -> None:
    model = build_model(ModelConfig(), num_classes=74)
    assert sum(p.numel() for p in model.parameters()) == 16_944_576
    # spec §3.7: shared trunk 4,896,960; fusion copies of stages 2-4 4,822,272
    assert sum(p.numel() for p in model.stages.parameters()) == 4_896_960
    assert model.fusion_stages is not None
    assert sum(p.numel() for p in model.fusion_stages.parameters()) == 4_822_272
    without = build_model(dataclasses.replace(ModelConfig(), fusion=False), num_classes=74)
    assert sum(p.numel() for p in without.parameters()) == 16_944_576 - 4_822_272


def test_initialisation_matches_the_official_scale() -> None:
    model = build_model(TINY, num_classes=K)
    fc = model.heads["fusion"].fc.weight.detach()  # (P, C, D) = (16, 32, 8): bound sqrt(6 / (32*8 + 16*8))
    bound = (6 / (32 * 8 + 16 * 8)) ** 0.5
    assert float(fc.abs().max()) <= bound and float(fc.abs().max()) > 0.8 * bound
    bn = model.stages[0].bn
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_eval_is_deterministic_and_embed_matches_forward(heatmaps: torch.Tensor) -> None:
    model = build_model(TINY, num_classes=K).eval()
    with torch.inference_mode():
        first, again = model.embed(heatmaps), model.embed(heatmaps)
        full = model(heatmaps).embedding
    assert torch.equal(first, again)
    assert torch.allclose(first, full, atol=1e-6)
    assert torch.allclose(first.norm(dim=1), torch.ones(B, 16), atol=1e-5)  # unit strips


def test_retrieval_before_the_bnneck() -> None:
    """``retrieval: embedding`` gives the fusion branch's pre-BNNeck embedding (what the triplet loss
    shapes), unit-normalised per strip, from embed, forward and the chunked path alike."""
    x = batch()
    bnneck = build_model(TINY, num_classes=K).eval()
    bn = bnneck.heads["fusion"].neck.bn
    bn.running_mean.uniform_(-0.5, 0.5)  # trained-like statistics (fresh ones make BN the identity)
    bn.running_var.uniform_(0.5, 2.0)
    plain = build_model(dataclasses.replace(TINY, retrieval="embedding"), num_classes=K).eval()
    plain.load_state_dict(bnneck.state_dict())  # same parameters: the option adds none
    with torch.inference_mode():
        out = plain(x)
        expected = torch.nn.functional.normalize(out.embeddings["fusion"], dim=1)
        got = plain.embed(x)
        assert torch.allclose(got, expected, atol=1e-6)
        assert torch.allclose(out.embedding, expected, atol=1e-6)
        assert torch.allclose(plain.embed(x, chunk_frames=3), got, atol=1e-6)
        assert not torch.allclose(bnneck.embed(x), got, atol=1e-3)  # the BNNeck does change the feature
        fast = plain.for_inference()
        assert torch.allclose(fast.embed(x), got, atol=1e-5)
    with pytest.raises(ValueError, match="retrieval"):
        GaitHeat(K, widths=(4, 8, 16, 32), embed_dim=8, retrieval="bn")  # type: ignore[arg-type]


def test_padded_batch_equals_separate_sequences() -> None:
    model = build_model(TINY, num_classes=K).eval()
    lengths = torch.tensor([4, 2, 3, 1])
    padded = batch()
    for i, n in enumerate(lengths.tolist()):
        padded[i, n:] = 0
    with torch.inference_mode():
        together = model.embed(padded, lengths)
        alone = torch.cat([model.embed(padded[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())])
    assert torch.allclose(together, alone, atol=1e-5)


def test_padding_never_reaches_batchnorm_in_training() -> None:
    """Packing drops padded frames before the CNN, so padding does not change the loss in training."""
    lengths = torch.tensor([4, 2, 3, 1])
    clean = batch()
    noisy = clean.clone()
    for i, n in enumerate(lengths.tolist()):
        clean[i, n:] = 0
        noisy[i, n:] = torch.rand_like(noisy[i, n:])
    losses = []
    for x in (clean, noisy):
        torch.manual_seed(0)
        model = build_model(TINY, num_classes=K).train()
        losses.append(gait_loss(model(x, lengths), torch.tensor([0, 0, 1, 1]), ModelConfig())[0])
    assert torch.allclose(losses[0], losses[1])


def test_given_keypoints_replace_the_argmax() -> None:
    model = build_model(TINY, num_classes=K).eval()
    x = batch(2, 3)
    upright = torch.zeros(2, 3, 17, 3)
    upright[..., 5:7, :2] = torch.tensor([24.0, 16.0])  # neck already on target,
    upright[..., 11:13, :2] = torch.tensor([24.0, 36.0])  # spine vertical: no warp at eval
    with torch.inference_mode():
        with_kps = model.embed(x, keypoints=upright)
        no_align = GaitHeat(K, widths=(4, 8, 16, 32), embed_dim=8, align=False)
        no_align.load_state_dict(model.state_dict())
        reference = no_align.eval().embed(x)
        from_argmax = model.embed(x)
    assert torch.allclose(with_kps, reference, atol=1e-6)
    assert not torch.allclose(from_argmax, reference, atol=1e-3)


def test_custom_groups_and_two_pass_alignment() -> None:
    cfg = dataclasses.replace(TINY, groups=((5, 6, 7, 8, 9, 10), (11, 12, 13, 14, 15, 16), (0, 1, 2, 3, 4)))
    model = build_model(dataclasses.replace(cfg, align_mode="two_pass"), num_classes=K).eval()
    assert model.num_streams == 4
    with torch.inference_mode():
        out = model(batch(2, 2))
    assert out.embedding.shape == (2, 8, 16)


def test_training_alignment_uses_the_given_generator() -> None:
    model = build_model(TINY, num_classes=K).train()
    x = batch(2, 2)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)  # BatchNorm batch statistics are deterministic; only PGHA draws
        runs.append(model(x, generator=torch.Generator().manual_seed(7)).embeddings["fusion"])
    assert torch.equal(runs[0], runs[1])


def test_bad_inputs_raise_clear_errors() -> None:
    model = build_model(TINY, num_classes=K).eval()
    with pytest.raises(ValueError, match=r"\(B, T, 17, H, W\)"):
        model(torch.zeros(2, 17, 64, 48))
    with pytest.raises(ValueError, match="lengths"):
        model(batch(2, 2), torch.tensor([3, 1]))
    with pytest.raises(ValueError, match="strips"):
        model(torch.zeros(1, 1, 17, 60, 48))
    with pytest.raises(ValueError, match="outside"):
        GaitHeat(K, groups=((0, 17),))
    with pytest.raises(KeyError, match="registered models"):
        build_model(dataclasses.replace(TINY, name="gaitset"), num_classes=K)


def test_bf16_autocast_forward_on_cpu() -> None:
    model = build_model(TINY, num_classes=K).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch(2, 2))
    loss, _ = gait_loss(out, torch.tensor([0, 1]), ModelConfig())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_autocast_training_and_eval() -> None:
    model = build_model(TINY, num_classes=K).cuda().train()
    x = batch(2, 3).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        out = model(x, torch.tensor([3, 2], device="cuda"))
    loss, _ = gait_loss(out, torch.tensor([0, 1], device="cuda"), ModelConfig())
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    with torch.inference_mode():
        gpu = model.embed(x).cpu()
        cpu = model.cpu().embed(x.cpu())
    assert torch.allclose(gpu, cpu, atol=1e-4)


@pytest.mark.parametrize("lengths", [None, [4, 2, 3, 1]])
def test_chunked_embedding_equals_one_pass(lengths: list[int] | None) -> None:
    model = build_model(TINY, num_classes=K).eval()
    x = batch()
    lens = None if lengths is None else torch.tensor(lengths)
    with torch.inference_mode():
        whole = model.embed(x, lens, chunk_frames=1000)
        for chunk in (1, 3, 5):
            assert torch.allclose(model.embed(x, lens, chunk_frames=chunk), whole, atol=1e-6)
