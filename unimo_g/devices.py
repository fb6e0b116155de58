"""Device and dtype names from configs, resolved without silent fallbacks."""

from __future__ import annotations

import torch

from unimo_g.device_names import check_device_name, check_dtype_name

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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
