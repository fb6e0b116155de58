"""The job writes its own manifest; `verify` rebuilds it from the files and catches broken accounting."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import beam_runner
from pipelines.outputs.verify import main as verify_main
from pipelines.outputs.verify import verify
from pipelines.progress import Progress

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
TINY = str(ROOT / "configs" / "tiny.yaml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The sample (10 inputs) in files of 3 rows, run with --detach: the launcher reads no result,
    so the manifest on disk is the one the job's last step wrote."""
    out = tmp_path_factory.mktemp("verify") / "out"
    assert beam_runner.main(["--input", str(SAMPLE), "--output", str(out), "--config", TINY, "--detach",
                             "--set", "write.rows_per_file=3", "--progress-interval", "0"]) == 0
    return out


def copy_of(finished: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "out"))


def test_the_job_writes_its_manifest_and_verify_agrees(finished):
    manifest = json.loads((finished / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["inputs"] == 10 == counts["rows"] + counts["rejects"] and counts["accounted"] is True
    assert counts["shard_files"] == 4  # 3 + 3 + 3 + 1 rows
    assert manifest["runs"][manifest["run_id"]]["inputs_read"] == 10
    assert verify(str(finished)) == (0, [f"{finished}: 10 inputs -> 10 rows + 0 rejects",
                                         f"input {SAMPLE}: 10 inputs, 0 with neither a row nor a reject"])
    assert not (finished / ".lease").exists()  # the detached job's last step gave the lease back
    snap = Progress(str(finished), manifest["run_id"]).snapshot()
    assert (snap["read"], snap["skipped"], snap["rows"], snap["rejects"]) == (10, 0, 10, 0)


def test_a_lost_shard_file_exits_1_with_the_missing_count(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    lost = sorted((out / "shards").glob("*.parquet"))[0]
    lost_rows = pq.ParquetFile(lost).metadata.num_rows
    lost.unlink()
    assert verify_main([str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{lost_rows} inputs missing" in err and "manifest.json disagrees" in err

    assert verify_main([str(out), "--write"]) == 1  # rewritten from the files: still not accounted
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert (counts["accounted"], counts["missing"], counts["rows"]) == (False, lost_rows, 10 - lost_rows)
    assert "rewrote" in capsys.readouterr().err


def test_a_forced_accounted_true_is_caught(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    lost = sorted((out / "shards").glob("*.parquet"))[0]
    lost_rows = pq.ParquetFile(lost).metadata.num_rows
    lost.unlink()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["counts"].update(accounted=True, rows=10)  # a manifest that claims what the files do not hold
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert verify_main([str(out)]) == 1
    err = capsys.readouterr().err
    assert f"rows: manifest 10 vs files {10 - lost_rows}" in err and "accounted: manifest True vs files False" in err


def test_an_extra_row_file_is_caught(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    first = sorted((out / "shards").glob("*.parquet"))[0]
    shutil.copy(first, first.with_name("copy_" + first.name))  # a row written twice
    assert verify_main([str(out)]) == 1
    extra = pq.ParquetFile(first).metadata.num_rows
    assert f"0 inputs missing, {extra} rows or rejects beyond the inputs read" in capsys.readouterr().err


def test_command_lines(finished, tmp_path):
    for command in ([sys.executable, "-m", "pipelines.outputs.verify", str(finished)],
                    [sys.executable, "beam_runner.py", "verify", str(finished)]):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "10 inputs -> 10 rows + 0 rejects" in result.stdout, result.stderr
    result = subprocess.run([sys.executable, "beam_runner.py", "verify", str(tmp_path / "none")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_verify_input_names_what_a_killed_run_never_reached(finished, tmp_path):
    """The ledger cannot know inputs a run never read; listing the input's keys does."""
    out = copy_of(finished, tmp_path)
    (out / "manifest.json").unlink()  # the run's last step never ran
    for path in sorted((out / "shards").glob("*.parquet"))[:2]:  # 6 rows never committed
        path.unlink()
    shutil.rmtree(out / "ledger")  # nor their ledger parts: a run killed before its first part
    (out / "shards" / ".tmp-run-x.partial").write_bytes(b"half a file")
    code, lines = verify(str(out))
    assert code == 1 and any("no manifest.json" in line and "--input PATH" in line for line in lines)
    assert any("1 temporary files of an unfinished run" in line for line in lines)
    code, lines = verify(str(out), input_path=str(SAMPLE))
    assert code == 1 and f"input {SAMPLE}: 10 inputs, 6 with neither a row nor a reject, e.g. " in "\n".join(lines)


def test_a_run_that_wrote_nothing_does_not_verify(tmp_path):
    (tmp_path / "out").mkdir()
    code, lines = verify(str(tmp_path / "out"), input_path=str(SAMPLE))
    assert code == 1 and f"input {SAMPLE}: 10 inputs, 10 with neither a row nor a reject" in "\n".join(lines)


def test_verify_input_names_inputs_added_after_a_finished_run(tmp_path):
    """A finished, accounted run, and an input that has since gained a photo: not verified, naming it."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for key in ("000000001", "000000002"):
        shutil.copy(SAMPLE / "00000" / f"{key}.jpg", folder / f"{key}.jpg")
        shutil.copy(SAMPLE / "00000" / f"{key}.txt", folder / f"{key}.txt")
    assert beam_runner.main(["--input", str(folder), "--output", str(out), "--config", TINY,
                             "--progress-interval", "0"]) == 0
    assert verify(str(out))[0] == 0
    shutil.copy(SAMPLE / "00000" / "000000003.jpg", folder / "added.jpg")
    (folder / "added.txt").write_text("a photo added after the run")
    code, lines = verify(str(out))  # the input the manifest records
    assert code == 1 and f"input {folder}: 3 inputs, 1 with neither a row nor a reject, e.g. added; " in "\n".join(lines)
