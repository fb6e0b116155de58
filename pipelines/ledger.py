"""The read ledger: what each run read, one small Parquet file per read unit.

    OUTPUT/ledger/RUN/unit-NNNNNN-DIGEST.parquet    columns: key (source key), skipped (bool)

The read stage writes a unit's file once it has read the unit (temporary name, then a rename; a
retried unit rewrites the same file). A key with `skipped=False` was read by that run and must end
as a row or a reject; `skipped=True` means `--resume` found it already done and did not read its
image. Only keys, never image bytes. The manifest counts inputs from here and rows and rejects from
`shards/` and `rejects/`, so its counts hold on every runner, detached or not.

An input is identified by its source key (folder key, img2dataset key, manifest key): that is
what `--resume` skips on, before any image is fetched (folder and manifest inputs) or decoded.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Optional, Sequence, Union

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.source_formats import DEFAULT_READ, ManifestEntry, ReadUnit, read_unit
from pipelines.write import FILE_SUFFIX, LEDGER_DIR, commit, temporary_path
from unimo_g.pipeline_config import ReadConfig
from unimo_g.records import RawSample

LEDGER_SCHEMA = pa.schema([pa.field("key", pa.string(), nullable=False),
                           pa.field("skipped", pa.bool_(), nullable=False)])


def item_key(item: Union[RawSample, ManifestEntry]) -> str:
    return item.key if isinstance(item, ManifestEntry) else item.source_key


def unit_items(
    unit: ReadUnit, done: Mapping[str, object], config: ReadConfig = DEFAULT_READ
) -> Iterator[tuple[int, str, Optional[object]]]:
    """(position, key, item) of every input of `unit`; item is None for a key in `done` (skipped).

    Positions are those of a read without skipping, so `RawSample.origin` stays the same in every
    read. Folder keys in `done` are never opened; manifest entries in `done` are never fetched.
    """
    if unit.kind == "folder" and done:
        for position, group in enumerate(unit.groups):
            if group.key in done:
                yield position, group.key, None
            else:
                for item in read_unit(replace(unit, groups=(group,)), config):
                    yield position, item_key(item), item
        return
    for position, item in enumerate(read_unit(unit, config)):
        key = item_key(item)
        yield position, key, (None if key in done else item)


def unit_label(unit: ReadUnit) -> str:
    """What a unit is, for its ledger file name: its path, and for folder units its first key."""
    return unit.path if unit.kind != "folder" or not unit.groups else f"{unit.path}#{unit.groups[0].key}"


@dataclass(frozen=True)
class Ledger:
    """Where one run records what it read: OUTPUT/ledger/RUN/."""

    output_dir: str
    run_id: str

    @property
    def folder(self) -> str:
        return FileSystems.join(self.output_dir, LEDGER_DIR, self.run_id)

    def record(self, index: int, unit: ReadUnit, read: Sequence[str], skipped: Sequence[str]) -> str:
        """Write unit `index`'s ledger file; returns its path."""
        digest = hashlib.sha256(unit_label(unit).encode("utf-8")).hexdigest()[:16]
        final = FileSystems.join(self.folder, f"unit-{index:06d}-{digest}{FILE_SUFFIX}")
        table = pa.table({"key": list(read) + list(skipped), "skipped": [False] * len(read) + [True] * len(skipped)},
                         schema=LEDGER_SCHEMA)
        temporary = temporary_path(self.folder, self.run_id)
        with FileSystems.create(temporary) as handle:
            pq.write_table(table, handle, compression="zstd")
        commit(temporary, final)
        return final


def ledger_files(output_dir: str) -> list[str]:
    pattern = FileSystems.join(output_dir, LEDGER_DIR, "*", f"*{FILE_SUFFIX}")
    return sorted(meta.path for meta in FileSystems.match([pattern])[0].metadata_list)


def run_of_ledger_file(path: str) -> str:
    return FileSystems.split(FileSystems.split(path)[0])[1]


def read_ledgers(output_dir: str) -> dict[str, dict[str, Counter]]:
    """{run id: {"read": Counter(key), "skipped": Counter(key)}} of every run's ledger files."""
    runs: dict[str, dict[str, Counter]] = {}
    for path in ledger_files(output_dir):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle, columns=["key", "skipped"])
        run = runs.setdefault(run_of_ledger_file(path), {"read": Counter(), "skipped": Counter()})
        for key, skipped in zip(table.column("key").to_pylist(), table.column("skipped").to_pylist()):
            run["skipped" if skipped else "read"][key] += 1
    return runs
