"""Live progress of a local run, from the files it commits (ledger, shards, rejects).

A thread in the launching process polls OUTPUT every few seconds and logs one status line when
something changed: inputs read (of how many, when the input's size is known; and skipped by
--resume), rows and rejects committed, inputs/s and an ETA. It reads only Parquet footers and the
ledger's small columns, each file once. Inputs read move in steps of ledger parts (committed
every 2 s of reading at most, `pipelines.io.ledger`), rows and rejects in steps of committed files
(`write.rows_per_file`).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Callable, Optional

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.io.ledger import ledger_files, run_of_ledger_file
from pipelines.io.write import reject_files_pattern, run_of_file, shard_files_pattern

LOGGER = logging.getLogger(__name__)
INTERVAL_S = 5.0  # at most one status line per interval


def _matching(pattern: str) -> list[str]:
    return [meta.path for meta in FileSystems.match([pattern])[0].metadata_list]


class Progress(threading.Thread):
    """Polls `output_dir` for the files of run `run_id`; `stop()` ends it (and logs a last line)."""

    def __init__(self, output_dir: str, run_id: str, interval_s: float = INTERVAL_S,
                 emit: Optional[Callable[[str], None]] = None, total: Optional[int] = None):
        super().__init__(name="progress", daemon=True)
        self.output_dir = output_dir
        self.run_id = run_id
        self.total = total  # inputs the run lists, when known before reading (`pipelines.io.sources.planned_inputs`)
        self.interval_s = interval_s
        self.emit = emit or LOGGER.info
        self._stop_event = threading.Event()
        self._seen: dict[str, tuple[int, int]] = {}  # path -> (rows, skipped)
        self._began = time.monotonic()
        self._last: Optional[tuple] = None

    def _count(self, path: str, skipped_column: bool) -> tuple[int, int]:
        if path not in self._seen:
            try:
                with FileSystems.open(path) as handle:
                    if skipped_column:
                        skipped = pq.read_table(handle, columns=["skipped"]).column("skipped").to_pylist()
                        self._seen[path] = (len(skipped), sum(skipped))
                    else:
                        self._seen[path] = (pq.ParquetFile(handle).metadata.num_rows, 0)
            except (OSError, ValueError):  # renamed or replaced between listing and opening
                return 0, 0
        return self._seen[path]

    def snapshot(self) -> dict:
        """{"read", "skipped", "rows", "rejects", "per_s", "eta_s"} of this run so far (eta_s: None
        when the number of inputs is unknown or nothing was written yet)."""
        read = skipped = 0
        for path in ledger_files(self.output_dir):
            if run_of_ledger_file(path) == self.run_id:
                listed, skip = self._count(path, True)
                read, skipped = read + listed - skip, skipped + skip
        written = {}
        for name, pattern in (("rows", shard_files_pattern(self.output_dir)),
                              ("rejects", reject_files_pattern(self.output_dir))):
            written[name] = sum(self._count(p, False)[0] for p in _matching(pattern) if run_of_file(p) == self.run_id)
        elapsed = max(time.monotonic() - self._began, 1e-6)
        done = written["rows"] + written["rejects"]
        per_s = done / elapsed
        eta_s = None
        if self.total is not None and per_s > 0:
            eta_s = max(self.total - skipped - done, 0) / per_s
        return {"read": read, "skipped": skipped, **written, "per_s": per_s, "eta_s": eta_s}

    def line(self, snap: dict) -> str:
        of = f" of {self.total}" if self.total is not None else ""
        skipped = f" ({snap['skipped']} already done)" if snap["skipped"] else ""
        eta = f", ETA {datetime.timedelta(seconds=round(snap['eta_s']))}" if snap["eta_s"] is not None else ""
        return (f"progress: {snap['read']}{of} inputs read{skipped}, {snap['rows']} rows + {snap['rejects']} "
                f"rejects written, {snap['per_s']:.2f} inputs/s{eta}")

    def poll(self) -> None:
        snap = self.snapshot()
        state = (snap["read"], snap["skipped"], snap["rows"], snap["rejects"])
        if state != self._last:
            self._last = state
            self.emit(self.line(snap))

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.poll()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=self.interval_s + 5)
