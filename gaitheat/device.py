"""Where tensors run and in which precision: shared by training, evaluation and the gallery.

* :func:`amp_for` turns a configured precision (``fp32`` | ``fp16`` | ``bf16``) into an :class:`Amp`
  for one device: one autocast code path with ``enabled=`` flags (style §8), fp16 only on CUDA.
* :func:`device_of` is where a model's parameters live (or an explicit device).
* :func:`pick_device` resolves ``"cpu"`` / ``"cuda"`` / None (CUDA when available) outside torchrun.

Training and evaluation both import this module and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Amp:
    """Mixed precision for one device: autocast dtype and switches (one code path, ``enabled=`` flags)."""

    device_type: str
    dtype: torch.dtype
    autocast: bool
    grad_scaler: bool


def amp_for(precision: str, device: torch.device) -> Amp:
    """fp16 autocast + GradScaler on CUDA (fp32 on CPU, where fp16 is not worth it); bf16 autocast anywhere."""
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
