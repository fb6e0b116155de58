"""Writing sample shards and reject shards (Parquet, schema v1) under one output folder.

    OUTPUT/shards/part-SSSSS-of-NNNNN.parquet    one row per sample (`unimo_g.schema.shard_schema`)
    OUTPUT/rejects/part-SSSSS-of-NNNNN.parquet   one row per reject (`unimo_g.schema.reject_schema`)
    OUTPUT/manifest.json                         `pipelines.manifest`

Both schemas carry the schema version and the run's lineage in their metadata, so every file's
footer says what wrote it. Row groups hold `WriteConfig.row_group_rows` rows (the last of a bundle
fewer). An empty PCollection still writes one valid Parquet file with zero rows and the full schema
(Beam writes one empty shard), so readers always find a schema; they must accept zero rows.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from unimo_g.pipeline_config import WriteConfig
from unimo_g.schema import reject_schema, shard_schema

SHARDS_DIR = "shards"
REJECTS_DIR = "rejects"
MANIFEST_NAME = "manifest.json"
FILE_PREFIX = "part"
FILE_SUFFIX = ".parquet"
# Beam flushes a row group once its buffer holds this many bytes; 1 makes every record batch of
# `row_group_rows` rows its own row group (Beam's documented way to size row groups by rows).
_FLUSH_EVERY_BATCH = 1


def shard_files_pattern(output_dir: str) -> str:
    return FileSystems.join(output_dir, SHARDS_DIR, f"*{FILE_SUFFIX}")


def reject_files_pattern(output_dir: str) -> str:
    return FileSystems.join(output_dir, REJECTS_DIR, f"*{FILE_SUFFIX}")


def _is_local(path: str) -> bool:
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def _delete_tree(path: str) -> None:
    """Delete a folder (local) or every object under a prefix (object stores)."""
    if _is_local(path):
        if os.path.isdir(path) or os.path.isfile(path):
            FileSystems.delete([path])  # a local folder is removed recursively
        return
    matched = [meta.path for meta in FileSystems.match([FileSystems.join(path, "**")])[0].metadata_list]
    if FileSystems.exists(path):
        matched.append(path)
    if matched:
        FileSystems.delete(matched)


def prepare_output_dir(output_dir: str, folders: Sequence[str] = (SHARDS_DIR, REJECTS_DIR)) -> None:
    """Make `output_dir` ready for a (re)run: delete only OUTPUT/<folder> for each of `folders`
    (default: shards and rejects) and OUTPUT/manifest.json from an earlier run; everything else
    in OUTPUT stays.

    Raises ValueError when `output_dir` is an existing file.
    """
    is_file = os.path.isfile(output_dir) if _is_local(output_dir) else (
        output_dir in [m.path for m in FileSystems.match([output_dir])[0].metadata_list])
    if is_file:
        raise ValueError(f"output path {output_dir!r} is a file, not a folder")
    for folder in folders:
        _delete_tree(FileSystems.join(output_dir, folder))
    manifest = FileSystems.join(output_dir, MANIFEST_NAME)
    if FileSystems.exists(manifest):
        FileSystems.delete([manifest])
    if _is_local(output_dir):
        os.makedirs(output_dir, exist_ok=True)


def _codec(config: WriteConfig) -> str:
    return config.compression  # snappy | zstd | gzip | none: names pyarrow accepts as they are


def _to_row(record) -> dict:
    return record if isinstance(record, dict) else record.to_row()


def _parquet_writer(output_dir: str, folder: str, schema, config: WriteConfig) -> beam.io.WriteToParquet:
    return beam.io.WriteToParquet(
        FileSystems.join(output_dir, folder, FILE_PREFIX),
        schema,
        row_group_buffer_size=_FLUSH_EVERY_BATCH,
        record_batch_size=config.row_group_rows,
        codec=_codec(config),
        use_compliant_nested_type=True,
        file_name_suffix=FILE_SUFFIX,
        num_shards=config.num_shards,
    )


class WriteParquetRows(beam.PTransform):
    """PCollection of row dicts (or records with `to_row()`) -> OUTPUT/<folder>/part-*.parquet
    with `schema` (its metadata goes into every file's footer)."""

    def __init__(self, output_dir: str, folder: str, schema, config: Optional[WriteConfig] = None):
        super().__init__()
        self.output_dir = output_dir
        self.folder = folder
        self.schema = schema
        self.config = config or WriteConfig()

    def expand(self, rows):
        return (
            rows
            | "ToRows" >> beam.Map(_to_row)
            | "WriteParquet" >> _parquet_writer(self.output_dir, self.folder, self.schema, self.config)
        )


class WriteShards(beam.PTransform):
    """PCollection[unimo_g.records.Sample] (or row dicts) -> OUTPUT/shards/part-*.parquet.

    The file footers carry `shard_schema(lineage)`'s metadata (schema version and lineage).
    """

    def __init__(self, output_dir: str, config: WriteConfig, lineage: Optional[dict] = None):
        super().__init__()
        self.output_dir = output_dir
        self.config = config
        self.schema = shard_schema(lineage)

    def expand(self, rows):
        return (
            rows
            | "ToRows" >> beam.Map(_to_row)
            | "WriteParquet" >> _parquet_writer(self.output_dir, SHARDS_DIR, self.schema, self.config)
        )


class WriteRejects(beam.PTransform):
    """PCollection[unimo_g.records.Reject] -> OUTPUT/rejects/part-*.parquet (`reject_schema(lineage)`)."""

    def __init__(self, output_dir: str, lineage: Optional[dict] = None, config: Optional[WriteConfig] = None):
        super().__init__()
        self.output_dir = output_dir
        self.config = config or WriteConfig()
        self.schema = reject_schema(lineage)

    def expand(self, rejects):
        return (
            rejects
            | "ToRows" >> beam.Map(_to_row)
            | "WriteParquet" >> _parquet_writer(self.output_dir, REJECTS_DIR, self.schema, self.config)
        )
