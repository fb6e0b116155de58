"""Input shards of the training benchmark: the pipeline's output on the bundled sample, replicated.

`pipeline_shards` runs `beam_runner.py` (tiny models) on `data/sample` once and caches the result,
keyed by the sample files and the pipeline config. `replicate_rows` cycles a shard set's rows into
one shard of any size; copies get new ids, so that their stage-2 substitutions (drawn per sample
id) differ, while their images and captions stay those of real rows.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_INPUT = ROOT / "data" / "sample"
PIPELINE_CONFIG = ROOT / "configs" / "tiny.yaml"
ROW_GROUP_ROWS = 64


def pipeline_shards(cache_dir: Path) -> Path:
    """The pipeline's output directory for the bundled sample, made once under `cache_dir`."""
    listing = sorted(
        (path.relative_to(SAMPLE_INPUT).as_posix(), path.stat().st_size)
        for path in SAMPLE_INPUT.rglob("*")
        if path.is_file()
    )
    key = hashlib.sha256(PIPELINE_CONFIG.read_bytes() + repr(listing).encode()).hexdigest()[:12]
    out = Path(cache_dir) / f"pipeline-{key}"
    if (out / "manifest.json").is_file():
        return out
    command = [sys.executable, str(ROOT / "beam_runner.py"), "--input", str(SAMPLE_INPUT), "--output", str(out)]
    command += ["--config", str(PIPELINE_CONFIG)]
    print(f"making input shards once: {' '.join(command)}", file=sys.stderr)
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


def replicate_rows(files: Sequence[str], out_path: Path, rows: int, row_group_rows: int = ROW_GROUP_ROWS) -> str:
    """Write one shard of `rows` rows cycling through the rows of `files`; return its path.

    Copy c >= 1 of a row gets the id sha256("{id}:{c}")[:32]; the originals keep theirs. Schema and
    schema metadata (version, lineage) are those of the first file.
    """
    tables = [pq.read_table(file) for file in files]
    source = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if source.num_rows == 0:
        raise ValueError(f"no rows in {list(files)}")
    count = source.num_rows
    table = source.take(pa.array([i % count for i in range(rows)]))
    ids = [
        value if i < count else hashlib.sha256(f"{value}:{i // count}".encode()).hexdigest()[:32]
        for i, value in enumerate(table.column("id").to_pylist())
    ]
    index = table.schema.get_field_index("id")
    field = table.schema.field(index)
    table = table.set_column(index, field, pa.array(ids, type=field.type))
    table = table.replace_schema_metadata(tables[0].schema.metadata)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_path, row_group_size=row_group_rows)
    return str(out_path)


def rows_needed(batches: int, batch_size: int, workers: int) -> int:
    """Rows that give `batches` batches within one epoch of a `trainers.data.ShardStream` read by
    `workers` DataLoader workers (each worker makes whole batches from its own share of rows),
    when the rows are written in row groups of `batch_size` rows (or read in "rows" assignment)."""
    workers = max(1, workers)
    return workers * batch_size * (math.ceil(batches / workers) + 1)
