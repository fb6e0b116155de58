"""Reading an output folder, local or object store (gs://, s3://), through Beam's FileSystems."""

from __future__ import annotations

import contextlib
import json
from typing import Iterator, Optional

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.io.write import MANIFEST_NAME, reject_files_pattern, shard_files_pattern
from pipelines.outputs.manifest import matching_files
from unimo_g.schema import check_schema_version


def shard_files(output_dir: str) -> list[str]:
    return matching_files(shard_files_pattern(output_dir))


def reject_files(output_dir: str) -> list[str]:
    return matching_files(reject_files_pattern(output_dir))


@contextlib.contextmanager
def open_parquet(path: str) -> Iterator[pq.ParquetFile]:
    """A Parquet file whose schema version this code reads (SchemaVersionError otherwise), closed on exit."""
    with FileSystems.open(path) as handle:
        parquet = pq.ParquetFile(handle)
        check_schema_version(parquet.schema_arrow.metadata, where=path)
        yield parquet


def read_manifest(output_dir: str) -> Optional[dict]:
    """OUTPUT/manifest.json, or None when the folder has none."""
    path = FileSystems.join(output_dir, MANIFEST_NAME)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode("utf-8"))


def write_text(path: str, text: str) -> str:
    """Write a UTF-8 file (local or object store) via a temporary name and a rename; returns `path`."""
    temporary = path + ".tmp"
    with FileSystems.create(temporary) as handle:
        handle.write(text.encode("utf-8"))
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])
    return path
