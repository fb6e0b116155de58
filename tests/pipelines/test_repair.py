"""`verify --repair` (and `--resume`) undo what two overlapping runs wrote: each input keeps the
outputs it is due, the same one whatever order the files are read in, and the folder verifies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

import beam_runner
from pipelines.outputs.repair import surplus_outputs
from pipelines.outputs.verify import main as verify_main
from pipelines.outputs.verify import verify
from tests.pipelines.test_resume import TINY, make_folder, outputs


def _run(*args: str) -> int:
    return beam_runner.main([*args, "--config", TINY, "--progress-interval", "0",
                             "--set", "near_duplicates.enabled=false"])


def _doubled(tmp_path: Path) -> tuple[Path, list[str], Path]:
    """An output folder holding two whole runs over the same inputs, as two launches before leases
    could leave it: every input has two outputs."""
    inputs = make_folder(tmp_path / "in", photos=4)
    first, second = tmp_path / "first", tmp_path / "second"
    assert _run("--input", str(tmp_path / "in"), "--output", str(first), "--input-format", "folder") == 0
    assert _run("--input", str(tmp_path / "in"), "--output", str(second), "--input-format", "folder") == 0
    for folder in ("shards", "rejects", "ledger"):
        shutil.copytree(second / folder, first / folder, dirs_exist_ok=True)
    return first, inputs, second


def test_verify_repair_keeps_one_output_per_input(tmp_path, capsys):
    out, inputs, second = _doubled(tmp_path)
    rows, rejects = outputs(out)
    assert len(rows) + len(rejects) == 2 * len(inputs)
    first_run = min(run for _, _, run in rows + rejects)  # its files sort first: it keeps every output
    assert verify(str(out))[0] == 1  # doubled: not accounted
    kept_first = surplus_outputs(str(out))
    assert verify_main([str(out), "--repair", "--write"]) == 0
    assert "repaired: " in capsys.readouterr().out
    rows, rejects = outputs(out)
    assert sorted(key for _, key, _ in rows + rejects) == inputs
    assert {run for _, _, run in rows + rejects} == {first_run}  # the deterministic choice, whatever the order
    assert surplus_outputs(str(out)) == {} and kept_first  # nothing more to repair
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["accounted"] and manifest["counts"]["duplicate_row_ids"] == 0
    for path in (out / "shards").glob("*.parquet"):  # rewritten files keep their schema version and lineage
        assert {b"unimo_g.schema_version", b"unimo_g.lineage"} <= set(pq.ParquetFile(path).schema_arrow.metadata)


def test_resume_repairs_a_doubled_folder_before_it_runs(tmp_path):
    out, inputs, _ = _doubled(tmp_path)
    assert _run("--input", str(tmp_path / "in"), "--output", str(out), "--input-format", "folder", "--resume") == 0
    rows, rejects = outputs(out)
    assert sorted(key for _, key, _ in rows + rejects) == inputs
    assert verify(str(out))[0] == 0
