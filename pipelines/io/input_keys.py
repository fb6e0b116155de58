"""The source keys an input holds, listed without reading an image: what `verify --input` compares
with the rows and rejects of an output folder, so a killed, failed or disk-full run shows exactly
which inputs have neither.

Each unit kind gives the keys its reader (`pipelines.io.source_formats`) would give: folder keys from
the listing; img2dataset's key column (or `<file>:<row>` where it has none) from the Parquet files,
WebDataset member names from the tar's headers; manifest entries as the manifest readers make them
(paths, not the images they name). A unit that cannot be listed yields the key its reader would
give the whole unit (`unit.path`, an `unreadable_file` source error).
"""

from __future__ import annotations

import tarfile
from typing import Iterator

import pyarrow as pa

from pipelines.io.source_formats import (
    DEFAULT_READ,
    I2D_SUCCESS,
    ReadUnit,
    _iter_rows,
    _split_member,
    open_binary,
    read_manifest,
)
from unimo_g.pipeline_config import ReadConfig


def _metadata_keys(path: str, failures_only: bool = False) -> Iterator[str]:
    for index, row in enumerate(_iter_rows(path, ["key", "status"])):
        if failures_only and row.get("status") == I2D_SUCCESS:
            continue
        yield str(row["key"]) if row.get("key") is not None else f"{path}:{index}"


def _tar_keys(path: str) -> Iterator[str]:
    """Member keys of a WebDataset tar; a tar that breaks ends with `<path>:end`, as its reader's does."""
    seen: set[str] = set()
    with open_binary(path) as handle:
        # a seekable file is read header by header, its members' data skipped; a stream is read through
        mode = "r:*" if handle.seekable() else "r|*"
        try:
            with tarfile.open(fileobj=handle, mode=mode) as archive:
                for member in archive:
                    key, _ = _split_member(member.name)
                    if member.isfile() and key not in seen:
                        seen.add(key)
                        yield key
        except (tarfile.TarError, EOFError, OSError):
            yield f"{path}:end"


def _unit_keys(unit: ReadUnit, config: ReadConfig) -> Iterator[str]:
    if unit.kind == "folder":
        yield from (group.key for group in unit.groups)
    elif unit.kind in ("i2d_parquet", "i2d_files"):
        yield from _metadata_keys(unit.path)
    elif unit.kind == "i2d_failures":
        yield from _metadata_keys(unit.path, failures_only=True)
    elif unit.kind == "i2d_tar":
        yield from _tar_keys(unit.path)
        if unit.companion is not None:
            yield from _metadata_keys(unit.companion, failures_only=True)
    else:  # jsonl / parquet manifests: entries are keys and paths; nothing is fetched
        yield from (entry.key for entry in read_manifest(unit, config))


def unit_keys(unit: ReadUnit, config: ReadConfig = DEFAULT_READ) -> list[str]:
    """The source keys of one read unit, in reading order."""
    keys: list[str] = []
    try:
        keys.extend(_unit_keys(unit, config))
    except (OSError, pa.ArrowException):
        keys.append(unit.path)  # the reader makes the whole unit one unreadable_file input
    return keys
