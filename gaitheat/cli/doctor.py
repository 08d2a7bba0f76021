"""`gaitheat doctor`: check the environment gaitheat needs, one line per check."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import shutil
from collections.abc import Callable
from pathlib import Path

HELP = ("Check the environment: torch, LiteRT, the pose-model files and their SHA-256, ONNX Runtime, the shipped "
        "pretrained model, disk.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path", type=Path, default=Path("."), help="folder whose free disk space to report")


def _version(dist: str) -> str:
    return importlib.metadata.version(dist)


def _check_torch() -> str:
    import torch

    cuda = torch.cuda.is_available()
    devices = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if cuda else "CPU only"
    return f"torch {torch.__version__}, {devices}, {torch.get_num_threads()} threads"


def _check_litert() -> str:
    importlib.import_module("ai_edge_litert.interpreter")
    return f"ai-edge-litert {_version('ai-edge-litert')}"


def _check_onnxruntime() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}, providers {onnxruntime.get_available_providers()}"


def _check_opencv() -> str:
    import cv2

    if not hasattr(cv2, "HOGDescriptor"):
        raise RuntimeError(f"opencv {cv2.__version__} has no HOG (install opencv-python-headless<5)")
    return f"opencv {cv2.__version__}"


def _check_faiss() -> str:
    import faiss

    return f"faiss {faiss.__version__}"


def _pose_check(name_attr: str) -> Callable[[], str]:
    def check() -> str:
        from gaitheat import assets

        name = getattr(assets, name_attr)
        path = assets.verify_asset(name)
        return f"{path} sha256 {assets.sha256_file(path)[:16]}... ok"

    return check


class _Absent(Exception):
    """An optional part that is not installed: reported, not a failure."""


def _check_pretrained() -> str:
    from gaitheat.pretrained import describe, shipped_model

    info = shipped_model()
    if info is None:
        raise _Absent(describe(None))
    return describe(info)  # WeightsError (a ValueError) when the weights do not verify


def run(args: argparse.Namespace) -> int:
    checks: list[tuple[str, Callable[[], str]]] = [
        ("torch", _check_torch),
        ("LiteRT", _check_litert),
        ("pose landmark model", _pose_check("POSE_LANDMARK_FULL")),
        ("pose detector model", _pose_check("POSE_DETECTION")),
        ("ONNX Runtime", _check_onnxruntime),
        ("OpenCV", _check_opencv),
        ("FAISS", _check_faiss),
        ("pretrained model", _check_pretrained),
    ]
    failures = 0
    for label, check in checks:
        try:
            detail = check()
            status = "ok  "
        except _Absent as exc:
            detail, status = str(exc), "none"
        except (ImportError, OSError, RuntimeError, ValueError, AttributeError) as exc:
            detail, status = f"{type(exc).__name__}: {exc}", "FAIL"
            failures += 1
        print(f"[{status}] {label:20s} {detail}")
    usage = shutil.disk_usage(args.path)
    free_gb = usage.free / 1e9
    disk_ok = free_gb >= 5
    failures += not disk_ok
    print(f"[{'ok  ' if disk_ok else 'FAIL'}] {'disk':20s} {free_gb:.1f} GB free at {args.path.resolve()}")
    print("all checks passed" if failures == 0 else f"{failures} check(s) failed")
    return 0 if failures == 0 else 1
