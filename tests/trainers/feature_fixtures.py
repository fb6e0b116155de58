"""Feature files written by hand for tests of the trainer's refusals: rows (`unimo_g.features.feature_row`)
the feature job would not write, with the feature contract's schema (`unimo_g.features.feature_schema`)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_feature_file(path: Path, rows: list[dict], schema: pa.Schema, row_group_size: int = 2) -> str:
    """Write `rows` (`feature_row` dicts) as one feature file with `schema` (`feature_schema`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return str(path)
