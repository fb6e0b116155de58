"""Repair an output folder that overlapping runs wrote twice: each input keeps as many outputs (rows
and rejects) as the ledger says it was listed (once, unless a manifest listed its key twice), and
the others are removed.

Which output stays is decided by the files alone, the same on every rerun: a row before a reject,
then the file that sorts first (run id, then digest), then the earlier position in it. Files that
lose rows are rewritten whole under their own name (a temporary file, then a rename); a file left
with no row is deleted. Nothing else is touched: the ledger, the lineage and the manifest stay,
and `verify --write` (or the next run's last step) recounts them.
"""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.io.ledger import listed_times, read_ledgers
from pipelines.io.write import commit, temporary_path
from pipelines.outputs.manifest import output_key_columns

def surplus_outputs(output_dir: str) -> dict[str, list[int]]:
    """{file path: row positions to remove} so that each key keeps the outputs it is due."""
    by_key: dict[str, list[tuple]] = defaultdict(list)
    for kind, path, keys in output_key_columns(output_dir):
        for position, key in enumerate(keys):
            by_key[key].append((kind, path, position))
    due = listed_times(read_ledgers(output_dir))
    surplus: dict[str, list[int]] = defaultdict(list)
    for key, found in by_key.items():
        for _, path, position in sorted(found)[max(1, due[key]):]:
            surplus[path].append(position)
    return {path: sorted(positions) for path, positions in sorted(surplus.items())}


def _rewrite(path: str, drop: list[int]) -> int:
    """Rewrite `path` without the rows at `drop` (or delete it when none is left); rows left."""
    with FileSystems.open(path) as handle:
        parquet = pq.ParquetFile(handle)
        table = parquet.read()
        row_group_rows = parquet.metadata.row_group(0).num_rows if parquet.metadata.num_row_groups else 1
        codec = parquet.metadata.row_group(0).column(0).compression if parquet.metadata.num_row_groups else "ZSTD"
    compression = "none" if codec == "UNCOMPRESSED" else codec.lower()
    dropped = set(drop)
    kept = table.take(pa.array([i for i in range(table.num_rows) if i not in dropped], type=pa.int64()))
    if kept.num_rows == 0:
        FileSystems.delete([path])
        return 0
    folder, name = FileSystems.split(path)
    temporary = temporary_path(folder, name.split("_")[0])
    with FileSystems.create(temporary) as handle:
        pq.write_table(kept, handle, row_group_size=row_group_rows, compression=compression,
                       use_compliant_nested_type=True)
    commit(temporary, path)
    return kept.num_rows


def repair(output_dir: str) -> dict:
    """Remove surplus outputs; {"removed": outputs removed, "files": files rewritten or deleted}."""
    surplus = surplus_outputs(output_dir)
    for path, positions in surplus.items():
        _rewrite(path, positions)
    return {"removed": sum(len(p) for p in surplus.values()), "files": len(surplus)}
