"""The order of one training epoch, computed from row-group sizes alone (pure functions).

`trainers.data.ShardStream` uses them: see its module docstring for the two assignments
("row_groups": each unit reads only whole row groups of its own; "rows": row g to unit g % U),
the shuffle buffer and why the order must be computable without reading a row (exact resume).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from typing import Iterable, Iterator, Sequence, TypeVar

ROW_GROUPS, ROWS = "row_groups", "rows"  # the two ways units share an epoch
MIN_UNIT_SHARE = 0.5  # "row_groups" needs the smallest unit to hold this share of the mean rows per unit
Key = TypeVar("Key")


def derive_seed(*parts) -> int:
    """A 64-bit seed from a tuple of ints/strings (stable across processes, unlike hash())."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def shuffle_buffered(keys: Iterable[Key], buffer: int, rng: random.Random) -> list[Key]:
    """`keys` mixed by a shuffle buffer of `buffer` items drawing from `rng` (0 or 1: unchanged)."""
    out: list[Key] = []
    pool: list[Key] = []
    for key in keys:
        if buffer <= 1:
            out.append(key)
        elif len(pool) < buffer:
            pool.append(key)
        else:
            slot = rng.randrange(buffer)
            out.append(pool[slot])
            pool[slot] = key
    rng.shuffle(pool)
    out.extend(pool)
    return out


def unit_order(
    row_counts: Sequence[int], file_order: Sequence[int], unit: int, units: int, buffer: int, rng: random.Random
) -> list[tuple[int, int]]:
    """The (file index, row) sequence one unit yields in "rows" assignment: global rows g with
    g % units == unit, through `file_order`, mixed by a shuffle buffer of `buffer` rows drawing from `rng`."""

    def rows() -> Iterator[tuple[int, int]]:
        offset = 0
        for file in file_order:
            count = row_counts[file]
            for row in range((unit - offset) % units, count, units):
                yield file, row
            offset += count

    return shuffle_buffered(rows(), buffer, rng)


def epoch_row_groups(
    group_rows: Sequence[Sequence[int]], file_order: Sequence[int], rng: random.Random
) -> list[tuple[int, int]]:
    """Every (file index, row group) once: files in `file_order`, each file's row groups in an
    order drawn from `rng` (`group_rows[file]` holds the rows of each row group of `file`)."""
    out = []
    for file in file_order:
        groups = list(range(len(group_rows[file])))
        rng.shuffle(groups)
        out.extend((file, group) for group in groups)
    return out


def deal_row_groups(sizes: Sequence[int], units: int) -> list[list[int]]:
    """Indices into `sizes` (rows of each row group, in the epoch's order) for each unit: ranked
    by size, largest first (ties in index order), dealt round robin; each unit's indices ascending.

    A unit's rows depend only on the multiset of sizes, and unit 0 >= unit 1 >= ... >= unit
    units-1 >= unit 0 - max(sizes): in each round of the deal a unit gets no more than the unit
    before it, and the drop over all rounds telescopes to at most the first (largest) size.
    """
    ranked = sorted(range(len(sizes)), key=lambda index: -sizes[index])  # stable: ties keep the epoch's order
    return [sorted(ranked[unit::units]) for unit in range(units)]


def dealt_rows(sizes: Sequence[int], units: int) -> list[int]:
    """Rows of each unit when row groups of `sizes` rows are dealt by `deal_row_groups`."""
    return [sum(sizes[index] for index in mine) for mine in deal_row_groups(sizes, units)]


def choose_assignment(sizes: Sequence[int], units: int, min_share: float = MIN_UNIT_SHARE) -> str:
    """ROW_GROUPS when dealing row groups of `sizes` rows gives every unit one and the smallest
    unit at least `min_share` of the mean rows per unit; else ROWS."""
    if len(sizes) < units:
        return ROWS
    smallest = min(dealt_rows(sizes, units))
    return ROW_GROUPS if smallest > 0 and smallest * units >= min_share * sum(sizes) else ROWS


def row_group_order(
    group_rows: Sequence[Sequence[int]],
    groups: Sequence[tuple[int, int]],
    unit: int,
    units: int,
    buffer: int,
    rng: random.Random,
) -> list[tuple[int, int]]:
    """The (file index, row) sequence one unit yields in "row_groups" assignment: the rows of its
    row groups (`deal_row_groups` of the epoch's `groups`, (file, row group) pairs) in that order,
    mixed by a shuffle buffer of `buffer` rows drawing from `rng`. Rows are numbered within their file."""
    sizes = [group_rows[file][group] for file, group in groups]
    mine = [groups[index] for index in deal_row_groups(sizes, units)[unit]]

    starts: dict[int, list[int]] = {}  # first row of each row group, per file met

    def rows() -> Iterator[tuple[int, int]]:
        for file, group in mine:
            if file not in starts:
                starts[file] = list(itertools.accumulate(group_rows[file], initial=0))
            for row in range(starts[file][group], starts[file][group + 1]):
                yield file, row

    return shuffle_buffered(rows(), buffer, rng)
