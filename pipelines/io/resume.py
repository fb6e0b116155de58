"""Safe reruns into an output folder: refuse, overwrite, or resume.

A run never deletes output it was not asked to: a non-empty output folder is refused unless the
user passes `--resume` (keep everything, process what is missing) or `--overwrite` (delete
`shards/`, `rejects/`, `ledger/` and `manifest.json`, nothing else).

How resuming works, and why it is safe:
- The unit of resumption is the committed file. Rows and rejects are written by
  `pipelines.io.write.WriteRolling` in files of at most `write.rows_per_file` rows, each renamed to
  its final name only once complete (Beam's own file sinks commit everything at the very end of a
  job, so a killed run would keep nothing). A killed run therefore leaves complete files plus
  temporary ones (ours, `.tmp-*.partial`, and Beam's `beam-temp-*`); `--resume` deletes the
  temporary ones first.
- An input is done when its source key appears in a committed row (`source_key`) or reject
  (`source`). The done keys are read from those two columns only (Parquet column projection:
  never image bytes) inside the job, and reach the read stage as a side input; the read stage
  skips done keys before fetching their images (folders, manifests) or decoding them (img2dataset
  shards, whose rows hold the bytes), and lists them as skipped in its ledger.
- A new input whose content id already has a row (a duplicate of finished work) becomes a
  `dedupe`/`duplicate` reject, so no id is ever written twice.
- Each run writes under its own run id (file names `RUN_DIGEST.parquet`, `ledger/RUN/`), so files
  of different runs never collide and the manifest reports every run separately; its totals cover
  all runs.
- `--retry-rejects REASON,...` removes the rejects of those reasons (transient failures such as
  `failed_to_download` or `model_error`) from their files before the job starts; their inputs are
  then no longer done and are processed again. If that run dies, the next `--resume` does it.
- Resuming with a config that decides rows differently would mix outputs: it is refused, naming the
  settings (the config in the files' footers against this run's, `pipelines.io.config_changes`). Settings
  that only change how the run executes (batch sizes of per-image forwards, model sharing, file
  sizes, ...) may change.

Known limit: inputs are told apart by source key; if several inputs share one key (a manifest
listing the same image path twice with different captions), resume treats them as one, and
`verify` reports any that were left out.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
from typing import Callable, Iterable, Mapping, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines import metrics
from pipelines.local_checks import LEASE_NAME, not_empty_message, output_is_file_message
from pipelines.outputs.repair import repair
from pipelines.prompts.decode import duplicate_reject
from pipelines.staged import REJECTS, DoFnStage
from pipelines.io.write import (
    LEDGER_DIR, MANIFEST_NAME, REJECTS_DIR, SHARDS_DIR, TEMP_PREFIX, TEMP_SUFFIX, _delete_tree,
    _is_local, reject_files_pattern, run_of_file, shard_files_pattern, write_table_file,
)
from pipelines.io.config_changes import changes_affecting_rows
from unimo_g.schema import lineage_of

LOGGER = logging.getLogger(__name__)
OUTPUT_FOLDERS = (SHARDS_DIR, REJECTS_DIR, LEDGER_DIR)
BEAM_TEMP_PREFIX = "beam-temp-"  # Beam's file sinks write under OUTPUT/<folder>/beam-temp-*
MODES = ("new", "resume", "overwrite")


class OutputRefused(ValueError):
    """The output folder cannot be used as asked (not empty, other config, a file)."""


def new_run_id() -> str:
    """A sortable, unique run id: UTC start time and a random suffix, e.g. 20260101T120000Z-3fa2."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def _listing(path: str) -> list[str]:
    """What a folder holds, but the lease of the run about to write it."""
    if _is_local(path):
        return sorted(n for n in os.listdir(path) if n != LEASE_NAME) if os.path.isdir(path) else []
    return [meta.path for meta in FileSystems.match([FileSystems.join(path, "*")])[0].metadata_list
            if FileSystems.split(meta.path)[1] != LEASE_NAME]


def _match(pattern: str) -> list[str]:
    return sorted(meta.path for meta in FileSystems.match([pattern])[0].metadata_list)


def check_output(output_dir: str, mode: str, config: Optional[Mapping] = None) -> None:
    """Refuse `output_dir` for a run in `mode` (new | resume | overwrite) without changing it:
    new needs it empty or absent; resume needs its files written with a config that decides rows as
    `config` (a `to_dict` mapping) does. Raises OutputRefused."""
    if mode not in MODES:
        raise ValueError(f"unknown output mode {mode!r}")
    if _is_local(output_dir) and os.path.isfile(output_dir):
        raise OutputRefused(output_is_file_message(output_dir))
    if mode == "new" and _listing(output_dir):
        raise OutputRefused(not_empty_message(output_dir))
    if mode == "resume" and config is not None:
        check_same_config(output_dir, config)


def clean_output(output_dir: str, mode: str, retry_reasons: Sequence[str] = ()) -> dict:
    """Make a checked `output_dir` ready: overwrite deletes shards/, rejects/, ledger/ and
    manifest.json; resume deletes temporary files of killed runs, removes outputs that overlapping
    runs wrote twice for one input (`pipelines.outputs.repair`) and drops the rejects whose reason is in
    `retry_reasons`. Returns {"retried": rejects dropped, "leftovers": temporary files deleted}."""
    retried, leftovers = 0, []
    if mode == "overwrite":
        for folder in OUTPUT_FOLDERS:
            _delete_tree(FileSystems.join(output_dir, folder))
        manifest = FileSystems.join(output_dir, MANIFEST_NAME)
        if FileSystems.exists(manifest):
            FileSystems.delete([manifest])
    elif mode == "resume":
        leftovers = remove_leftovers(output_dir)
        repaired = repair(output_dir)  # outputs written twice by overlapping runs before leases
        if repaired["removed"]:
            LOGGER.warning("removed %d outputs written twice for one input from %d files", repaired["removed"],
                           repaired["files"])
        if retry_reasons:
            retried = drop_rejects(output_dir, retry_reasons)
    if _is_local(output_dir):  # both folders exist even when one stays empty (object stores have no folders)
        for folder in (SHARDS_DIR, REJECTS_DIR):
            os.makedirs(os.path.join(output_dir, folder), exist_ok=True)
    return {"retried": retried, "leftovers": len(leftovers)}


def prepare_output(output_dir: str, mode: str, config: Optional[Mapping] = None,
                   retry_reasons: Sequence[str] = ()) -> dict:
    """`check_output` then `clean_output`."""
    check_output(output_dir, mode, config)
    return clean_output(output_dir, mode, retry_reasons)


def leftover_files(output_dir: str) -> list[str]:
    """The temporary files a killed run left in shards/, rejects/ and ledger/ (and a manifest.json.tmp
    a full disk left), sorted."""
    found: list[str] = []
    for folder in (SHARDS_DIR, REJECTS_DIR, LEDGER_DIR, f"{LEDGER_DIR}/*"):
        base = FileSystems.join(output_dir, folder)
        found += _match(FileSystems.join(base, f"{TEMP_PREFIX}*{TEMP_SUFFIX}"))
        found += [p.rstrip("/") for p in _match(FileSystems.join(base, f"{BEAM_TEMP_PREFIX}*"))]
    if _is_local(output_dir):  # Beam's temporary folders match as folders only on local disks
        for folder in (SHARDS_DIR, REJECTS_DIR):
            base = os.path.join(output_dir, folder)
            if os.path.isdir(base):
                found += [os.path.join(base, n) for n in os.listdir(base) if n.startswith(BEAM_TEMP_PREFIX)]
    found += _match(FileSystems.join(output_dir, f"{MANIFEST_NAME}.tmp"))
    return sorted(set(found))


def remove_leftovers(output_dir: str) -> list[str]:
    """Delete `leftover_files`; returns them."""
    found = leftover_files(output_dir)
    for path in found:
        _delete_tree(path)  # a file, a local folder, or every object under a prefix
    return found


def check_same_config(output_dir: str, config: Mapping) -> None:
    """Refuse to resume outputs written with a config that decides rows differently (the footers'
    lineage holds the config); execution-only settings may differ (`pipelines.io.config_changes`)."""
    for path in _match(shard_files_pattern(output_dir))[:1] + _match(reject_files_pattern(output_dir))[:1]:
        with FileSystems.open(path) as handle:
            written = lineage_of(pq.ParquetFile(handle).schema_arrow.metadata).get("config")
        if written is None:
            continue
        changed = changes_affecting_rows(written, config)
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise OutputRefused(f"cannot resume {output_dir!r}: its files were written with other values of "
                                f"{shown}, which change rows; use the same values or --overwrite")


def count_rejects_of(output_dir: str, reasons: Iterable[str]) -> int:
    """How many rejects have a reason in `reasons` (what `drop_rejects` would remove)."""
    wanted = set(reasons)
    return sum(reason in wanted for path in _match(reject_files_pattern(output_dir)) for reason in _column(path, "reason"))


def drop_rejects(output_dir: str, reasons: Iterable[str]) -> int:
    """Remove the rejects whose reason is in `reasons` from the reject files (each rewritten under a
    new name of the same run, then the old one deleted); returns how many were removed."""
    reasons = sorted(set(reasons))
    removed = 0
    for path in _match(reject_files_pattern(output_dir)):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle)  # rejects hold no image bytes: small
        retry = pc.is_in(table.column("reason"), value_set=pa.array(reasons, pa.string()))
        count = int(pc.sum(retry).as_py() or 0)
        if not count:
            continue
        kept = table.filter(pc.invert(retry))
        if kept.num_rows:
            write_table_file(FileSystems.join(output_dir, REJECTS_DIR), run_of_file(path) or "retried", kept)
        FileSystems.delete([path])
        removed += count
    return removed


def _done_files(output_dir: str) -> list[tuple[str, str]]:
    """(path, key column) of the row and reject files present now."""
    return ([(path, "source_key") for path in _match(shard_files_pattern(output_dir))]
            + [(path, "source") for path in _match(reject_files_pattern(output_dir))])


def _column(path: str, column: str) -> list[str]:
    with FileSystems.open(path) as handle:
        return pq.read_table(handle, columns=[column]).column(column).to_pylist()


def _row_ids(path: str):
    with FileSystems.open(path) as handle:
        table = pq.read_table(handle, columns=["id", "source_key"])
    return zip(table.column("id").to_pylist(), table.column("source_key").to_pylist())


class DoneKeys(beam.PTransform):
    """(source key, None) of every row and reject in OUTPUT: the keys `ReadSamples` skips.

    The files are listed when this step runs, which is before the read it feeds (a side input is
    complete before its consumer starts) and so before this run writes anything."""

    def __init__(self, output_dir: str):
        super().__init__()
        self.output_dir = output_dir

    def expand(self, pbegin):
        return (
            pbegin
            | "Output" >> beam.Create([self.output_dir], reshuffle=False)
            | "ListDoneFiles" >> beam.FlatMap(_done_files)
            | "SpreadDoneFiles" >> beam.Reshuffle()
            | "DoneKeys" >> beam.FlatMapTuple(lambda path, column: ((key, None) for key in _column(path, column)))
        )


class FromWrittenShards(beam.PTransform):
    """`read(path)` over every shard already in OUTPUT/shards, flattened; the files are listed when
    this step runs, as in `DoneKeys`, and spread over workers (`read` should read a few columns)."""

    def __init__(self, output_dir: str, read: Callable[[str], Iterable]):
        super().__init__()
        self.output_dir = output_dir
        self.read = read

    def expand(self, pbegin):
        return (
            pbegin
            | "Output" >> beam.Create([self.output_dir], reshuffle=False)
            | "ListShards" >> beam.FlatMap(lambda out: _match(shard_files_pattern(out)))
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadShards" >> beam.FlatMap(self.read)
        )


class WrittenIds(FromWrittenShards):
    """(id, source key) of every row already in OUTPUT/shards."""

    def __init__(self, output_dir: str):
        super().__init__(output_dir, _row_ids)


class _RejectWrittenIdsFn(beam.DoFn):
    def __init__(self):
        self.duplicates = beam.metrics.Metrics.counter(metrics.DEDUPE, metrics.DUPLICATES)

    def process(self, sample, written: dict):
        kept = written.get(sample.id)
        if kept is None:
            yield sample
            return
        self.duplicates.inc()
        yield beam.pvalue.TaggedOutput(REJECTS, duplicate_reject(sample, kept))


class SkipWrittenIds(beam.PTransform):
    """Samples whose id already has a row (from an earlier run) become `dedupe`/`duplicate` rejects.
    Returns a `pipelines.staged.Staged`: the samples with no row yet, and those rejects."""

    def __init__(self, written: beam.PCollection):
        super().__init__()
        self.written = written

    def expand(self, samples):
        written = beam.pvalue.AsDict(self.written)
        return samples | "RejectWrittenIds" >> DoFnStage(_RejectWrittenIdsFn(), written=written)

