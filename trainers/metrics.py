"""The JSONL metrics log (one record per logged step) and the throughput meter."""

from __future__ import annotations

import json
import time
from pathlib import Path


class MetricsLog:
    """Appends records to `path` (JSON Lines). Opening it at `start_step` drops the records of
    later steps, which a run that resumes from step `start_step` is about to log again."""

    def __init__(self, path: str | Path, start_step: int):
        self.path = Path(path)
        kept = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip() and json.loads(line).get("step", 0) <= start_step:
                    kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=False) + "\n")


class Throughput:
    """Images per second since the previous `rate()` call (or since construction)."""

    def __init__(self):
        self.images = 0
        self.since = time.perf_counter()

    def add(self, images: int) -> None:
        self.images += images

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self.images / max(now - self.since, 1e-9)
        self.images, self.since = 0, now
        return rate
