"""Export the recognition network to ONNX, check it with ONNX Runtime, and embed with ONNX Runtime.

The exported graph is the whole retrieval path of :meth:`GaitHeat.embed`, alignment included:

    heatmaps (B, T, 17, 64, 48) float32, raw pose-model heatmaps, T dynamic
      -> per-sequence min-max normalisation (:func:`gaitheat.transforms.normalise_sequence`)
      -> PGHA (deterministic, eval mode) -> part/global streams -> ResNet9 + fusion (BN folded)
      -> set max over the T frames -> HPM -> SeparateFCs -> BNNeck (or not: the model's ``retrieval``)
      -> embedding (B, D, P), unit L2 norm per strip

so a deployment feeds the pose model's heatmaps and needs nothing from gaitheat. All sequences of a
batch must have the same T (there is no ``lengths`` input: embed ragged sets one at a time, as
gaitheat does on CPU). Normalisation inside the graph is idempotent (a sequence already in [0, 1]
with min 0 and max 1 maps to itself), so pre-normalised input gives the same embedding.

Exporter: torch 2.13's default is the dynamo exporter (``torch.export`` + ``onnxscript``).
``onnxscript`` is not installed here (it is on PyPI), and ``torch.export`` would need GaitHeat's
data-dependent Python (the chunked ``embed`` loop with ``.tolist()``, shape checks) rewritten. The
TorchScript exporter (``dynamo=False``) still exists in 2.13, needs no new dependency, and traces
this graph exactly (measured: embeddings within 4e-7 of PyTorch for T = 7..55 from a T = 30
trace), so it is used. PGHA's ``affine_grid`` has a symbolic only from opset 20 (``grid_sample``
from 16), hence :data:`OPSET` = 20 (ONNX Runtime >= 1.17).

Metadata (``metadata_props``, all strings): ``gaitheat.model`` (model name), ``gaitheat.inputs``
(JSON: input name -> kind, shape and normalisation), ``gaitheat.distance`` (``euc`` | ``cos``, the
checkpoint's ``eval.distance``), ``gaitheat.checkpoint_sha256``, ``gaitheat.max_frames`` (the
evaluation cap, applied by the caller), ``gaitheat.quantization`` (``none`` | ``int8-dynamic``),
``gaitheat.embedding_shape``, ``gaitheat.gamma_deg`` (PGHA's upright threshold, fixed in the graph),
``gaitheat.format``.

int8: :func:`quantize_int8` applies ONNX Runtime's dynamic quantisation (int8 weights, activations
quantised per batch at run time) to the exported fp32 file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

OPSET = 20
FORMAT = "1"
INPUT_NAME = "heatmaps"
OUTPUT_NAME = "embedding"
META_PREFIX = "gaitheat."


class OnnxError(ValueError):
    """An ONNX file that is not a gaitheat export, or that ONNX Runtime cannot run; names the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and checked.

    Attributes:
        path: the ONNX file.
        metadata: its ``metadata_props``.
        max_abs_diff: largest |ONNX Runtime - PyTorch| over the check embeddings (fp32 export).
        check_frames: the sequence lengths T that were checked.
        int8_path / int8_max_abs_diff: the quantised file and its difference to PyTorch, when asked for.
    """

    path: str
    metadata: dict[str, str]
    max_abs_diff: float
    check_frames: tuple[int, ...]
    int8_path: str | None = None
    int8_max_abs_diff: float | None = None


def embed_graph(model: Any) -> Any:
    """A ``torch.nn.Module``: raw heatmaps (B, T, J, H, W) -> (B, D, P), the traced export graph.

    ``model`` is an eval-mode GaitHeat (BN folded or not). Built in a function so that importing this
    module does not import torch.
    """
    import torch
    from torch import nn

    from gaitheat.transforms import EPS

    class EmbedGraph(nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
            """(B, T, J, H, W) raw -> (B, D, P); the same arithmetic as ``normalise_sequence`` + ``embed``."""
            lo = heatmaps.amin(dim=(1, 2, 3, 4), keepdim=True)
            span = heatmaps.amax(dim=(1, 2, 3, 4), keepdim=True) - lo
            x = torch.where(span < EPS, torch.zeros_like(heatmaps), (heatmaps - lo) / span.clamp_min(EPS))
            b = x.shape[0]
            maps = self.net.frame_maps(x.flatten(0, 1), None, branches=("fusion",))["fusion"]
            pooled = maps.unflatten(0, (b, -1)).amax(1)  # set max over frames
            return self.net.retrieve(pooled)

    return EmbedGraph(model).eval()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_metadata(model_name: str, distance: str, checkpoint_sha256: str, num_joints: int,
                   size: tuple[int, int], max_frames: int, embedding_shape: tuple[int, int], gamma_deg: float,
                   quantization: str = "none") -> dict[str, str]:
    """The ``metadata_props`` of an export (see the module docstring)."""
    inputs = {INPUT_NAME: {"kind": "heatmaps", "shape": ["batch", "frames", num_joints, *size],
                           "dtype": "float32", "normalisation": "none needed: raw pose-model heatmaps, "
                           "min-max normalised per sequence inside the graph"}}
    return {f"{META_PREFIX}{k}": v for k, v in {
        "format": FORMAT, "model": model_name, "inputs": json.dumps(inputs), "distance": distance,
        "checkpoint_sha256": checkpoint_sha256, "max_frames": str(max_frames),
        "embedding_shape": json.dumps(list(embedding_shape)), "gamma_deg": repr(float(gamma_deg)),
        "quantization": quantization,
    }.items()}


def _write_with_metadata(src: Path, out: Path, metadata: dict[str, str]) -> None:
    """Load ``src``, replace its gaitheat metadata, write ``out`` atomically."""
    import onnx

    from gaitheat.atomic import atomic_write_bytes

    proto = onnx.load(str(src))
    kept = [p for p in proto.metadata_props if not p.key.startswith(META_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "gaitheat"
    atomic_write_bytes(out, proto.SerializeToString())


def check_samples(num_joints: int, size: tuple[int, int], frames: Sequence[int], seed: int = 0) -> list[np.ndarray]:
    """Heatmap-like check inputs: one Gaussian blob per joint on a walking-figure layout, plus noise.

    Random uniform noise would leave PGHA's upright branch untested; blobs give real spines, some
    upright (no warp) and some tilted.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for t_len in frames:
        seq = np.empty((t_len, num_joints, h, w), np.float32)
        for t in range(t_len):
            tilt = rng.choice([0.0, rng.uniform(-0.5, 0.5)])  # half the frames upright
            for j in range(num_joints):
                v = 8 + (h - 16) * j / max(num_joints - 1, 1)
                cx = w / 2 + (v - h / 2) * np.sin(tilt) + rng.normal(0, 2)
                cy = h / 2 + (v - h / 2) * np.cos(tilt)
                seq[t, j] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.0**2))
        seq += rng.normal(0, 0.01, seq.shape).astype(np.float32)
        out.append(seq)
    return out


def export_onnx(checkpoint: str | Path, out: str | Path, *, int8: bool = False,
                check_frames: Sequence[int] = (7, 61), trace_frames: int = 30) -> ExportReport:
    """Export a checkpoint's retrieval network to ``out`` and check it against PyTorch.

    Args:
        checkpoint: a training checkpoint (``.pt``).
        out: the ONNX file to write (atomically).
        int8: also write ``<out stem>.int8.onnx``, dynamically quantised (:func:`quantize_int8`).
        check_frames: sequence lengths of the ONNX Runtime check (other than the traced one, to prove
            the frame axis is dynamic).
        trace_frames: T of the tracing input.
    Returns:
        the report; the fp32 check's ``max_abs_diff`` is also logged.
    Raises:
        ValueError: the checkpoint does not load, or the export differs from PyTorch by more than 1e-4.
    """
    import torch

    from gaitheat.checkpoint import load_model
    from gaitheat.models import GaitHeat
    from gaitheat.models.inference import fold_batchnorm

    out = Path(out)
    model, cfg, info = load_model(checkpoint, map_location="cpu")
    if not isinstance(model, GaitHeat):
        raise ValueError(f"{checkpoint}: ONNX export supports the GaitHeat network, not {type(model).__name__}")
    fold_batchnorm(model)  # exact up to rounding; one conv per conv+BN in the graph
    graph = embed_graph(model)
    j, size = model.num_joints, (64, 48)
    samples = check_samples(j, size, [trace_frames, *check_frames])
    with torch.inference_mode():
        reference = [graph(torch.from_numpy(s)[None]).numpy()[0] for s in samples]
    d, p = reference[0].shape
    meta = build_metadata(getattr(cfg.model, "name", "gaitheat"), cfg.eval.distance, str(info["sha256"]), j, size,
                          cfg.data.frames_test_max, (d, p), model.gamma_deg)
    with tempfile.TemporaryDirectory(prefix="gaitheat-onnx-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about Python numbers taken from shapes (H, W, P): fixed by the input
            # layout, so constants are right. dynamo=False warns that it is the legacy exporter (see above).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(graph, (torch.from_numpy(samples[0])[None],), str(raw), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch", 1: "frames"}, OUTPUT_NAME: {0: "batch"}})
        _write_with_metadata(raw, out, meta)
    diff = _max_diff(out, samples, reference)
    log.info("%s: ONNX Runtime vs PyTorch max |diff| %.2e over T = %s", out, diff, [len(s) for s in samples])
    if diff > 1e-4:
        raise ValueError(f"{out}: ONNX Runtime differs from PyTorch by {diff:.2e} (> 1e-4); the export is wrong")
    int8_path, int8_diff = None, None
    if int8:
        int8_path = str(int8_path_for(out))
        quantize_int8(out, int8_path)
        int8_diff = _max_diff(Path(int8_path), samples, reference)
        log.info("%s: int8 vs PyTorch max |diff| %.3f (approximate by design)", int8_path, int8_diff)
    return ExportReport(str(out), meta, diff, tuple(len(s) for s in samples), int8_path, int8_diff)


def int8_path_for(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.int8{out.suffix or '.onnx'}")


def _max_diff(path: Path, samples: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    session = OnnxModel(path)
    return max(float(np.abs(session.run(s[None])[0] - r).max()) for s, r in zip(samples, reference, strict=True))


def quantize_int8(src: str | Path, out: str | Path) -> None:
    """Dynamic int8 quantisation of an fp32 export (weights int8, activations per run), metadata kept.

    ``QInt8`` weights (ONNX Runtime's recommended type on x86 for dynamic quantisation); convolutions
    become ``ConvInteger`` and the SeparateFCs matmuls ``MatMulInteger``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    meta = read_metadata(src)
    meta[f"{META_PREFIX}quantization"] = "int8-dynamic"
    with tempfile.TemporaryDirectory(prefix="gaitheat-onnx-") as tmp:
        raw = Path(tmp) / "int8.onnx"
        quantize_dynamic(str(src), str(raw), weight_type=QuantType.QInt8)
        _write_with_metadata(raw, Path(out), meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (ONNX Runtime's reader: no protobuf parse of the weights)."""
    return dict(_session(path).get_modelmeta().custom_metadata_map)


def _session(path: str | Path, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        raise OnnxError(path, f"ONNX Runtime cannot load it ({type(exc).__name__}: {exc})") from exc


class OnnxModel:
    """An exported network run by ONNX Runtime, usable wherever gaitheat calls ``model.embed``.

    Attributes:
        path: the ONNX file.
        metadata: its gaitheat ``metadata_props`` (prefix stripped).
        sha256: the SHA-256 of the checkpoint it was exported from (so a gallery built with the
            PyTorch checkpoint accepts it).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxError(path, "no such ONNX file")
        self.session = _session(path, threads)
        raw = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = {k[len(META_PREFIX):]: v for k, v in raw.items() if k.startswith(META_PREFIX)}
        missing = {"format", "checkpoint_sha256", "inputs"} - set(self.metadata)
        if missing:
            raise OnnxError(path, f"not a gaitheat export (metadata lacks {sorted(missing)}); "
                                  "make one with `gaitheat export-onnx`")
        if self.metadata["format"] != FORMAT:
            raise OnnxError(path, f"export format {self.metadata['format']!r}; this gaitheat reads {FORMAT!r}")
        self.sha256 = self.metadata["checkpoint_sha256"]
        self.distance = self.metadata.get("distance", "euc")
        self.max_frames = int(self.metadata.get("max_frames", "720"))
        self.gamma_deg = float(self.metadata.get("gamma_deg", "nan"))

    def run(self, heatmaps: np.ndarray) -> np.ndarray:
        """(B, T, J, H, W) float32 (raw or normalised) -> (B, D, P) float32."""
        x = np.ascontiguousarray(heatmaps, dtype=np.float32)
        return np.asarray(self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0], np.float32)

    # --- the small part of the nn.Module interface that gaitheat.evaluate.embed_batches uses
    def to(self, *_: Any, **__: Any) -> OnnxModel:
        return self

    def eval(self) -> OnnxModel:
        return self

    def parameters(self) -> Any:
        return iter(())

    def embed(self, heatmaps: Any, lengths: Any = None) -> Any:
        """Torch (B, T, J, H, W) (+ (B,) lengths) -> torch (B, D, P): one ONNX run per sequence."""
        import torch

        x = heatmaps.detach().float().cpu().numpy()
        counts = [x.shape[1]] * len(x) if lengths is None else [int(n) for n in lengths]
        return torch.from_numpy(np.concatenate([self.run(x[i: i + 1, :n]) for i, n in enumerate(counts)]))


def is_onnx_path(path: str | Path | None) -> bool:
    return path is not None and str(path).lower().endswith(".onnx")


def default_threads() -> int:
    """ONNX Runtime threads: the cores this process may use (its affinity mask), as the pose model does."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
