"""What small shard files cost: the same rows committed in files of K rows, read back by a trainer
(every column) and by the accounting (the key columns the manifest, verify and --resume read).

    python -m bench.shard_files [--rows 4096] [--sizes 16,64,256,1024] [--repeats 3] [--source DIR]

The rows are those of a real output folder (`--source`, default: a tiny build of the bundled sample,
made here), repeated with fresh ids up to `--rows`, one row group per file, as the pipeline writes
them but without compression or dictionary encoding: either would find the repeated images within a
file and make it unrealistically small, where real image bytes are already compressed and distinct. Prints, per file size: files per
10,000 rows, seconds to read every column and to read the key columns (best of `--repeats`), and
both as ratios against the largest size, read in this same process.
"""

from __future__ import annotations

import argparse
import glob
import json
import tempfile
import time
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
KEY_COLUMNS = ["id", "source_key"]


def _source_rows(source: Path | None, workdir: Path) -> pa.Table:
    if source is None:
        import beam_runner  # imports Beam

        source = workdir / "source"
        beam_runner.run(["--input", str(ROOT / "data" / "sample"), "--output", str(source), "--config", "tiny",
                         "--runner=DirectRunner", "--progress-interval", "0", "--log-level", "WARNING"])
    tables = [pq.read_table(path) for path in sorted(glob.glob(str(source / "shards" / "*.parquet")))]
    return pa.concat_tables(tables)


def _repeated(table: pa.Table, rows: int) -> pa.Table:
    """`table`'s rows repeated to `rows`, each copy with its own id (as distinct inputs would have)."""
    copies, n = [], 0
    while n < rows:
        take = table.slice(0, min(table.num_rows, rows - n))
        ids = pc.binary_join_element_wise(take.column("id"), pa.scalar(f"-{len(copies)}"), "")
        copies.append(take.set_column(take.schema.get_field_index("id"), "id", ids))
        n += take.num_rows
    return pa.concat_tables(copies)


def _write(table: pa.Table, folder: Path, rows_per_file: int) -> int:
    folder.mkdir(parents=True)
    files = 0
    for start in range(0, table.num_rows, rows_per_file):
        pq.write_table(table.slice(start, rows_per_file), folder / f"part-{files:05d}.parquet", compression="none",
                       use_dictionary=False, use_compliant_nested_type=True)
        files += 1
    return files


def _best_read(folder: Path, columns: Sequence[str] | None, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for path in sorted(folder.glob("*.parquet")):
            pq.read_table(path, columns=columns)
        best = min(best, time.perf_counter() - started)
    return best


def measure(rows: int, sizes: Sequence[int], repeats: int, source: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        table = _repeated(_source_rows(source, Path(tmp)), rows)
        results = {}
        for size in sizes:
            folder = Path(tmp) / f"files-{size}"
            files = _write(table, folder, size)
            results[size] = {"files": files, "files_per_10k_rows": round(10_000 / size, 1),
                             "bytes": sum(p.stat().st_size for p in folder.glob("*.parquet")),
                             "read_all_s": round(_best_read(folder, None, repeats), 4),
                             "read_keys_s": round(_best_read(folder, KEY_COLUMNS, repeats), 4)}
    base = results[max(sizes)]
    for result in results.values():
        result["read_all_ratio"] = round(result["read_all_s"] / base["read_all_s"], 2)
        result["read_keys_ratio"] = round(result["read_keys_s"] / base["read_keys_s"], 2)
    return {"rows": rows, "row_bytes": round(base["bytes"] / rows), "sizes": results}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shard_files", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096, help="rows written at each file size")
    parser.add_argument("--sizes", default="16,64,256,1024", help="rows per file, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="reads per size; the best is kept")
    parser.add_argument("--source", type=Path, help="an output folder whose rows to repeat (default: a tiny build)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    result = measure(args.rows, [int(s) for s in args.sizes.split(",")], args.repeats, args.source)
    print(f"{result['rows']} rows of ~{result['row_bytes']} bytes; ratios against {max(result['sizes'])} rows per file")
    print("rows/file  files/10k rows   read all (s)  ratio   read keys (s)  ratio")
    for size, r in result["sizes"].items():
        print(f"{size:>9}  {r['files_per_10k_rows']:>14}  {r['read_all_s']:>12}  {r['read_all_ratio']:>5}  "
              f"{r['read_keys_s']:>14}  {r['read_keys_ratio']:>5}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
