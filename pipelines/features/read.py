"""Reading the feature job's inputs: prompt-shard rows (id, image, caption), one row group per
read unit, spread over workers with a Reshuffle; plus the one unconditional item.

The unconditional item is a read unit of its own, so it joins the samples inside one fused
stage; a Flatten with a separate branch would make runners such as the DirectRunner buffer the
whole stream ahead of the encoder. Units are the files and row groups listed on the launcher,
so the job reads exactly the files the manifest lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.features.stages import READ_COLUMNS, FeatureItem, unconditional_item

UNCONDITIONAL_UNIT = None  # the unit that yields the unconditional item


@dataclass(frozen=True)
class RowGroupUnit:
    """Row group `group` of shard `path`, whose first row is row `first_row` of the file."""

    path: str
    group: int
    first_row: int


def row_group_units(path: str, rows_per_group: Sequence[int]) -> list[RowGroupUnit]:
    """The read units of one shard file, given the row counts of its row groups."""
    units, first = [], 0
    for group, rows in enumerate(rows_per_group):
        if rows:
            units.append(RowGroupUnit(path, group, first))
        first += rows
    return units


def read_row_group(unit: RowGroupUnit) -> Iterator[dict]:
    """The rows of one unit as {id, image, caption, source}; `source` is "<path>[<row>]"."""
    with FileSystems.open(unit.path) as handle:
        table = pq.ParquetFile(handle).read_row_group(unit.group, columns=list(READ_COLUMNS))
    for offset, row in enumerate(table.to_pylist()):
        yield {**row, "source": f"{unit.path}[{unit.first_row + offset}]"}


class _ReadUnitFn(beam.DoFn):
    def process(self, unit: Optional[RowGroupUnit]) -> Iterator[Union[dict, FeatureItem]]:
        if unit is UNCONDITIONAL_UNIT:
            yield unconditional_item()
            return
        yield from read_row_group(unit)


class ReadShardRows(beam.PTransform):
    """The rows of `units` (row dicts) and the unconditional item, in one PCollection."""

    def __init__(self, units: Sequence[RowGroupUnit]):
        super().__init__()
        self.units = list(units)

    def expand(self, pbegin):
        return (
            pbegin
            | "ListUnits" >> beam.Create([UNCONDITIONAL_UNIT, *self.units], reshuffle=False)
            | "SpreadUnits" >> beam.Reshuffle()
            | "ReadRowGroups" >> beam.ParDo(_ReadUnitFn())
        )
