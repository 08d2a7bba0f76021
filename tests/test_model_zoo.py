"""The paper's baseline models: build, forward/backward, released parameter counts, spec, padding, features."""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest
import torch

from gaitheat.models import MODELS
from gaitheat.models.gaitheat import GaitHeatConfig
from gaitheat.models.spec import ModelConfig

ZOO = dict(MODELS)  # every registered model, GaitHeat included
# parameter counts of the released models built from their configs (issue 13; FastPoseGait / OpenGait)
RELEASED = {
    "gaitheat": (74, 16_944_576),  # spec §3.7 (FastPoseGait configs/gaitheat/gaitheat.yaml)
    "gaitgraph": (74, 319_530),  # configs/gaitgraph1/gaitgraph1_phase1.yaml
    "gaitgraph2": (74, 350_822),  # configs/gaitgraph2/gaitgraph2.yaml
    "gaittr": (74, 512_010),  # configs/gaittr/gaittr.yaml
    "gpgait": (74, 3_654_810),  # configs/gpgait/gpgait.yaml (num_class 74)
    "skeletongait": (100, 8_446_464),  # OpenGait configs/skeletongait/skeletongait_CCPG.yaml (class_num 100)
    "gaitbase": (74, 7_305_408),  # OpenGait configs/gaitbase/gaitbase_da_casiab.yaml (class_num 74)
}
K = 3  # classes of the tiny models
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny ops: a second thread only spins


def model_class(name: str) -> type:
    module, cls = ZOO[name].split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def tiny_config(name: str) -> ModelConfig:
    cls = model_class(name)
    if name == "gaitheat":  # GaitHeat's own tests use this size
        return GaitHeatConfig(widths=(4, 8, 16, 32), embed_dim=8, parts=4)
    return cls.Config.tiny()  # type: ignore[attr-defined,no-any-return]


def tiny_inputs(kind: str, b: int, t: int, seed: int = 0) -> torch.Tensor:
    """Realistic-enough inputs of each kind: (b, t, *frame shape)."""
    rng = np.random.default_rng(seed)
    if kind == "keypoints":
        base = rng.uniform((14, 8), (34, 56), size=(b, 1, 17, 2))  # x in 14..34, y in 8..56 (crop heatmap px)
        walk = base + rng.normal(0, 1.0, size=(b, t, 17, 2))
        score = rng.uniform(0.3, 1.0, size=(b, t, 17, 1))
        return torch.from_numpy(np.concatenate([walk, score], -1).astype(np.float32))
    if kind in ("heatmaps", "regen_heatmaps"):
        return torch.from_numpy(rng.random((b, t, 17, 64, 48)).astype(np.float32))
    if kind == "silhouettes":
        return torch.from_numpy((rng.random((b, t, 64, 44)) > 0.5).astype(np.float32))
    if kind == "skeleton_maps":
        return torch.from_numpy(rng.random((b, t, 2, 64, 64)).astype(np.float32))
    raise AssertionError(kind)


def build(name: str, cfg: ModelConfig | None = None, classes: int = K) -> torch.nn.Module:
    cls = model_class(name)
    torch.manual_seed(0)
    return cls.from_config(cfg if cfg is not None else tiny_config(name), classes)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_forward_backward_finite_gradients(name: str) -> None:
    model = build(name)
    spec = model.config.spec()
    (key, kind), *_ = spec.inputs.items()
    labels = torch.tensor([0, 0, 1, 2])
    model.train()
    out = model(**{key: tiny_inputs(kind, 4, 12)})
    for term in spec.losses:
        assert term.output in out.features, f"{name}: loss reads missing output {term.output!r}"
    assert out.embedding.dim() == 3 and out.embedding.shape[0] == 4
    # a loss touching every output: a squared norm and, where there are logits, a cross-entropy
    loss = sum(f.float().pow(2).mean() for f in out.features.values())
    if "logits" in out.features:
        logits = out.features["logits"]
        assert logits.shape[:2] == (4, K)
        loss = loss + torch.nn.functional.cross_entropy(16 * logits, labels[:, None].expand(-1, logits.shape[2]))
    loss.backward()  # type: ignore[union-attr]
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", sorted(ZOO))
def test_released_parameter_count(name: str) -> None:
    classes, expected = RELEASED[name]
    cls = model_class(name)
    with torch.device("meta"):  # counting needs shapes only
        model = cls.from_config(cls.Config(), classes)
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("name", sorted(ZOO))
def test_spec_matches_forward_signature(name: str) -> None:
    cls = model_class(name)
    spec = cls.Config().spec()
    by_name = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for method in (cls.forward, cls.embed):
        params = inspect.signature(method).parameters
        keywords = {p for p, v in params.items() if v.kind in by_name}
        assert set(spec.inputs) | {"lengths"} <= keywords, f"{name}.{method.__name__}: {keywords} vs {spec.inputs}"
    assert spec.distance in ("euc", "cos")


@pytest.mark.parametrize("name", sorted(ZOO))
def test_padded_batch_equals_separate_sequences(name: str) -> None:
    model = build(name).eval()
    (key, kind), *_ = model.config.spec().inputs.items()
    x = tiny_inputs(kind, 2, 10, seed=1)
    x[1, 7:] = 0  # sequence 1 has 7 frames, zero-padded
    with torch.inference_mode():
        batched = model.embed(**{key: x}, lengths=torch.tensor([10, 7]))
        first = model.embed(**{key: x[:1]})
        second = model.embed(**{key: x[1:, :7]})
    torch.testing.assert_close(batched, torch.cat([first, second]), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("name", [n for n in sorted(ZOO) if model_class(n).Config().spec().augment is not None])
def test_augment_is_a_pure_function_of_rng(name: str) -> None:
    spec = model_class(name).Config().spec()
    assert spec.augment is not None
    (key, kind), *_ = spec.inputs.items()
    x = tiny_inputs(kind, 1, 8, seed=2)[0].numpy()
    runs = []
    for seed in (5, 5, *range(6, 30)):
        out = spec.augment({key: x.copy()}, np.random.default_rng(seed))
        assert out[key].shape == x.shape and out[key].dtype == np.float32
        runs.append(out[key])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert any(not np.array_equal(runs[0], r) for r in runs[2:])
