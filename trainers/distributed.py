"""Process-group setup for single-process and torchrun (DDP) training.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous address); without them the run
is one process. The backend is NCCL on CUDA and gloo on CPU. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from unimo_g.devices import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: `rank` of `world_size`, its GPU index on the node
    (`local_rank`), and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def setup_distributed(device_name: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), and pick the device.

    `device_name` is the config's device: "cuda" becomes cuda:LOCAL_RANK (cuda:0 for one process);
    with several processes an explicit "cuda:N" is refused, as every rank would take the same GPU.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size > 1 and device_name.startswith("cuda:"):
        raise ValueError(f"device {device_name!r} with {world_size} processes: use device 'cuda' (one GPU per rank)")
    if device_name == "cuda":  # always an indexed device: set_device and NCCL need one
        device_name = f"cuda:{local_rank}"
    device = resolve_device(device_name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        device_id = device if backend == "nccl" else None  # binds NCCL to this rank's GPU
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, device_id=device_id)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        _CONTROL_GROUPS.clear()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_gather_objects(info: DistInfo, value: Any) -> list[Any]:
    """Every rank's `value`, indexed by rank (a one-element list in a single process)."""
    if not info.distributed:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def mean_over_ranks(info: DistInfo, values: torch.Tensor) -> torch.Tensor:
    """`values` averaged over ranks (unchanged in a single process)."""
    if not info.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / info.world_size


def min_over_ranks(info: DistInfo, value: int) -> int:
    """The smallest of every rank's `value` (this rank's in a single process). Travels on the CPU
    (gloo): an NCCL all-reduce read back on the host would wait for every kernel queued before it."""
    if not info.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=_control_group())
    return int(tensor.item())


_CONTROL_GROUPS: dict = {}


def _control_group():
    """A gloo group of all ranks for small host-side messages (None: the default group is gloo).
    Made on first use, which every rank reaches in the same order."""
    if dist.get_backend() == "gloo":
        return None
    if "gloo" not in _CONTROL_GROUPS:
        _CONTROL_GROUPS["gloo"] = dist.new_group(backend="gloo")
    return _CONTROL_GROUPS["gloo"]
