"""Precision ``auto``: what it resolves to from the device and the CPU flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gaitheat.device import amp_for, cpu_flags, cpu_has_native_bf16, resolve_precision

AVX2 = frozenset({"fpu", "sse2", "avx2", "fma"})
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}


def test_auto_is_fp16_on_cuda_bf16_on_native_bf16_cpus_else_fp32() -> None:
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "cpu", SAPPHIRE_RAPIDS) == "bf16"
    assert resolve_precision("auto", "cpu", AVX2 | {"avx512f"}) == "fp32"  # AVX-512 without BF16: emulated
    assert resolve_precision("auto", "cpu", frozenset({"amx_bf16"})) == "bf16"
    assert resolve_precision("bf16", "cpu", AVX2) == "bf16"  # explicit choices are kept
    assert resolve_precision("fp16", "cpu", SAPPHIRE_RAPIDS) == "fp16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", "cpu")


def test_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == frozenset({"fpu", "sse2", "avx2", "avx512_bf16"})
    assert cpu_has_native_bf16(cpu_flags(info))
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert not cpu_has_native_bf16(frozenset())


def test_amp_for_auto_follows_this_machine() -> None:
    cpu = torch.device("cpu")
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    amp = amp_for("auto", cpu)
    assert amp == amp_for(expected, cpu)
    assert amp.autocast == (expected == "bf16") and not amp.grad_scaler


def test_defaults_are_auto() -> None:
    from gaitheat.config import load_config
    from gaitheat.experiment import ExperimentConfig

    cfg = ExperimentConfig()
    assert cfg.train.precision == "auto" and cfg.eval.precision == "auto"
    assert load_config(ExperimentConfig, "cpu-small").train.precision == "auto"
