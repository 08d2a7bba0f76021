"""gaitheat against the released FastPoseGait GaitHeat code itself (tests/data/golden, see its README).

The fixture holds outputs of the released code, run in fp32: its network at 1/8 width with its
``state_dict`` and every head in training-mode and eval-mode BatchNorm, and its ``RotationMat``
matrices with the two ``grid_sample`` passes. A wrong block, stream, head, matrix or pixel convention
fails here even where gaitheat agrees with itself (tests/test_models_reference.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from gaitheat.models import GaitHeat, GaitOutput
from gaitheat.models.align import align_heatmaps, alignment_thetas
from gaitheat.models.reference import official_alignment, official_forward
from gaitheat.released import RELEASED_GROUPS, convert_state_dict, infer_architecture

GOLDEN = Path(__file__).parent / "data" / "golden" / "fastposegait_gaitheat_golden.npz"
EVAL_ATOL = 1e-5  # the fixture README: a faithful re-implementation is within 1e-5 with running statistics
TRAIN_ATOL = 1e-3  # batch statistics over 2 sequences amplify rounding (README: up to ~4e-4 between correct ones)
HEADS = ("part_triplet", "global_triplet", "fusion_triplet", "part_softmax", "global_softmax", "fusion_softmax",
         "inference")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


def released_state(golden: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k[len("param/"):]: torch.from_numpy(v) for k, v in golden.items() if k.startswith("param/")}


def golden_model(golden: dict[str, np.ndarray], training: bool) -> GaitHeat:
    """The released network as gaitheat builds it, with the golden weights loaded afresh.

    A training-mode pass moves BatchNorm running statistics, so every mode gets its own fresh copy.
    The golden run used identity alignment matrices, so alignment is off (tested on its own below).
    """
    state = released_state(golden)
    arch = infer_architecture(state, "golden")
    model = GaitHeat(arch.num_classes, widths=arch.widths, parts=arch.parts, embed_dim=arch.embed_dim,
                     groups=RELEASED_GROUPS, align=False)
    model.load_state_dict(convert_state_dict(state, model.state_dict(), "golden"))
    return model.train(training)


def heads(out: GaitOutput) -> dict[str, torch.Tensor]:
    """A model output in the release's head names."""
    named = {f"{b}_triplet": out.embeddings[b] for b in ("part", "global", "fusion")}
    named.update({f"{b}_softmax": out.logits[b] for b in ("part", "global", "fusion")})
    named["inference"] = out.embedding
    return named


FORWARDS: dict[str, Callable[[GaitHeat, torch.Tensor], GaitOutput]] = {
    "gaitheat": lambda model, x: model(heatmaps=x),
    "reference": lambda model, x: official_forward(model, x),
}


def max_differences(golden: dict[str, np.ndarray], forward: str, mode: str) -> dict[str, float]:
    """Largest absolute difference per head between gaitheat (or the reference) and the release."""
    model = golden_model(golden, training=mode == "train")
    x = torch.from_numpy(golden["net_input_u8"]).float() / 255
    with torch.no_grad():
        out = heads(FORWARDS[forward](model, x))
    return {h: float((out[h] - torch.from_numpy(golden[f"out/{mode}/{h}"])).abs().max()) for h in HEADS}


def test_infers_the_golden_architecture(golden: dict[str, np.ndarray]) -> None:
    arch = infer_architecture(released_state(golden), "golden")
    assert (arch.widths, arch.parts, arch.embed_dim, arch.num_classes) == ((8, 16, 32, 64), 16, 32, 5)


@pytest.mark.parametrize("forward", sorted(FORWARDS))
@pytest.mark.parametrize(("mode", "atol"), [("eval", EVAL_ATOL), ("train", TRAIN_ATOL)])
def test_every_head_matches_the_released_network(golden: dict[str, np.ndarray], forward: str, mode: str,
                                                 atol: float) -> None:
    diffs = max_differences(golden, forward, mode)
    assert max(diffs.values()) < atol, diffs


def test_eval_mode_after_a_training_pass_needs_fresh_statistics(golden: dict[str, np.ndarray]) -> None:
    """The trap the fixture warns about, shown to be real: the eval comparison would catch stale statistics."""
    model = golden_model(golden, training=True)
    x = torch.from_numpy(golden["net_input_u8"]).float() / 255
    with torch.no_grad():
        model(heatmaps=x)
        stale = model.eval()(heatmaps=x).embedding
    assert float((stale - torch.from_numpy(golden["out/eval/inference"])).abs().max()) > 100 * EVAL_ATOL


def test_channels_zero_and_one_are_the_released_parts(golden: dict[str, np.ndarray]) -> None:
    """The top/bottom joint groups are a different network: the golden test tells them apart."""
    state = released_state(golden)
    arch = infer_architecture(state, "golden")
    model = GaitHeat(arch.num_classes, widths=arch.widths, parts=arch.parts, embed_dim=arch.embed_dim, align=False)
    model.load_state_dict(convert_state_dict(state, model.state_dict(), "golden"))
    x = torch.from_numpy(golden["net_input_u8"]).float() / 255
    with torch.no_grad():
        part = model.eval()(heatmaps=x).embeddings["part"]
    assert float((part - torch.from_numpy(golden["out/eval/part_triplet"])).abs().max()) > 100 * EVAL_ATOL


def test_released_alignment_matrices(golden: dict[str, np.ndarray]) -> None:
    thetas = alignment_thetas(torch.from_numpy(golden["pgha_keypoints"]), (64, 48), pixels="edge")
    assert thetas.shape == (8, 2, 3, 2) and thetas.dtype == torch.float32
    np.testing.assert_allclose(thetas.numpy(), golden["pgha_matrices"], rtol=0, atol=1e-5)
    centre = alignment_thetas(torch.from_numpy(golden["pgha_keypoints"]), (64, 48))
    assert np.abs(centre.numpy() - golden["pgha_matrices"]).max() > 1e-3  # the default convention differs


@pytest.mark.parametrize("align", ["align_heatmaps", "official_alignment"])
def test_released_two_pass_alignment(golden: dict[str, np.ndarray], align: str) -> None:
    heat, kps = torch.from_numpy(golden["pgha_input"]), torch.from_numpy(golden["pgha_keypoints"])
    if align == "align_heatmaps":
        out = align_heatmaps(heat, kps, mode="two_pass", pixels="edge")
    else:
        out = official_alignment(heat, kps)
    np.testing.assert_allclose(out.numpy(), golden["pgha_output"], rtol=0, atol=1e-5)
    # neither the pixel-centre default nor the single composite warp is the release's arithmetic
    for kwargs in ({"mode": "two_pass"}, {"mode": "composite", "pixels": "edge"}):
        other = align_heatmaps(heat, kps, **kwargs)  # type: ignore[arg-type]
        assert float((other - torch.from_numpy(golden["pgha_output"])).abs().max()) > 1e-3, kwargs


def test_released_alignment_inside_the_model(golden: dict[str, np.ndarray]) -> None:
    """A model built like the release aligns as the release, given the keypoints."""
    heat, kps = torch.from_numpy(golden["pgha_input"]), torch.from_numpy(golden["pgha_keypoints"])
    torch.manual_seed(0)
    model = GaitHeat(5, widths=(4, 8, 16, 32), embed_dim=8, groups=RELEASED_GROUPS, align_mode="two_pass",
                     align_pixels="edge").eval()
    with torch.no_grad():
        aligned = model(heatmaps=heat[None], keypoints=kps[None]).embedding
        model.align = False
        expected = model(heatmaps=torch.from_numpy(golden["pgha_output"])[None]).embedding
        unaligned = model(heatmaps=heat[None]).embedding
    assert float((aligned - expected).abs().max()) < 1e-5
    assert float((unaligned - expected).abs().max()) > 1e-3


if __name__ == "__main__":  # the table of the largest differences, for the notes
    data = dict(np.load(GOLDEN))
    torch.set_num_threads(1)
    for fwd in sorted(FORWARDS):
        for m in ("eval", "train"):
            d = max_differences(data, fwd, m)
            print(f"{fwd:9s} {m:5s} " + " ".join(f"{h}={v:.2e}" for h, v in d.items()))
    kp = torch.from_numpy(data["pgha_keypoints"])
    print("pgha_matrices", float(np.abs(alignment_thetas(kp, pixels="edge").numpy() - data["pgha_matrices"]).max()))
    aligned = align_heatmaps(torch.from_numpy(data["pgha_input"]), kp, mode="two_pass", pixels="edge")
    print("pgha_output", float(np.abs(aligned.numpy() - data["pgha_output"]).max()))
