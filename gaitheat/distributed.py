"""Process-group handling: DDP only when torchrun says so, and the collectives the trainer calls.

``setup()`` reads torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, plus
``MASTER_ADDR``/``MASTER_PORT``) and creates a process group only when the world size is above 1:
NCCL on CUDA, gloo on CPU. A plain ``gaitheat train`` therefore needs no process group at all.

Collectives are kept out of the loss functions (style §11): the training step calls
:func:`all_gather_with_grad` explicitly and hands the result to a pure loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its machine, its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from exc


def setup(device: str | None = None) -> DistInfo:
    """Pick the device and, under torchrun with several processes, join the process group.

    Args:
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available). Under DDP on CUDA each process
            takes GPU ``LOCAL_RANK``.
    """
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but CUDA is not available")
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(kind)
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                             device_id=dev if dev.type == "cuda" else None)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def cleanup() -> None:
    """Leave the process group, if this process joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # every rank reaches this point before any tears gloo down: a rank that destroys the group
        # while a peer is still finishing its last collective makes that peer abort
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (rank order); the gradient flows through the local part only.

    The other ranks' parts are constants here; their own processes carry their gradients. A loss on
    the gathered tensor, multiplied by the world size, therefore gives after DDP's gradient averaging
    exactly the gradient of that loss on the global batch. All ranks must pass the same shape.

    Args:
        x: (B_local, ...) tensor.
    Returns:
        (world_size * B_local, ...) tensor; ``x`` itself without a process group.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    world_size = torch.distributed.get_world_size()
    if world_size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size)]
    torch.distributed.all_gather(parts, x.detach().contiguous())
    parts[torch.distributed.get_rank()] = x
    return torch.cat(parts, dim=0)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj`` (rank order); ``[obj]`` without a process group."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def mean_across_ranks(x: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) tensor over ranks, for logging; ``x`` without a process group."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    y = x.detach().clone()
    torch.distributed.all_reduce(y, op=torch.distributed.ReduceOp.SUM)
    return y / torch.distributed.get_world_size()


def barrier() -> None:
    """Wait for all ranks (no-op without a process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
