"""Outputs written before schema v3 (no provenance, phash or computed-score columns) still read
through every reader of shards: report, verify, resume, the features job, the trainer and gallery."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from bench.report import write_synthetic_output
from pipelines.features.read import read_row_group, row_group_units
from pipelines.io.resume import DoneKeys, WrittenIds
from pipelines.outputs.gallery import build_gallery
from pipelines.outputs.manifest import collect_counts
from pipelines.outputs.report.collect import collect
from pipelines.outputs.report.main import main as report_main
from pipelines.outputs.shard_stats import NO_LICENSE, summarize_shards
from trainers.data import DataConfig, ShardStream
from unimo_g.schema import FIELDS_SINCE_V2, FIELDS_SINCE_V3, PROVENANCE_FIELDS, VERSION_KEY, check_schema_version

ROWS, REJECTS = 6, 3


@pytest.fixture(params=[1, 2])
def old_output(request, tmp_path) -> tuple[Path, int]:
    """A v3 output rewritten as a version-1 or version-2 one: the v3 columns dropped (and v2's for
    version 1), the version in the metadata set."""
    version = request.param
    out = write_synthetic_output(tmp_path / "out", ROWS, rejects=REJECTS, image_kib=1, rows_per_file=4,
                                 row_group_rows=2)
    dropped = list(FIELDS_SINCE_V3) + (list(FIELDS_SINCE_V2) if version == 1 else [])
    for shard in (out / "shards").glob("*.parquet"):
        table = pq.read_table(shard)
        table = table.drop_columns(dropped)
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, VERSION_KEY: str(version).encode()}),
                       shard, row_group_size=2)
    for rejects in (out / "rejects").glob("*.parquet"):
        table = pq.read_table(rejects).drop_columns([f.name for f in PROVENANCE_FIELDS])
        pq.write_table(table.replace_schema_metadata({VERSION_KEY: str(version).encode()}), rejects)
    return out, version


def _shards(out: Path) -> list[str]:
    return sorted(str(p) for p in (out / "shards").glob("*.parquet"))


def test_the_fixture_is_the_old_layout(old_output):
    out, version = old_output
    for path in _shards(out):
        schema = pq.read_schema(path)
        assert check_schema_version(schema.metadata) == version and "license" not in schema.names
        assert ("phrase_outcomes" in schema.names) == (version == 2)


def test_report_verify_and_statistics_read_old_outputs(old_output):
    out, _ = old_output
    assert collect(str(out)).stats.rows == ROWS and report_main([str(out)]) == 0
    counts, _ = collect_counts(str(out))  # what verify counts
    assert (counts["rows"], counts["rejects"]) == (ROWS, REJECTS)
    assert summarize_shards(str(out))["rows_by_license"] == {NO_LICENSE: ROWS}


def test_resume_reads_the_keys_of_old_outputs(old_output):
    out, _ = old_output
    keys = [key for path in _shards(out) for key in pq.read_table(path, columns=["source_key"]).column(0).to_pylist()]
    ids = [key for path in _shards(out) for key in pq.read_table(path, columns=["id"]).column(0).to_pylist()]
    rejected = pq.read_table(next((out / "rejects").glob("*.parquet")), columns=["source"]).column(0).to_pylist()
    with BeamTestPipeline() as pipeline:
        done = pipeline | "Done" >> DoneKeys(str(out))
        written = pipeline | "Written" >> WrittenIds(str(out))
        assert_that(done | "DoneKeyNames" >> beam.Keys(), equal_to(keys + rejected), label="done")
        assert_that(written | "WrittenIdNames" >> beam.Keys(), equal_to(ids), label="written")


def test_features_job_trainer_and_gallery_read_old_outputs(old_output):
    out, version = old_output
    rows = []
    for path in _shards(out):
        groups = pq.ParquetFile(path).metadata
        for unit in row_group_units(path, [groups.row_group(i).num_rows for i in range(groups.num_row_groups)]):
            rows.extend(read_row_group(unit))
    assert len(rows) == ROWS and all(row["image"] and row["caption"] for row in rows)
    stream = ShardStream(_shards(out), DataConfig(resolution=16, shuffle_buffer=0, num_workers=0), stage=2)
    assert sum(1 for _ in stream) == ROWS
    page = build_gallery(out, limit=3)
    assert "Samples (3 of 6)" in page
