"""Writing sample and reject shards (Parquet, schema v4: `unimo_g.schema.SCHEMA_VERSION`) under one output folder.

    OUTPUT/shards/RUN_DIGEST.parquet     one row per sample (`unimo_g.schema.shard_schema`)
    OUTPUT/rejects/RUN_DIGEST.parquet    one row per reject (`unimo_g.schema.reject_schema`)
    OUTPUT/ledger/RUN/...                what each run read (`pipelines.io.ledger`)
    OUTPUT/manifest.json                 `pipelines.outputs.manifest`

Two writers:
- `WriteRolling` (the prompt pipeline) commits files as they fill: a file holds at most
  `WriteConfig.rows_per_file` rows (fewer at the end of a bundle), is written under a temporary
  name and renamed once complete, so a killed run leaves whole files that `--resume` keeps, plus
  temporary ones that it deletes. A file's name is its run id and a digest of the ids it holds: a
  bundle that a runner retries rewrites the same files under the same names instead of adding
  copies. With `commit_every_s`, a file is also committed once it has been open that long, so a
  long run on few workers keeps what it did when killed; the cut then depends on time, so a retried
  bundle may commit its rows again under other names (the local runners never retry; `--resume`
  and `verify --repair` remove such copies). It yields one {"path", "rows"} per file: the final
  manifest step waits on these.
- `WriteParquetRows` / `WriteRejects` (the feature job) go through Beam's file
  sink (`part-SSSSS-of-NNNNN.parquet`), whose files appear only when the whole job finishes; an
  empty PCollection still writes one valid Parquet file with zero rows and the full schema.

Both carry the schema version and the run's lineage in their schema metadata, so every file's
footer says what wrote it. Row groups hold `WriteConfig.row_group_rows` rows (the last fewer).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from typing import Iterator, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from unimo_g.pipeline_config import WriteConfig
from unimo_g.schema import reject_schema

SHARDS_DIR = "shards"
REJECTS_DIR = "rejects"
LEDGER_DIR = "ledger"
MANIFEST_NAME = "manifest.json"
TEMP_PREFIX = ".tmp-"  # files being written: never matched by `*.parquet`, deleted by --resume
TEMP_SUFFIX = ".partial"
RUN_SEPARATOR = "_"  # RUN_DIGEST.parquet: run ids contain no underscore
FILE_PREFIX = "part"
FILE_SUFFIX = ".parquet"
# Beam flushes a row group once its buffer holds this many bytes; 1 makes every record batch of
# `row_group_rows` rows its own row group (Beam's documented way to size row groups by rows).
_FLUSH_EVERY_BATCH = 1


def matching_files(pattern: str) -> list[str]:
    """Paths matching a glob (local or object store), sorted."""
    return sorted(meta.path for meta in FileSystems.match([pattern])[0].metadata_list)


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


def earlier_output(output_dir: str, folders: Sequence[str]) -> list[str]:
    """The names among `folders` and manifest.json that exist in `output_dir` and are not empty:
    what `prepare_output_dir` would delete."""
    found = []
    for name in (*folders, MANIFEST_NAME):
        path = FileSystems.join(output_dir, name)
        if name == MANIFEST_NAME:
            present = FileSystems.exists(path)
        else:
            present = bool(FileSystems.match([FileSystems.join(path, "*")])[0].metadata_list)
        if present:
            found.append(name)
    return found


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


# ---------------------------------------------------------------- files committed as they fill


def run_file_name(run_id: str, digest: str) -> str:
    return f"{run_id}{RUN_SEPARATOR}{digest}{FILE_SUFFIX}"


def run_of_file(path: str) -> Optional[str]:
    """The run id in a file name written by `WriteRolling` (None for Beam's `part-*` names)."""
    name = FileSystems.split(path)[1]
    if not name.endswith(FILE_SUFFIX) or RUN_SEPARATOR not in name:
        return None
    return name[: -len(FILE_SUFFIX)].rsplit(RUN_SEPARATOR, 1)[0]


def temporary_path(folder_path: str, run_id: str) -> str:
    return FileSystems.join(folder_path, f"{TEMP_PREFIX}{run_id}-{uuid.uuid4().hex}{TEMP_SUFFIX}")


def commit(temporary: str, final: str) -> None:
    """Rename a complete file to its final name, replacing a copy a retried bundle wrote before."""
    if FileSystems.exists(final):
        FileSystems.delete([final])
    FileSystems.rename([temporary], [final])


def write_table_file(folder_path: str, run_id: str, table: pa.Table, compression: str = "zstd") -> str:
    """Write one whole table as RUN_DIGEST.parquet under `folder_path` (temporary name, then a
    rename); the digest is of its `id` column. Returns the final path."""
    digest = hashlib.sha256("\n".join(table.column("id").to_pylist()).encode("utf-8")).hexdigest()[:20]
    temporary = temporary_path(folder_path, run_id)
    with FileSystems.create(temporary) as handle:
        pq.write_table(table, handle, compression=compression, use_compliant_nested_type=True)
    final = FileSystems.join(folder_path, run_file_name(run_id, digest))
    commit(temporary, final)
    return final


class _RollingParquetFn(beam.DoFn):
    """Row dicts -> OUTPUT/<folder>/RUN_DIGEST.parquet files of at most `rows_per_file` rows.

    Rows stream into an open Parquet writer one row group at a time (memory: one row group); the
    file is committed when full and at the end of the bundle. Yields {"path": str, "rows": int}.
    """

    def __init__(self, folder_path: str, schema: pa.Schema, config: WriteConfig, run_id: str, counter: str,
                 commit_every_s: float = 0.0):
        self.folder_path = folder_path
        self.schema = schema
        self.config = config
        self.run_id = run_id
        self.counter = counter
        self.commit_every_s = commit_every_s

    def setup(self):
        from pipelines import metrics  # the metric names live there

        self.rows_written = beam.metrics.Metrics.counter(metrics.WRITE, self.counter)
        self.files_written = beam.metrics.Metrics.counter(metrics.WRITE, f"{self.counter}_files")

    def start_bundle(self):
        self._handle = self._writer = self._temporary = None
        self._ids: list[str] = []
        self._buffer: list[dict] = []
        self._digest = hashlib.sha256()

    def process(self, record) -> Iterator[dict]:
        row = _to_row(record)
        if self._writer is None:
            self._temporary = temporary_path(self.folder_path, self.run_id)
            self._handle = FileSystems.create(self._temporary)
            self._writer = pq.ParquetWriter(self._handle, self.schema, compression=_codec(self.config),
                                            use_compliant_nested_type=True)
            self._opened_at = time.monotonic()
        self._buffer.append(row)
        self._ids.append(row["id"])
        self._digest.update(row["id"].encode("utf-8") + b"\n")
        if len(self._buffer) >= self.config.row_group_rows:
            self._flush_row_group()
        if len(self._ids) >= self.config.rows_per_file or (
                self.commit_every_s and time.monotonic() - self._opened_at >= self.commit_every_s):
            yield self._commit()

    def finish_bundle(self):
        if self._writer is not None:
            yield beam.utils.windowed_value.WindowedValue(
                self._commit(), 0, [beam.transforms.window.GlobalWindow()])

    def teardown(self):  # a failed bundle: its unfinished file stays temporary (deleted by --resume)
        if self._handle is not None:
            self._handle.close()

    def _flush_row_group(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer = []

    def _commit(self) -> dict:
        self._flush_row_group()
        self._writer.close()
        self._handle.close()
        final = FileSystems.join(self.folder_path, run_file_name(self.run_id, self._digest.hexdigest()[:20]))
        commit(self._temporary, final)
        rows = len(self._ids)
        self.rows_written.inc(rows)
        self.files_written.inc()
        self._handle = self._writer = self._temporary = None
        self._ids, self._digest = [], hashlib.sha256()
        return {"path": final, "rows": rows}


class WriteRolling(beam.PTransform):
    """PCollection of row dicts (or records with `to_row()`) -> OUTPUT/<folder>/RUN_DIGEST.parquet,
    committed as they fill (see the module docstring); returns PCollection[{"path", "rows"}].

    `counter` names the Beam counter of rows written (namespace `write`), e.g. `rows` or `rejects`;
    `commit_every_s` (0: off) also commits a file once it has been open that long.
    """

    def __init__(self, output_dir: str, folder: str, schema: pa.Schema, config: WriteConfig, run_id: str,
                 counter: str, commit_every_s: float = 0.0):
        super().__init__()
        if RUN_SEPARATOR in run_id:
            raise ValueError(f"a run id holds no {RUN_SEPARATOR!r}: {run_id!r}")
        self.fn = _RollingParquetFn(FileSystems.join(output_dir, folder), schema, config, run_id, counter,
                                    commit_every_s)

    def expand(self, rows):
        return rows | "WriteFiles" >> beam.ParDo(self.fn)
