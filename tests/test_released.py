"""`gaitheat import-checkpoint`: released FastPoseGait GaitHeat checkpoints in, gaitheat checkpoints out.

The released weights are the golden fixture's (tests/data/golden), saved here the way the released
trainer saves them: ``torch.save({'model': state_dict, 'optimizer': ..., 'iteration': n})``.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gaitheat.checkpoint import load_model
from gaitheat.cli import main
from gaitheat.manifest import load_manifest
from gaitheat.released import gaitheat_name, released_name
from gaitheat.storage import HeatmapSequence, SequenceMeta, sequence_path, write_sequence

GOLDEN = Path(__file__).parent / "data" / "golden" / "fastposegait_gaitheat_golden.npz"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


def released_state(golden: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    state = {k[len("param/"):]: torch.from_numpy(v) for k, v in golden.items() if k.startswith("param/")}
    for name in [n for n in state if n.endswith("running_var")]:  # the released file has these too
        state[name.replace("running_var", "num_batches_tracked")] = torch.tensor(1)
    return state


def save_released(path: Path, state: dict[str, torch.Tensor], **extra: object) -> Path:
    optimizer = {"state": {0: {"momentum_buffer": torch.zeros(3)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    torch.save({"model": state, "optimizer": optimizer, "scheduler": {"last_epoch": 60000}, "iteration": 60000,
                **extra}, path)
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_names_map_onto_gaitheat() -> None:
    assert gaitheat_name("Backbone1.forward_block.conv1.conv.weight") == "stages.0.conv.weight"
    assert gaitheat_name("Backbone1.forward_block.layer1.0.bn2.bias") == "stages.0.block.bn2.bias"
    assert gaitheat_name("Backbone3.forward_block.layer3.0.downsample.1.weight") == "stages.2.downsample.1.weight"
    assert gaitheat_name("Backbone4_fusion.forward_block.layer4.0.conv2.weight") == "fusion_stages.2.conv2.weight"
    assert gaitheat_name("FCs_global.fc_bin") == "heads.global.fc.weight"
    assert gaitheat_name("BNNecks_part.fc_bin") == "heads.part.neck.classifier"
    assert gaitheat_name("BNNecks_fusion.bn1d.running_mean") == "heads.fusion.neck.bn.running_mean"
    assert gaitheat_name("Backbone2.forward_block.layer3.0.conv1.weight") is None  # stage/layer disagree
    assert gaitheat_name("FCs_other.fc_bin") is None


def test_names_round_trip(golden: dict[str, np.ndarray]) -> None:
    from gaitheat.models import GaitHeat

    ours = GaitHeat(5, widths=(8, 16, 32, 64), parts=16, embed_dim=32).state_dict()
    released = {released_name(n) for n in ours}
    assert {n for n in released if not n.endswith("num_batches_tracked")} == {
        k[len("param/"):] for k in golden if k.startswith("param/")}
    assert all(gaitheat_name(released_name(n)) == n for n in ours)


def test_import_then_load_reproduces_the_released_network(golden: dict[str, np.ndarray], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    src = save_released(tmp_path / "GaitHeat-60000.pt", released_state(golden))
    out = tmp_path / "imported.pt"
    code, stdout, err = run_cli(["import-checkpoint", str(src), str(out)], capsys)
    assert code == 0, err
    assert "widths (8, 16, 32, 64)" in stdout and "5 classes" in stdout and "[[0], [1]]" in stdout
    model, cfg, info = load_model(out)
    assert cfg.model.groups == ((0,), (1,)) and cfg.model.align_mode == "two_pass"
    assert cfg.model.align_pixels == "edge" and info["step"] == 60000 and info["num_classes"] == 5
    model.align = False  # the golden run used identity matrices
    with torch.no_grad():
        emb = model(heatmaps=torch.from_numpy(golden["net_input_u8"]).float() / 255).embedding
    np.testing.assert_allclose(emb.numpy(), golden["out/eval/inference"], rtol=0, atol=1e-5)
    code, _, err = run_cli(["import-checkpoint", str(src), str(out)], capsys)
    assert code == 2 and "exists" in err  # never overwritten by accident


def write_store(root: Path, subjects: tuple[str, ...], conditions: tuple[str, ...], views: tuple[str, ...]) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:48].astype(np.float32)
    for s in subjects:
        centres = np.random.default_rng(int(s)).uniform((10, 8), (54, 40), size=(17, 2))
        for c in conditions:
            for v in views:
                jitter = centres[None] + rng.normal(scale=1.0, size=(4, 17, 2))
                hm = np.exp(-((yy - jitter[..., 0, None, None]) ** 2 + (xx - jitter[..., 1, None, None]) ** 2) / 8)
                seq = HeatmapSequence(hm.astype(np.float32), np.zeros((4, 17, 3), np.float32),
                                      np.arange(4, dtype=np.int64), SequenceMeta(s, c, v, pose_model="synthetic"))
                write_sequence(sequence_path(root, s, c, v), seq)
    load_manifest(root)
    return root


@pytest.mark.slow
def test_imported_checkpoint_evaluates(golden: dict[str, np.ndarray], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = save_released(tmp_path / "released.pt", released_state(golden))
    out = tmp_path / "imported.pt"
    assert run_cli(["import-checkpoint", str(src), str(out), "--config", "casia-b"], capsys)[0] == 0
    store = write_store(tmp_path / "store", ("075", "076"), ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06",
                                                             "bg-01", "bg-02", "cl-01", "cl-02"), ("000", "090"))
    code, stdout, err = run_cli(["evaluate", "--checkpoint", str(out), "--data-root", str(store), "--allow-incomplete",
                                 "--set", "data.workers=0", "--out", str(tmp_path / "reports"), "--no-progress"],
                                capsys)
    assert code == 0, err
    assert "Gait R-1" in stdout
    results = json.loads((tmp_path / "reports" / "imported.casia-b.json").read_text())
    assert results["num_subjects"] == 2 and results["step"] == 60000 and results["num_classes"] == 5


def test_refuses_what_does_not_fit(golden: dict[str, np.ndarray], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    state = released_state(golden)
    broken = dict(state)
    broken["Backbone2.forward_block.layer2.0.conv2.weight"] = torch.zeros(16, 16, 1, 1)  # shape
    del broken["BNNecks_global.bn1d.weight"]  # missing
    broken["Extra.head.weight"] = torch.zeros(3)  # unknown
    src = save_released(tmp_path / "broken.pt", broken)
    out = tmp_path / "out.pt"
    code, _, err = run_cli(["import-checkpoint", str(src), str(out)], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(src) in err
    assert "Backbone2.forward_block.layer2.0.conv2.weight (16, 16, 1, 1) vs (16, 16, 3, 3)" in err
    assert "missing keys (1): BNNecks_global.bn1d.weight" in err and "unknown keys (1): Extra.head.weight" in err
    assert not out.exists()

    # a checkpoint trained with other part groups cannot be told by shapes: --groups says it
    code, _, err = run_cli(["import-checkpoint", str(save_released(tmp_path / "ok.pt", state)), str(out),
                            "--groups", "[[0, 1], []]"], capsys)
    assert code == 2 and "--groups" in err and not out.exists()


def test_refuses_files_that_are_not_safe_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"

    class Hostile:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return open, (str(marker), "w")  # runs on load if anything unpickles it

    hostile = tmp_path / "hostile.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "payload": Hostile()}, hostile)
    legacy = tmp_path / "legacy.pt"
    with open(legacy, "wb") as handle:
        pickle.dump(Hostile(), handle)
    truncated = tmp_path / "truncated.pt"
    good = io_bytes({"model": {"a": torch.zeros(4)}})
    truncated.write_bytes(good[: len(good) // 2])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    no_state = tmp_path / "no_state.pt"
    torch.save({"iteration": 3}, no_state)
    for path in (hostile, legacy, truncated, empty, no_state):
        code, _, err = run_cli(["import-checkpoint", str(path), str(tmp_path / "out.pt")], capsys)
        assert code == 2 and str(path) in err and "Traceback" not in err, (path, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not marker.exists() and not (tmp_path / "out.pt").exists()
    not_gaitheat = tmp_path / "other.pt"
    torch.save({"model": {"encoder.weight": torch.zeros(2, 2)}}, not_gaitheat)
    code, _, err = run_cli(["import-checkpoint", str(not_gaitheat), str(tmp_path / "out.pt")], capsys)
    assert code == 2 and "not a GaitHeat state_dict" in err and "FCs_fusion.fc_bin" in err


def io_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_other_widths_and_a_ddp_prefix_import(golden: dict[str, np.ndarray], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Any width imports: a released-layout state_dict made from a gaitheat model at another width."""
    from gaitheat.models import GaitHeat

    torch.manual_seed(0)
    ours = GaitHeat(7, widths=(4, 8, 16, 24), parts=8, embed_dim=12).state_dict()
    src = tmp_path / "wide.pt"
    torch.save({f"module.{released_name(k)}": v for k, v in ours.items()}, src)  # a bare DDP state_dict
    out = tmp_path / "wide-gaitheat.pt"
    code, stdout, err = run_cli(["import-checkpoint", str(src), str(out), "--groups", "top-bottom"], capsys)
    assert code == 0, err
    assert "widths (4, 8, 16, 24), 8 strips x 12 dims, 7 classes" in stdout
    model, cfg, info = load_model(out)
    assert cfg.model.groups[1] == (11, 12, 13, 14, 15, 16) and info["step"] == 0 and cfg.model.name == "gaitheat"
    for k, v in model.state_dict().items():
        assert torch.equal(v, ours[k]), k
