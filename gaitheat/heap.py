"""Keep freed memory in the process heap for reuse: the CPU stand-in for CUDA's caching allocator.

A GaitHeat training step on CPU allocates and frees hundreds of activation tensors of tens to hundreds
of MB. glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap``
and returns it with ``munmap`` on free, so each step page-faults all of its activations in again and
the kernel zeroes every page. Measured at full width on 2 cores (``benchmarks/train_step.py``), that
is about half of a step's wall time, in any computation: the official forward went from 0.171 to
0.078 s per training frame with the heap kept, and from 52.8 to 26.4 ms per inference frame.

:func:`retain_freed_memory` makes glibc serve all allocations from its heap and never trim it, so
freed activations are reused by the next step without faults. The price is resident memory: it
stays at the run's peak, which a training loop reaches every step anyway, plus fragmentation (the
heap cannot always fit a large activation into a freed hole). Measured on the full-width step of
120 frames: resident memory settled at 8.1-8.4 GB after the first steps, where activations peak at
about 5 GB. It is process-wide, inherited by forked DataLoader workers, and a no-op outside glibc.
``train.retain_heap`` / ``eval.retain_heap`` switch it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

# mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

_retained = False


def retain_freed_memory() -> bool:
    """Serve every allocation from the heap and never trim it (glibc); True if the setting is in effect."""
    global _retained
    if _retained:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success; a 31-bit threshold is the largest the C int parameter takes
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    if not ok:
        log.warning("mallopt refused to keep freed memory; CPU steps will page-fault their activations")
    _retained = ok
    return ok
