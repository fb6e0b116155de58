"""Device and dtype names from configs: their spelling checked without importing torch (config loading,
`unimo-g verify` and `report` stay fast), and resolved to torch objects without silent fallbacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("fp32", "bf16", "fp16")


def check_device_name(name: str) -> None:
    """Validate the syntax of a device name: `cpu`, `cuda` or `cuda:N` (config-time check)."""
    if name == "cpu" or name == "cuda":
        return
    if name.startswith("cuda:") and name[5:].isdigit():
        return
    raise ValueError(f"device must be cpu, cuda or cuda:N, got {name!r}")


def check_dtype_name(name: str) -> None:
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_NAMES)}, got {name!r}")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype a config's dtype name stands for (`fp32`, `bf16`, `fp16`)."""
    import torch

    check_dtype_name(name)
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def resolve_device(name: str) -> torch.device:
    """The torch device for `name`; asking for a GPU that is not there raises, never falls back to CPU."""
    import torch

    check_device_name(name)
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available on this worker")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype for `name`; half precision on CPU is refused (slow and inexact there)."""
    import torch

    dtype = torch_dtype(name)
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("dtype fp16 is not supported on cpu; use fp32 or bf16")
    return dtype
