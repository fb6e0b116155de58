"""One pass over an output folder: statistics and sample locations, row group by row group."""

from __future__ import annotations

import dataclasses
from typing import Optional

from pipelines.outputs.report import files
from pipelines.outputs.report.sample import StratifiedSample, fetch_rows
from pipelines.outputs.report.stats import RejectStats, ShardStats, add_row_group, plan_columns
from pipelines.outputs.shard_stats import entity_bin
from unimo_g.schema import check_schema_version, lineage_of

REJECT_COLUMNS = ["id", "source", "stage", "reason", "detail"]


@dataclasses.dataclass
class Collected:
    manifest: Optional[dict]
    lineage: dict  # the first shard's footer lineage ({} without shards)
    stats: ShardStats
    rejects: RejectStats
    samples: dict  # entity-count bucket -> [row dict]
    reject_samples: dict  # (stage, reason) -> [reject row dict]
    shard_files: int
    reject_files: int
    schema_version: Optional[int]


def collect(output_dir: str, per_bucket: int = 4, per_reason: int = 3, seed: int = 0) -> Collected:
    """Statistics of every shard and reject row, and a stratified sample of each, with the sampled
    rows read in full (image bytes only for them)."""
    shard_paths, reject_paths = files.shard_files(output_dir), files.reject_files(output_dir)
    stats, sampler, lineage, version = ShardStats(), StratifiedSample(per_bucket, seed), {}, None
    for file_index, path in enumerate(shard_paths):
        with files.open_parquet(path) as parquet:
            if file_index == 0:
                lineage = lineage_of(parquet.schema_arrow.metadata)
                version = check_schema_version(parquet.schema_arrow.metadata, where=path)
            columns, scores, has_outcomes = plan_columns(parquet.schema_arrow)
            for group in range(parquet.metadata.num_row_groups):
                lengths = add_row_group(stats, parquet.read_row_group(group, columns=columns), scores, has_outcomes)
                sampler.offer([entity_bin(int(n)) for n in lengths],
                              [(file_index, group, row) for row in range(len(lengths))])
    rejects, reject_sampler = RejectStats(), StratifiedSample(per_reason, seed + 1)
    for file_index, path in enumerate(reject_paths):
        with files.open_parquet(path) as parquet:
            for group in range(parquet.metadata.num_row_groups):
                table = parquet.read_row_group(group, columns=["stage", "reason"])
                rejects.add(table)
                keys = list(zip(table.column("stage").to_pylist(), table.column("reason").to_pylist()))
                reject_sampler.offer(keys, [(file_index, group, row) for row in range(len(keys))])
    return Collected(
        manifest=files.read_manifest(output_dir),
        lineage=lineage,
        stats=stats,
        rejects=rejects,
        samples=_read(shard_paths, sampler),
        reject_samples=_read(reject_paths, reject_sampler),
        shard_files=len(shard_paths),
        reject_files=len(reject_paths),
        schema_version=version,
    )


def _read(paths, sampler: StratifiedSample) -> dict:
    strata = sampler.strata()
    wanted = [loc for locations in strata.values() for loc in locations]
    rows = dict(fetch_rows(paths, wanted))
    return {stratum: [rows[loc] for loc in locations] for stratum, locations in strata.items()}
