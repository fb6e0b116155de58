"""Schema v4 added `caption_source`; outputs written before it (schema v3) still read through every
reader of shards: report, verify, resume keys, the features job, the trainer and gallery."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench.report import write_synthetic_output
from pipelines.features.read import read_row_group, row_group_units
from pipelines.outputs.gallery import build_gallery
from pipelines.outputs.manifest import collect_counts
from pipelines.outputs.report.collect import collect
from pipelines.outputs.report.main import main as report_main
from trainers.data import DataConfig, ShardStream
from unimo_g.records import Sample
from unimo_g.schema import FIELDS_SINCE_V4, SCHEMA_VERSION, VERSION_KEY, check_schema_version, shard_schema

ROWS, REJECTS = 5, 2


@pytest.fixture
def v3_output(tmp_path) -> Path:
    out = write_synthetic_output(tmp_path / "out", ROWS, rejects=REJECTS, image_kib=1, rows_per_file=3,
                                 row_group_rows=2)
    for shard in (out / "shards").glob("*.parquet"):
        table = pq.read_table(shard).drop_columns(list(FIELDS_SINCE_V4))
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, VERSION_KEY: b"3"}), shard,
                       row_group_size=2)
    return out


def _shards(out: Path) -> list[str]:
    return sorted(str(p) for p in (out / "shards").glob("*.parquet"))


def test_v4_is_the_version_written_and_caption_source_the_last_column():
    assert SCHEMA_VERSION == 4 and shard_schema().names[-1] == "caption_source"
    assert Sample(id="i", source_key="k", url=None, sha256="s", image=b"", image_format="PNG", width=1, height=1,
                  caption="a dog").to_row()["caption_source"] == "input"


def test_v3_outputs_read_everywhere(v3_output):
    for path in _shards(v3_output):
        schema = pq.read_schema(path)
        assert check_schema_version(schema.metadata) == 3 and "caption_source" not in schema.names
    assert collect(str(v3_output)).stats.rows == ROWS and report_main([str(v3_output)]) == 0
    counts, _ = collect_counts(str(v3_output))
    assert (counts["rows"], counts["rejects"]) == (ROWS, REJECTS)
    rows = []
    for path in _shards(v3_output):
        groups = pq.ParquetFile(path).metadata
        for unit in row_group_units(path, [groups.row_group(i).num_rows for i in range(groups.num_row_groups)]):
            rows.extend(read_row_group(unit))
    assert len(rows) == ROWS
    stream = ShardStream(_shards(v3_output), DataConfig(resolution=16, shuffle_buffer=0, num_workers=0), stage=2)
    assert sum(1 for _ in stream) == ROWS
    assert "Samples (3 of 5)" in build_gallery(v3_output, limit=3)
