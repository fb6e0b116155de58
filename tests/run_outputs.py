"""The inputs test runs build from (the bundled sample, the tiny preset) and what a run wrote, read back."""

from __future__ import annotations

import glob
from pathlib import Path

import pyarrow.parquet as pq

from unimo_g.schema import check_schema_version

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
TINY = str(ROOT / "configs" / "tiny.yaml")


def read_rows(out: Path) -> list[dict]:
    """Every row of every committed shard under `out`, all columns, sorted by id; each file's schema
    version checked. Rows carry no run id or time: two runs of one input compare equal."""
    files = sorted(glob.glob(str(out / "shards" / "*.parquet")))
    assert files, f"no shard written in {out}"
    rows = []
    for path in files:
        table = pq.read_table(path)
        check_schema_version(table.schema.metadata, where=path)
        rows.extend(table.to_pylist())
    return sorted(rows, key=lambda r: r["id"])
