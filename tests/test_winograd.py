"""Winograd F(4x4, 3x3) convolutions compute the direct convolution, and run only where they should."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaitheat.experiment import ModelConfig
from gaitheat.models import build_model
from gaitheat.models import winograd as wg
from gaitheat.models.inference import optimise_for_inference


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.detach().double() - want.detach()).abs().max() / want.detach().abs().max())


@pytest.mark.parametrize("shape", [(2, 5, 7, 9, 11), (3, 16, 8, 8, 8), (1, 3, 4, 1, 1), (2, 12, 6, 16, 12)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_equals_the_direct_convolution(shape: tuple[int, ...], channels_last: bool) -> None:
    """Any map size (tiles cut at the border), with and without bias, either memory format: float64's answer."""
    n, c, co, h, w = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c, h, w, generator=gen)
    weight, bias = torch.randn(co, c, 3, 3, generator=gen), torch.randn(co, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    u = wg.transform_weight(weight)
    assert u.shape == (36, c, co)
    for b in (None, bias):
        want = F.conv2d(x.double(), weight.double(), None if b is None else b.double(), padding=1)
        got = wg.winograd_conv3x3(x, u, b)
        assert got.shape == (n, co, h, w) and got.dtype == torch.float32
        assert relative_error(got, want) < 2e-5


def test_chunks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """The transform-domain working set is cut into chunks of images; the cut changes nothing."""
    gen = torch.Generator().manual_seed(1)
    x, weight = torch.randn(7, 8, 12, 8, generator=gen), torch.randn(4, 8, 3, 3, generator=gen)
    u = wg.transform_weight(weight)
    whole = wg.winograd_conv3x3(x, u)
    monkeypatch.setattr(wg, "CHUNK_ELEMENTS", 36 * 6 * 8 * 2)  # 2 images per chunk: 4 chunks, the last short
    assert torch.equal(wg.winograd_conv3x3(x, u), whole)


def test_rejects_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match="3, 3"):
        wg.transform_weight(torch.zeros(4, 2, 5, 5))
    with pytest.raises(ValueError, match="input channels"):
        wg.winograd_conv3x3(torch.zeros(1, 3, 8, 8), wg.transform_weight(torch.zeros(4, 2, 3, 3)))
    with pytest.raises(ValueError, match="stride-1"):
        wg.WinogradConv2d(nn.Conv2d(4, 4, 3, stride=2, padding=1))


def test_falls_back_outside_float32_cpu_inference() -> None:
    """With autograd on (training) or under bf16 autocast the wrapped convolution runs, exactly."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1)
    wrapped = wg.WinogradConv2d(conv)
    x = torch.randn(2, 6, 8, 8)
    out = wrapped(x)  # grad enabled: the plain conv, differentiable
    assert out.grad_fn is not None and torch.equal(out, conv(x))
    assert wrapped._u is None  # nothing transformed yet
    with torch.inference_mode():
        fast = wrapped(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, low_direct = wrapped(x), conv(x)
    assert wrapped._u is not None
    assert not torch.equal(fast, conv(x).detach()) and relative_error(fast, F.conv2d(
        x.double(), conv.weight.double(), conv.bias.double(), padding=1)) < 2e-5  # Winograd ran
    assert low.dtype == torch.bfloat16 and torch.equal(low, low_direct)
    assert list(wrapped.state_dict()) == ["conv.weight", "conv.bias"]  # the transform is not a parameter


def test_wraps_the_full_width_convs_that_pay() -> None:
    """At full width: the stride-1 3x3 convs of stages 2-4 (128+ input channels) in the shared trunk and the
    fusion branch, 8 in all; stage 1's 64-channel convs, the stride-2 convs and the shortcuts stay direct."""
    model = build_model(ModelConfig(), num_classes=4).eval()
    fast = optimise_for_inference(model)
    wrapped = [name for name, m in fast.named_modules() if isinstance(m, wg.WinogradConv2d)]
    assert sorted(wrapped) == ["fusion_stages.0.conv2", "fusion_stages.1.conv2", "fusion_stages.2.conv1",
                               "fusion_stages.2.conv2", "stages.1.conv2", "stages.2.conv2", "stages.3.conv1",
                               "stages.3.conv2"]
    assert not any(isinstance(m, wg.WinogradConv2d) for m in optimise_for_inference(model, winograd=False).modules())


def test_whole_model_embeds_the_same() -> None:
    """A small GaitHeat with every eligible conv on Winograd embeds as the direct model does."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=(8, 16, 32, 64), embed_dim=16), num_classes=4).eval()
    direct = optimise_for_inference(model, winograd=False)
    fast = optimise_for_inference(model, winograd=False)
    assert wg.use_winograd(fast, min_channels=1) == 8 + 3  # + stage 1's stem and block convs
    x = torch.rand(2, 9, 17, 64, 48)
    with torch.inference_mode():
        want, got = direct.embed(x), fast.embed(x)
        maps = fast.frame_maps(x[0], None, branches=("fusion",))["fusion"]
        direct_maps = direct.frame_maps(x[0], None, branches=("fusion",))["fusion"]
    assert torch.allclose(got, want, atol=1e-5)
    assert relative_error(maps, direct_maps.double()) < 2e-5


@pytest.mark.parametrize("name", ["gaitbase", "skeletongait"])
def test_other_resnet_models_infer_the_same(name: str) -> None:
    """GaitBase and SkeletonGait at their released widths: ``for_inference`` is a Winograd copy (the model
    itself untouched) and embeds as the model does."""
    from gaitheat.compare import synthetic_inputs
    from gaitheat.models import config_class

    torch.manual_seed(0)
    model = build_model(config_class(name)(), num_classes=4).eval()
    fast = model.for_inference()
    assert fast is not model and not any(isinstance(m, wg.WinogradConv2d) for m in model.modules())
    assert sum(isinstance(m, wg.WinogradConv2d) for m in fast.modules()) >= 3
    x = synthetic_inputs(model.config.spec().inputs, 1, 3)
    with torch.inference_mode():
        want, got = model.embed(**x), fast.embed(**x)
    assert relative_error(got, want.double()) < 1e-4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_wrapped_convolution_runs() -> None:
    """On a GPU cuDNN runs the conv (it has its own Winograd); nothing is transformed or kept on the CPU."""
    torch.manual_seed(0)
    conv = nn.Conv2d(128, 64, 3, padding=1).cuda()
    wrapped = wg.WinogradConv2d(conv)
    x = torch.randn(2, 128, 16, 12, device="cuda")
    with torch.inference_mode():
        assert torch.equal(wrapped(x), conv(x))
    assert wrapped._u is None
