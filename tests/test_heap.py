"""Heap retention: activations freed by one step are reused by the next without page faults."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# a "step" allocates and frees activations of 24-100 MB, above glibc's largest mmap threshold
PROBE = """
import resource, sys
import torch
if sys.argv[1] == "retain":
    from gaitheat.heap import retain_freed_memory
    assert retain_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for step in range(8):
    if step == 2:
        before = faults()
    acts = [torch.ones(n) for n in (6_000_000, 12_000_000, 25_000_000, 12_000_000)]
    del acts
print(faults() - before)
"""


def faults_in_steps(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_retained_heap_reuses_freed_memory_without_faults() -> None:
    stock, retained = faults_in_steps("stock"), faults_in_steps("retain")
    assert stock > 6 * 50_000  # every step maps its 220 MB afresh: 4 KiB pages faulted in
    assert retained < stock // 3  # mostly reused (some steps still extend the heap: fragmentation)
