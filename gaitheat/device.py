"""Where tensors run and in which precision: shared by training, evaluation and the gallery.

* :func:`amp_for` turns a configured precision (``auto`` | ``fp32`` | ``fp16`` | ``bf16``) into an
  :class:`Amp` for one device: one autocast code path with ``enabled=`` flags (style §8), fp16 only on CUDA.
* :func:`resolve_precision` says what ``auto`` means on a device: fp16 AMP on CUDA, bf16 autocast on
  a CPU with native bf16 arithmetic (AVX512-BF16 or AMX, read from ``/proc/cpuinfo``), fp32 elsewhere.
  Without native support bf16 is emulated and slower than fp32, so ``auto`` keeps fp32 there.
* :func:`device_of` is where a model's parameters live (or an explicit device).
* :func:`pick_device` resolves ``"cpu"`` / ``"cuda"`` / None (CUDA when available) outside torchrun.

Training and evaluation both import this module and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Amp:
    """Mixed precision for one device: autocast dtype and switches (one code path, ``enabled=`` flags)."""

    device_type: str
    dtype: torch.dtype
    autocast: bool
    grad_scaler: bool


NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo names (Linux)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor in ``cpuinfo`` (empty where it cannot be read)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):  # x86 / ARM spelling
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True on CPUs with bf16 arithmetic in hardware: AVX512-BF16 (Cooper Lake, Zen 4+) or AMX (Sapphire Rapids+)."""
    return bool(NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags))


def resolve_precision(precision: str, device: torch.device | str, flags: frozenset[str] | None = None) -> str:
    """``auto`` -> ``fp16`` on CUDA, ``bf16`` on a CPU with native bf16, else ``fp32``; others unchanged.

    Args:
        precision: ``auto`` | ``fp32`` | ``fp16`` | ``bf16``.
        device: where the model runs.
        flags: CPU flags to decide with (None: this machine's).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if torch.device(device).type == "cuda":
        return "fp16"
    return "bf16" if torch.device(device).type == "cpu" and cpu_has_native_bf16(flags) else "fp32"


PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def amp_for(precision: str, device: torch.device) -> Amp:
    """fp16 autocast + GradScaler on CUDA (fp32 on CPU, where fp16 is not worth it); bf16 autocast anywhere;
    ``auto`` as :func:`resolve_precision` decides."""
    precision = resolve_precision(precision, device)
    if precision == "fp16" and device.type == "cuda":
        return Amp(device.type, torch.float16, autocast=True, grad_scaler=True)
    if precision == "bf16":
        return Amp(device.type, torch.bfloat16, autocast=True, grad_scaler=False)
    return Amp(device.type, torch.float32, autocast=False, grad_scaler=False)


def device_of(model: torch.nn.Module, device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else the device of the model's first parameter (CPU for a parameterless model)."""
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; None picks CUDA when available, else the CPU.

    Raises:
        RuntimeError: ``cuda`` was asked for but is not available.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but CUDA is not available")
    return dev
