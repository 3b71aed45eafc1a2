"""DistributedDataParallel plumbing: set up from torchrun's environment, rank helpers, gathering.

``torchrun --nproc_per_node N -m dynatss train ...`` (and multi-node ``--nnodes N
--rdzv-endpoint HOST:PORT``) exports RANK, WORLD_SIZE and LOCAL_RANK; a plain ``dynatss train``
has none of them and runs as a single process with world size 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dynatss.errors import DynatssError


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes logs, metrics and checkpoints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def global_rank() -> int:
    """This process's rank from torchrun's environment (0 without torchrun), before any set-up."""
    return int(os.environ.get("RANK", 0)) if launched_by_torchrun() else 0


def setup_distributed(device_type: str) -> DistributedContext:
    """Initialise the process group from the environment (NCCL on CUDA, gloo on CPU), if launched so."""
    if not launched_by_torchrun():
        return DistributedContext(rank=0, local_rank=0, world_size=1)
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world_size > 1 and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def per_rank_batch_size(total: int, world_size: int) -> int:
    """``solver.batch_size`` is the total over all processes; it must split evenly."""
    if total % world_size != 0:
        raise DynatssError(
            f"solver.batch_size={total} is not divisible by the number of processes ({world_size})"
        )
    return total // world_size


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order; ``[value]`` without a process group."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average scalar logging values over ranks (the logged loss is the whole batch's loss)."""
    if not is_distributed() or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[key]) for key in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.tolist()))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on at least one (e.g. a NaN loss somewhere)."""
    if not is_distributed():
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()
