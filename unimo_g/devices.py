"""Device and dtype names from configs, resolved without silent fallbacks."""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_device_name(name: str) -> None:
    """Validate the syntax of a device name: `cpu`, `cuda` or `cuda:N` (config-time check)."""
    if name == "cpu" or name == "cuda":
        return
    if name.startswith("cuda:") and name[5:].isdigit():
        return
    raise ValueError(f"device must be cpu, cuda or cuda:N, got {name!r}")


def check_dtype_name(name: str) -> None:
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")


def resolve_device(name: str) -> torch.device:
    """The torch device for `name`; asking for a GPU that is not there raises, never falls back to CPU."""
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
    check_dtype_name(name)
    dtype = DTYPES[name]
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("dtype fp16 is not supported on cpu; use fp32 or bf16")
    return dtype
