"""The read ledger: what each run read, in small Parquet files written ahead of the rows.

    OUTPUT/ledger/RUN/unit-NNNNNN-DIGEST-PPPP.parquet    columns: key (source key), skipped (bool)

The read stage records the keys of a unit in parts (`LedgerWriter`): the inputs read are held back
until their part is committed (temporary name, then a rename), and only then go on to become rows
or rejects. A part is committed once `max_keys` keys or `max_bytes` of image bytes wait, once the
first waiting key has waited `flush_s` seconds, and at the unit's end. So a killed run's ledger
lists every input it may have written something for (and at most one part more), and a live run's
progress counts inputs as they are read. A retried unit first deletes the parts an earlier attempt of this
run left, then writes its own. A key with `skipped=False` was read by that run and must end as a
row or a reject; `skipped=True` means `--resume` found it already done and did not read its image.
Only keys, never image bytes. The manifest counts inputs from here and rows and rejects from
`shards/` and `rejects/`, so its counts hold on every runner, detached or not.

An input is identified by its source key (folder key, img2dataset key, manifest key): that is
what `--resume` skips on, before any image is fetched (folder and manifest inputs) or decoded.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Mapping, Optional, Sequence, Union

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.io.source_formats import DEFAULT_READ, ManifestEntry, ReadUnit, read_unit
from pipelines.io.write import FILE_SUFFIX, LEDGER_DIR, commit, temporary_path
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


# Bounds of one ledger part. Inputs wait in memory for their part, so the bytes bound the read
# stage's extra memory; the keys and seconds bound the steps of the progress line and the number
# of ledger files (about one per 32 MiB of images read, at least one per unit).
LEDGER_MAX_KEYS = 1024
LEDGER_MAX_BYTES = 32 << 20
LEDGER_FLUSH_S = 2.0


@dataclass(frozen=True)
class Ledger:
    """Where one run records what it read: OUTPUT/ledger/RUN/. `max_keys`, `max_bytes` and
    `flush_s` bound a part (keys, image bytes and seconds waiting)."""

    output_dir: str
    run_id: str
    max_keys: int = LEDGER_MAX_KEYS
    max_bytes: int = LEDGER_MAX_BYTES
    flush_s: float = LEDGER_FLUSH_S

    @property
    def folder(self) -> str:
        return FileSystems.join(self.output_dir, LEDGER_DIR, self.run_id)

    def _prefix(self, index: int, unit: ReadUnit) -> str:
        digest = hashlib.sha256(unit_label(unit).encode("utf-8")).hexdigest()[:16]
        return FileSystems.join(self.folder, f"unit-{index:06d}-{digest}-")

    def writer(self, index: int, unit: ReadUnit, clock: Callable[[], float] = time.monotonic) -> "LedgerWriter":
        """A writer of unit `index`'s parts, after deleting the parts an earlier attempt left."""
        prefix = self._prefix(index, unit)
        earlier = [meta.path for meta in FileSystems.match([f"{prefix}*{FILE_SUFFIX}"])[0].metadata_list]
        if earlier:
            FileSystems.delete(earlier)
        return LedgerWriter(self, prefix, clock)

    def record(self, index: int, unit: ReadUnit, read: Sequence[str], skipped: Sequence[str]) -> list[str]:
        """Write unit `index`'s keys at once (as parts of at most `max_keys`); returns their paths."""
        writer = self.writer(index, unit)
        for key in read:
            writer.add(key, False)
        for key in skipped:
            writer.add(key, True)
        writer.flush()
        return writer.paths


class LedgerWriter:
    """Collects one unit's keys and commits them as ledger parts: `add` each key (with the size of
    the input held back for it), and `flush` when `due()`, before the inputs held back go on."""

    def __init__(self, ledger: Ledger, prefix: str, clock: Callable[[], float] = time.monotonic):
        self.ledger = ledger
        self.prefix = prefix
        self.clock = clock
        self.paths: list[str] = []
        self._keys: list[str] = []
        self._skipped: list[bool] = []
        self._bytes = 0
        self._first_at = 0.0

    def add(self, key: str, skipped: bool, size: int = 0) -> None:
        if not self._keys:
            self._first_at = self.clock()
        self._keys.append(key)
        self._skipped.append(skipped)
        self._bytes += size

    def due(self) -> bool:
        return bool(self._keys) and (len(self._keys) >= self.ledger.max_keys or self._bytes >= self.ledger.max_bytes
                                     or self.clock() - self._first_at >= self.ledger.flush_s)

    def flush(self) -> None:
        """Commit the waiting keys as the next part (nothing when none wait)."""
        if not self._keys:
            return
        table = pa.table({"key": self._keys, "skipped": self._skipped}, schema=LEDGER_SCHEMA)
        final = f"{self.prefix}{len(self.paths):04d}{FILE_SUFFIX}"
        temporary = temporary_path(self.ledger.folder, self.ledger.run_id)
        with FileSystems.create(temporary) as handle:
            pq.write_table(table, handle, compression="zstd")
        commit(temporary, final)
        self.paths.append(final)
        self._keys, self._skipped, self._bytes = [], [], 0


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


def listed_times(ledgers: Mapping[str, Mapping[str, Counter]]) -> Counter:
    """Per key, how many times the run that listed it most listed it (every run lists the same inputs
    again; a manifest listing one key twice lists it twice): what its outputs must number.
    `ledgers` is `read_ledgers(output_dir)`."""
    times: Counter = Counter()
    for ledger in ledgers.values():
        for key, count in (ledger["read"] + ledger["skipped"]).items():
            times[key] = max(times[key], count)
    return times
