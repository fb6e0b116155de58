"""A bounded, stratified sample: k rows per entity-count bucket and k rejects per (stage, reason).

Each candidate gets a random key from a seeded generator and the k smallest keys per stratum are
kept (bottom-k sampling: a uniform sample without replacement, whatever the order of arrival),
so memory is O(k · strata) and the same output and seed give the same sample. Only the locations
(file, row group, row) are kept; `fetch_rows` then reads only the row groups holding a sampled row.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Hashable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from pipelines.outputs.report.files import open_parquet


class StratifiedSample:
    """Keeps, per stratum, the `k` items with the smallest random keys seen so far."""

    def __init__(self, k: int, seed: int):
        self.k = k
        self._rng = np.random.default_rng(seed)
        self._heaps: dict[Hashable, list] = defaultdict(list)  # max-heap by key: (-key, item)

    def offer(self, strata: Sequence[Hashable], items: Sequence) -> None:
        """Offer items, each in its stratum (same length sequences)."""
        if self.k <= 0:
            return
        keys = self._rng.random(len(items))
        for key, stratum, item in zip(keys, strata, items):
            heap = self._heaps[stratum]
            if len(heap) < self.k:
                heapq.heappush(heap, (-key, item))
            elif -heap[0][0] > key:
                heapq.heapreplace(heap, (-key, item))

    def strata(self) -> dict[Hashable, list]:
        """Items per stratum, in the order they arrived (their locations sort that way)."""
        ordered = sorted(self._heaps.items(), key=lambda kv: str(kv[0]))
        return {stratum: sorted(item for _, item in heap) for stratum, heap in ordered}


def fetch_rows(files: Sequence[str], locations: Sequence[tuple[int, int, int]]) -> Iterator[tuple[tuple, dict]]:
    """(location, row dict) for each (file index, row group, row) location, every column; reads one
    row group at a time, and only the row groups that hold a location."""
    by_group: dict[tuple[int, int], list[int]] = defaultdict(list)
    for file_index, group, row in locations:
        by_group[(file_index, group)].append(row)
    for (file_index, group), rows in sorted(by_group.items()):
        with open_parquet(files[file_index]) as parquet:
            table: pa.Table = parquet.read_row_group(group)
        picked = table.take(pa.array(sorted(rows), pa.int64())).to_pylist()
        for row, record in zip(sorted(rows), picked):
            yield (file_index, group, row), record
