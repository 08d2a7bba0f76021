"""How many CPU cores this process may use: its affinity mask, not the machine's core count.

A leaf module (no gaitheat imports), so per-video extraction and the batch layer can both ask it
without importing each other.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask, which ``taskset``, Slurm and cgroup cpusets set
    (``os.cpu_count()`` counts the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
