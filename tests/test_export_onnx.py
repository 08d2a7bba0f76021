"""ONNX export of the retrieval network: ONNX Runtime against PyTorch, metadata, int8, the onnx backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import gaussian_heatmaps, write_tiny_checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    from gaitheat.export_onnx import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    ckpt = write_tiny_checkpoint(folder / "tiny.pt")
    report = export_onnx(ckpt, folder / "tiny.onnx", int8=True)
    return ckpt, folder / "tiny.onnx", report


def test_onnx_matches_pytorch_for_any_number_of_frames(exported: tuple[Path, Path, object]) -> None:
    import torch

    from gaitheat.checkpoint import load_model
    from gaitheat.evaluate import embed_sequences
    from gaitheat.export_onnx import OnnxModel

    ckpt, onnx_path, report = exported
    assert report.max_abs_diff < 1e-4 and len(set(report.check_frames)) == 3  # type: ignore[attr-defined]
    model, _, info = load_model(ckpt)
    onnx = OnnxModel(onnx_path)
    rng = np.random.default_rng(3)
    seqs = [gaussian_heatmaps(t, rng) * 3.0 for t in (1, 13, 40)]  # raw scale: normalisation is in the graph
    with torch.inference_mode():
        ref = embed_sequences(model, seqs)
    got = np.concatenate([onnx.run(s[None]) for s in seqs])
    assert got.shape == ref.shape == (3, 32, 4)
    assert np.abs(got - ref).max() < 1e-4
    # through gaitheat's own embedding path (normalised input: the graph's normalisation is idempotent)
    via = embed_sequences(onnx, seqs)  # type: ignore[arg-type]
    assert np.abs(via - ref).max() < 1e-4
    assert onnx.sha256 == info["sha256"]


def test_metadata_names_model_inputs_distance_and_checkpoint(exported: tuple[Path, Path, object]) -> None:
    import json

    from gaitheat.export_onnx import file_sha256, read_metadata

    ckpt, onnx_path, _ = exported
    meta = read_metadata(onnx_path)
    assert meta["gaitheat.model"] == "gaitheat"
    assert meta["gaitheat.distance"] == "euc"
    assert meta["gaitheat.checkpoint_sha256"] == file_sha256(ckpt)
    assert json.loads(meta["gaitheat.inputs"])["heatmaps"]["shape"] == ["batch", "frames", 17, 64, 48]
    assert meta["gaitheat.quantization"] == "none"


def test_int8_export_is_close_and_labelled(exported: tuple[Path, Path, object]) -> None:
    from gaitheat.export_onnx import OnnxModel, int8_path_for

    _, onnx_path, report = exported
    q = OnnxModel(int8_path_for(onnx_path))
    assert q.metadata["quantization"] == "int8-dynamic"
    seq = gaussian_heatmaps(20, np.random.default_rng(5))[None]
    a, b = OnnxModel(onnx_path).run(seq), q.run(seq)
    assert 0 < np.abs(a - b).max() < 0.5  # quantised (not identical), still near (unit-norm strips)
    assert report.int8_max_abs_diff is not None and report.int8_max_abs_diff < 0.5  # type: ignore[attr-defined]


def test_cli_export_and_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gaitheat.cli import main
    from gaitheat.export_onnx import OnnxError, OnnxModel

    assert main(["export-onnx", str(tmp_path / "missing.pt"), str(tmp_path / "x.onnx")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["export-onnx", str(junk), str(tmp_path / "x.onnx")]) == 2
    assert "junk.pt" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(OnnxError, match=r"bad\.onnx"):
        OnnxModel(bad)


def test_gallery_embedder_backend_onnx_matches_torch(exported: tuple[Path, Path, object]) -> None:
    from gaitheat.gallery.service import load_embedder

    ckpt, onnx_path, _ = exported
    torch_side, onnx_side = load_embedder(ckpt, "cpu"), load_embedder(onnx_path)
    torch_side.precision = "fp32"  # auto would be bf16 on a CPU with native bf16
    assert onnx_side.sha256 == torch_side.sha256  # a gallery built with either accepts the other
    seqs = [gaussian_heatmaps(t, np.random.default_rng(t)) for t in (9, 25)]
    assert np.abs(onnx_side.embed(seqs) - torch_side.embed(seqs)).max() < 1e-4
