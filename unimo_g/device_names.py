"""Device and dtype names as configs spell them, checked without importing torch (config loading,
`unimo-g verify` and `report` stay fast); `unimo_g.devices` resolves them to torch objects."""

from __future__ import annotations

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
