"""The models/inputs seam: every registered model against the spec contract, and a model with a new
input trained and evaluated by the unchanged trainer and evaluator.

``TinyKeypointNet`` below is a throwaway model registered from this test only (``MODELS`` patched):
it takes keypoints, samples consecutive windows and uses a cosine distance, none of which GaitHeat
does, so passing through ``train()`` and ``evaluate_checkpoint()`` shows that adding a model needs
no edit to ``train.py`` or ``evaluate.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import gaussian_heatmaps
from torch import Tensor, nn

from gaitheat.config import ConfigError, from_dict, load_config, to_dict
from gaitheat.datasets.sequences import (
    GaitDataset,
    centred_window_positions,
    collate,
    window_positions,
)
from gaitheat.experiment import ExperimentConfig, GaitHeatConfig, migrate_config
from gaitheat.inputs import INPUTS, load_inputs
from gaitheat.losses import compute_losses, supcon_loss
from gaitheat.manifest import load_manifest
from gaitheat.models import MODELS, ModelOutput, build_model, config_class
from gaitheat.models.spec import FramePolicy, LossTerm, ModelConfig, ModelSpec
from gaitheat.storage import HeatmapSequence, SequenceMeta, StoreError, sequence_path, write_sequence

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------- the registry


def synthetic_inputs(spec: ModelSpec, b: int, t: int, seed: int = 0) -> dict[str, Tensor]:
    """(b, t, *frame_shape) inputs of every kind the spec declares, shaped as the loaders give them."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, kind in spec.inputs.items():
        shape = INPUTS[kind].frame_shape
        if kind in ("heatmaps", "regen_heatmaps"):
            x = np.stack([gaussian_heatmaps(t, rng) for _ in range(b)])
            x = (x - x.min()) / (x.max() - x.min())
        elif kind == "keypoints":
            x = np.concatenate([rng.uniform(0, 48, (b, t, 17, 1)), rng.uniform(0, 64, (b, t, 17, 1)),
                                rng.uniform(0.5, 1.0, (b, t, 17, 1))], axis=-1)
        elif kind == "silhouettes":
            x = (rng.random((b, t, *shape)) > 0.5).astype(np.float32)
        else:
            x = rng.random((b, t, *shape))
        out[key] = torch.from_numpy(np.asarray(x, dtype=np.float32))
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registered_model_meets_the_spec_contract(name: str) -> None:
    cfg = config_class(name).tiny()
    assert cfg.name == name and isinstance(cfg, ModelConfig)
    spec = cfg.spec()
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3)
    # forward and embed take the declared inputs as keywords, plus lengths
    for method in (model.forward, model.embed):
        params = inspect.signature(method).parameters
        assert set(spec.inputs) | {"lengths"} <= set(params), f"{name}.{method.__name__} lacks {set(spec.inputs)}"
    inputs = synthetic_inputs(spec, b=4, t=6)
    labels = torch.tensor([0, 0, 1, 1])
    model.train()
    out = model(**inputs, lengths=None)
    missing = {t.output for t in spec.losses} - set(out.features)
    assert not missing, f"{name}: loss terms name outputs it does not give: {missing}"
    assert out.embedding.dim() == 3 and out.embedding.shape[0] == 4
    loss, terms = compute_losses(spec.losses, out.features, labels)
    assert torch.isfinite(loss) and {t.log_name for t in spec.losses} <= set(terms)
    loss.backward()
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.requires_grad]
    assert any(g is not None and float(g.abs().sum()) > 0 for _, g in grads)
    for pname, grad in grads:
        assert grad is None or torch.isfinite(grad).all(), f"{name}: {pname} has a non-finite gradient"
    # a zero-padded batch with lengths embeds each sequence as it embeds alone
    model.eval()
    long, short = synthetic_inputs(spec, b=1, t=7, seed=1), synthetic_inputs(spec, b=1, t=4, seed=2)
    padded = {k: torch.zeros((2, 7, *v.shape[2:])) for k, v in long.items()}
    for k in padded:
        padded[k][0] = long[k][0]
        padded[k][1, :4] = short[k][0]
    with torch.inference_mode():
        both = model.embed(**padded, lengths=torch.tensor([7, 4]))
        alone = torch.cat([model.embed(**long, lengths=None), model.embed(**short, lengths=None)])
        ready = model.for_inference()
        fast = ready.embed(**padded, lengths=torch.tensor([7, 4]))
    torch.testing.assert_close(both, alone, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast, alone, atol=1e-3, rtol=1e-3)


def test_registry_is_lazy_and_names_the_nearest_model() -> None:
    with pytest.raises(KeyError, match="did you mean 'gaitheat'"):
        config_class("gaithet")
    with pytest.raises(ConfigError, match=r"model: unknown model 'gaithet'; did you mean 'gaitheat'"):
        load_config(ExperimentConfig, None, ["model.name=gaithet"])
    with pytest.raises(ConfigError, match=r"unknown key 'model.widthz'; did you mean 'widths'"):
        load_config(ExperimentConfig, None, ["model.widthz=[1,2,3,4]"])


# ---------------------------------------------------------------------- a model with another input


@dataclass(frozen=True)
class TinyKeypointConfig(ModelConfig):
    name: str = "tinykp"
    hidden: int = 16

    def spec(self) -> ModelSpec:
        return ModelSpec(inputs={"keypoints": "keypoints"}, frames=FramePolicy("window", "window"),
                         losses=(LossTerm("embeddings", "triplet", margin=0.2), LossTerm("logits", "ce", scale=4.0)),
                         distance="cos")


class TinyKeypointNet(nn.Module):
    """Per-frame MLP on (x, y, score) of 17 joints, max over valid frames: a (B, hidden, 1) embedding."""

    Config = TinyKeypointConfig

    def __init__(self, cfg: TinyKeypointConfig, num_classes: int) -> None:
        super().__init__()
        self.config = cfg
        self.mlp = nn.Sequential(nn.Linear(51, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden))
        self.head = nn.Linear(cfg.hidden, num_classes)

    @classmethod
    def from_config(cls, cfg: ModelConfig, num_classes: int) -> TinyKeypointNet:
        assert isinstance(cfg, TinyKeypointConfig)
        return cls(cfg, num_classes)

    def forward(self, *, keypoints: Tensor, lengths: Tensor | None = None) -> ModelOutput:
        x = self.mlp(keypoints.flatten(2) / 64.0)  # (B, T, hidden)
        if lengths is not None:
            pad = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths.to(x.device)[:, None]
            x = x.masked_fill(pad[..., None], float("-inf"))
        pooled = x.amax(1)
        emb = pooled.unsqueeze(2)  # (B, hidden, 1)
        logits = F.normalize(self.head(pooled), dim=1).unsqueeze(2)
        return ModelOutput(features={"embeddings": emb, "logits": logits}, embedding=F.normalize(emb, dim=1))

    def embed(self, *, keypoints: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.forward(keypoints=keypoints, lengths=lengths).embedding

    def for_inference(self) -> nn.Module:
        return self.eval()


def write_keypoint_store(root: Path, subjects: int = 4, seed: int = 0) -> Path:
    """Keypoint-only store (no heatmaps): each subject a fixed pose offset plus per-frame noise."""
    rng = np.random.default_rng(seed)
    for s in range(subjects):
        base = rng.uniform(8, 40, size=(17, 2))
        for c, cond in enumerate(("nm-01", "nm-02")):
            t = 14 + 3 * c + s
            xy = base + rng.normal(0, 0.8, size=(t, 17, 2))
            kp = np.concatenate([xy, np.full((t, 17, 1), 0.9)], axis=-1).astype(np.float32)
            subject = f"{s + 1:03d}"
            seq = HeatmapSequence(heatmaps=None, keypoints=kp, frame_indices=np.arange(t),
                                  meta=SequenceMeta(subject=subject, condition=cond, view="090"))
            write_sequence(sequence_path(root, subject, cond, "090"), seq)
    return root


def keypoint_experiment(store: Path, out: Path) -> ExperimentConfig:
    return from_dict(ExperimentConfig, {
        "model": {"name": "tinykp", "hidden": 16},
        "data": {"root": str(store), "dataset": "custom", "frames_train": 8, "frames_test": 10, "batch_p": 2,
                 "batch_k": 2, "workers": 0},
        "train": {"steps": 2, "optimizer": "adam", "lr": 0.01, "scheduler": "onecycle", "precision": "fp32",
                  "out": str(out), "checkpoint_every": 2, "log_every": 1, "compile": False, "retain_heap": False},
        "eval": {"protocol": "custom", "gallery": ["nm-01"], "probes": {"NM": ["nm-02"]},
                 "exclude_identical_view": False, "distance": "auto", "retain_heap": False},
    })


@pytest.fixture
def tinykp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, "tinykp", f"{__name__}:TinyKeypointNet")
    sys.modules.setdefault(__name__, sys.modules[__name__])


def test_a_new_input_model_trains_and_evaluates_with_no_trainer_edit(tinykp: None, tmp_path: Path) -> None:
    from gaitheat.checkpoint import load_model, read_checkpoint
    from gaitheat.evaluate import evaluate_checkpoint
    from gaitheat.train import build_train_dataset, train

    store = write_keypoint_store(tmp_path / "store")
    assert {r.sections for r in load_manifest(store)} == {"keypoints"}
    cfg = keypoint_experiment(store, tmp_path / "run")
    final = train(cfg, device="cpu")
    payload = read_checkpoint(final)
    assert payload["format"] == 2 and payload["step"] == 2 and payload["config"]["model"]["name"] == "tinykp"
    model, loaded, _ = load_model(final)
    assert isinstance(model, TinyKeypointNet) and loaded.model == cfg.model
    results = evaluate_checkpoint(final, cfg, device="cpu", progress=False)
    assert results is not None and results["num_sequences"] == 8 and results["gamma_deg"] is None
    assert results["distance"] == "cos"  # eval.distance auto: the model's own
    assert 0.0 <= float(results["sets"]["NM"]["rank1"]) <= 100.0
    # the same store refuses GaitHeat at once, naming the file, the section and the model
    with pytest.raises(StoreError, match=r"001/nm-01/090/heatmaps\.ghs: has no 'heatmaps' section "
                                         r"\(needed by model gaitheat\); it holds keypoints"):
        build_train_dataset(cfg.data, GaitHeatConfig())


# ------------------------------------------------------------------------------ the pieces, by hand


def test_window_sampling() -> None:
    rng = np.random.default_rng(0)
    w = window_positions(50, 8, rng)
    assert w.tolist() == list(range(int(w[0]), int(w[0]) + 8))
    short = window_positions(5, 12, np.random.default_rng(1))
    assert len(short) == 12 and set(short.tolist()) == set(range(5))
    assert all((b - a) % 5 == 1 for a, b in itertools.pairwise(short))  # walking order, tiled
    assert centred_window_positions(20, 10).tolist() == list(range(5, 15))
    assert centred_window_positions(4, 6).tolist() == [0, 1, 2, 3, 0, 1]


def test_views_and_augment_in_the_dataset(tmp_path: Path) -> None:
    store = write_keypoint_store(tmp_path)
    rows = load_manifest(store)
    calls: list[int] = []

    def shift(inputs: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        calls.append(1)
        return {"keypoints": inputs["keypoints"] + rng.normal(0, 1.0)}

    ds = GaitDataset(store, rows, ["001", "002"], frames=6, inputs={"keypoints": "keypoints"},
                     policy=FramePolicy("window", "all", views=2), augment=shift)
    views = ds[(0, 7)]
    assert isinstance(views, list) and len(views) == 2 and len(calls) == 2
    assert not np.array_equal(views[0][0]["keypoints"], views[1][0]["keypoints"])
    again = ds[(0, 7)]
    assert isinstance(again, list)
    np.testing.assert_array_equal(again[1][0]["keypoints"], views[1][0]["keypoints"])  # seeded per view
    batch = collate([views, ds[(2, 3)]])
    assert tuple(batch.inputs["keypoints"].shape) == (4, 6, 17, 3) and batch.labels.tolist() == [0, 0, 1, 1]
    assert batch.lengths is None


def test_inputs_read_only_their_sections(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t = 6
    kp = np.concatenate([rng.uniform(10, 38, (t, 17, 1)), rng.uniform(10, 54, (t, 17, 1)),
                         np.full((t, 17, 1), 0.8)], axis=-1).astype(np.float32)
    sil = (rng.random((t, 64, 44)) > 0.5).astype(np.uint8) * 255
    seq = HeatmapSequence(heatmaps=gaussian_heatmaps(t, rng), keypoints=kp, frame_indices=np.arange(t),
                          meta=SequenceMeta("001", "nm-01", "090"), silhouettes=sil)
    from gaitheat.storage import SequenceFile

    file = SequenceFile(write_sequence(tmp_path / "s.ghs", seq))
    kinds = {k: k for k in INPUTS}
    got = load_inputs(file, kinds, np.array([1, 3]))
    for kind, arr in got.items():
        assert arr.shape == (2, *INPUTS[kind].frame_shape) and arr.dtype == np.float32, kind
    np.testing.assert_array_equal(got["silhouettes"], sil[[1, 3]] / np.float32(255))
    np.testing.assert_array_equal(got["keypoints"], kp[[1, 3]])
    regen = got["regen_heatmaps"]  # drawn at the keypoints: the peak cell of joint 0 is the keypoint's cell
    peak = np.unravel_index(np.argmax(regen[0, 0]), regen[0, 0].shape)
    assert abs(peak[0] - kp[1, 0, 1]) <= 0.5 and abs(peak[1] - kp[1, 0, 0]) <= 0.5
    memory = load_inputs(seq, kinds, np.array([1, 3]))  # an in-memory sequence gives the same arrays
    for kind in kinds:
        np.testing.assert_allclose(memory[kind], got[kind], atol=2 / 255, err_msg=kind)
    regenerated = dataclasses.replace(seq, meta=dataclasses.replace(seq.meta, heatmap_source="regenerated"))
    with pytest.raises(StoreError, match="regenerated heatmaps"):
        load_inputs(regenerated, {"heatmaps": "heatmaps"}, np.array([0]))
    with pytest.raises(StoreError, match=r"<sequence>: has no 'silhouettes' section \(needed by m\)"):
        load_inputs(dataclasses.replace(seq, silhouettes=None), {"x": "silhouettes"}, np.array([0]), needed_by="m")


def supcon_reference(x: Tensor, y: Tensor, tau: float) -> Tensor:
    """Textbook SupCon, anchor by anchor (one strip)."""
    z = F.normalize(x.double(), dim=1)
    losses = []
    for i in range(len(y)):
        others = [j for j in range(len(y)) if j != i]
        denom = torch.logsumexp(torch.stack([z[i] @ z[j] / tau for j in others]), 0)
        pos = [j for j in others if y[j] == y[i]]
        losses.append(-torch.stack([z[i] @ z[j] / tau - denom for j in pos]).mean())
    return torch.stack(losses).mean()


def test_supcon_by_definition_fp32_and_refusal() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    assert float(supcon_loss(x, y, 0.1)) == pytest.approx(float(supcon_reference(x, y, 0.1)), rel=1e-5)
    # temperature 0.01 (logits near 100) stays finite and exact under bf16 autocast: computed in fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = supcon_loss(x.bfloat16(), y, 0.01)
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert float(low) == pytest.approx(float(supcon_reference(x.bfloat16().float(), y, 0.01)), rel=1e-4)
    with pytest.raises(ValueError, match=r"labels \[2\] have a single sample"):
        supcon_loss(x[:5], y[:5], 0.1)
    # through compute_losses, strips averaged
    feats = {"e": torch.stack([x, x], dim=2)}
    total, terms = compute_losses((LossTerm("e", "supcon", 0.5, temperature=0.1),), feats, y)
    assert float(total) == pytest.approx(0.5 * float(supcon_reference(x, y, 0.1)), rel=1e-5)
    assert "supcon/e" in terms
    with pytest.raises(KeyError, match="needs output 'missing'"):
        compute_losses((LossTerm("missing", "ce"),), feats, y)


def test_batch_hard_triplet_by_hand() -> None:
    points = torch.tensor([0.0, 0.1, 0.25, 1.0]).view(4, 1, 1)
    y = torch.tensor([0, 0, 1, 1])
    # hardest positive / nearest negative per anchor: (.1,.25) (.1,.15) (.75,.15) (.75,.9); margin .2
    # relu(.1-.25+.2)=.05, relu(.1-.15+.2)=.15, relu(.75-.15+.2)=.8, relu(.75-.9+.2)=.05 -> mean 1.05/4
    total, _ = compute_losses((LossTerm("e", "triplet", margin=0.2, mining="hard"),), {"e": points}, y)
    assert float(total) == pytest.approx(1.05 / 4, abs=1e-6)


def test_old_configs_and_checkpoints_migrate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = {"model": {"widths": [4, 8, 16, 32]}, "train": {"triplet_margin": 0.3, "ce_weights": [1, 0, 1], "lr": 0.5}}
    new = migrate_config(old)
    assert new["model"]["triplet_margin"] == 0.3 and "triplet_margin" not in new["train"]
    assert old["train"]["triplet_margin"] == 0.3  # input untouched
    cfg = from_dict(ExperimentConfig, old)
    assert isinstance(cfg.model, GaitHeatConfig) and cfg.model.triplet_margin == 0.3 and cfg.train.lr == 0.5
    assert "moved to model" in caplog.text
    with pytest.raises(ConfigError, match="both train and model"):
        from_dict(ExperimentConfig, {"model": {"triplet_margin": 0.1}, "train": {"triplet_margin": 0.3}})
    # a format-1 checkpoint (loss settings in train, no `format`) loads and rebuilds its model
    from gaitheat.checkpoint import load_model

    cfg = from_dict(ExperimentConfig, {"model": to_dict(GaitHeatConfig.tiny())})
    data = to_dict(cfg)
    for key in ("triplet_margin", "ce_scale", "label_smoothing", "triplet_weights", "ce_weights"):
        data["train"][key] = data["model"].pop(key)
    model = build_model(cfg.model, 3)
    path = tmp_path / "old.pt"
    torch.save({"step": 5, "model": model.state_dict(), "config": data, "num_classes": 3}, path)
    loaded, loaded_cfg, info = load_model(path)
    assert loaded_cfg.model == cfg.model and info["step"] == 5
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_optimizer_and_scheduler_switch() -> None:
    from gaitheat.experiment import TrainConfig
    from gaitheat.train import build_optimizer, build_scheduler

    net = nn.Linear(2, 2)
    for name, cls in (("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        assert isinstance(build_optimizer(net, TrainConfig(optimizer=name)), cls)  # type: ignore[arg-type]
    cfg = TrainConfig(optimizer="adam", lr=0.01, scheduler="onecycle", steps=10)
    opt = build_optimizer(net, cfg)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(0.01, rel=0.05) and lrs[0] < 0.002 and lrs[-1] < lrs[3]


def test_gallery_records_the_models_distance(tmp_path: Path) -> None:
    from gaitheat.gallery.db import GalleryDB, ModelMismatchError, SequenceSource

    vec = np.ones((4, 1), np.float32)
    with GalleryDB(tmp_path / "g.db", create=True) as db:
        assert db.distance == "euc-strip-mean"
        db.enrol("ann", [(vec, SequenceSource("a.avi", 1, 10, {}))], "sha", distance="cos-strip-mean")
        assert db.distance == "cos-strip-mean"
        with pytest.raises(ModelMismatchError, match="cos-strip-mean"):
            db.enrol("bob", [(vec, SequenceSource("b.avi", 1, 10, {}))], "sha", distance="euc-strip-mean")


def test_gaitheat_spec_reproduces_its_six_terms() -> None:
    cfg = GaitHeatConfig(triplet_weights=(1.0, 0.5, 0.0), ce_scale=8.0)
    spec = cfg.spec()
    assert spec.inputs == {"heatmaps": "heatmaps"} and spec.frames == FramePolicy() and spec.distance == "euc"
    assert [t.log_name for t in spec.losses] == ["triplet/part", "ce/part", "triplet/global", "ce/global",
                                                 "triplet/fusion", "ce/fusion"]
    assert spec.losses[2].weight == 0.5 and spec.losses[1].scale == 8.0
    assert GaitHeatConfig(input="regen_heatmaps").spec().inputs == {"heatmaps": "regen_heatmaps"}
    # γ for a target: the target's unless the evaluation config changed the trained value
    trained = GaitHeatConfig(gamma_deg=5.0)
    assert trained.for_target(20.0, trained).gamma_deg == 20.0
    assert dataclasses.replace(trained, gamma_deg=12.0).for_target(20.0, trained).gamma_deg == 12.0


def test_evaluate_merges_an_old_layout_config_into_the_checkpoints(tmp_path: Path) -> None:
    import argparse

    from gaitheat.cli.evaluate import _compose_config

    cfg = from_dict(ExperimentConfig, {"model": to_dict(GaitHeatConfig.tiny())})
    path = tmp_path / "c.pt"
    torch.save({"format": 2, "step": 1, "model": {}, "config": to_dict(cfg), "num_classes": 3}, path)
    old = tmp_path / "old.yaml"
    old.write_text("train:\n  triplet_margin: 0.3\neval:\n  distance: cos\n")
    args = argparse.Namespace(checkpoint=str(path), config=str(old), overrides=[], protocol=None, data_root=None,
                              allow_incomplete=False)
    got = _compose_config(args)
    assert isinstance(got, ExperimentConfig) and isinstance(got.model, GaitHeatConfig)
    assert got.model.triplet_margin == 0.3 and got.model.widths == (4, 8, 16, 32) and got.eval.distance == "cos"
