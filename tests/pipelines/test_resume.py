"""Safe and resumable reruns: refuse, overwrite, resume after a SIGKILL, new inputs, retried rejects."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import beam_runner
from pipelines.io.ledger import read_ledgers
from pipelines.io.write import run_of_file
from tests.processes import launched

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_FILES = ROOT / "data" / "sample" / "00000"
TINY = str(ROOT / "configs" / "tiny.yaml")
ONE_AT_A_TIME = ["--set", "write.rows_per_file=1", "--set", "grounding.runtime.batch_size=1",
                 "--set", "segmentation.runtime.batch_size=1"]


def make_folder(folder: Path, copies: int = 1, start: int = 0, photos: int = 3) -> list[str]:
    """A folder input of `photos` bundled photos (`copies` captions each) plus, with start=0, three
    inputs that become rejects: an empty caption, an image without caption, a duplicate."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted(SAMPLE_FILES.glob("*.jpg"))[:photos]
    keys = []
    for copy in range(start, start + copies):
        for photo in photos:
            key = f"{photo.stem}-{copy}"
            shutil.copy(photo, folder / f"{key}.jpg")
            caption = (SAMPLE_FILES / f"{photo.stem}.txt").read_text().strip()
            (folder / f"{key}.txt").write_text(f"{caption} (take {copy})")
            keys.append(key)
    if start == 0:
        shutil.copy(photos[0], folder / "empty.jpg")
        (folder / "empty.txt").write_text("   ")
        shutil.copy(photos[1], folder / "nocaption.jpg")
        first = f"{photos[0].stem}-0"
        shutil.copy(folder / f"{first}.jpg", folder / "zz-duplicate.jpg")
        shutil.copy(folder / f"{first}.txt", folder / "zz-duplicate.txt")
        keys += ["empty", "nocaption", "zz-duplicate"]
    return sorted(keys)


def outputs(out: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(id, source key) of every row, and of every reject, with the run that wrote it."""
    rows, rejects = [], []
    for path in sorted((out / "shards").glob("*.parquet")):
        table = pq.read_table(path, columns=["id", "source_key"])
        rows += [(i, k, run_of_file(str(path))) for i, k in zip(*(table.column(c).to_pylist() for c in table.column_names))]
    for path in sorted((out / "rejects").glob("*.parquet")):
        table = pq.read_table(path, columns=["id", "source"])
        rejects += [(i, k, run_of_file(str(path))) for i, k in zip(*(table.column(c).to_pylist() for c in table.column_names))]
    return rows, rejects


def runner(*args: str) -> int:
    # the inputs repeat photos under several captions: near-duplicates, which these tests do not study
    return beam_runner.main([*args, "--config", TINY, "--progress-interval", "0",
                             "--set", "near_duplicates.enabled=false"])


def test_sigkilled_run_resumes_reading_only_what_has_no_output(tmp_path):
    inputs = make_folder(tmp_path / "in", copies=2, photos=10)  # enough left to do when the kill comes
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "beam_runner.py"), "--input", str(tmp_path / "in"), "--output", str(out),
               "--config", TINY, "--input-format", "folder", "--progress-interval", "0.5", *ONE_AT_A_TIME]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "killed.log"
    with open(log, "w") as stderr, launched(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                            stderr=stderr) as process:
        started, deadline = time.monotonic(), time.monotonic() + 300
        while time.monotonic() < deadline and (len(list((out / "shards").glob("*.parquet"))) < 2
                                               or "progress:" not in log.read_text()):
            assert process.poll() is None, f"the run ended before it could be killed: {log.read_text()[-2000:]}"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        elapsed = time.monotonic() - started
    assert not (out / "manifest.json").exists(), "the killed run must not have finished"
    rows, rejects = outputs(out)
    done = {key for _, key, _ in rows + rejects}
    assert 2 <= len(rows) and done < set(inputs)
    # live progress: status lines at most every interval, not one per sample
    progress = [line for line in log.read_text().splitlines() if "progress:" in line]
    assert 1 <= len(progress) <= elapsed / 0.5 + 2, progress

    resume = ["--input", str(tmp_path / "in"), "--output", str(out), "--config", TINY, "--input-format", "folder",
              "--resume", "--progress-interval", "0", *ONE_AT_A_TIME]
    # the killed launcher's lease is not stale yet: a resume needs --break-lease (its workers are gone here)
    assert beam_runner.main(resume) == 2
    assert beam_runner.main([*resume, "--break-lease"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    rows, rejects = outputs(out)
    assert manifest["counts"]["accounted"] is True
    assert manifest["counts"]["inputs"] == len(inputs) == len(rows) + len(rejects)
    assert sorted(key for _, key, _ in rows + rejects) == inputs  # every input once
    assert len({row_id for row_id, _, _ in rows}) == len(rows)  # no id twice
    resumed = manifest["run_id"]
    ledger = read_ledgers(str(out))[resumed]
    assert sorted(ledger["read"]) == sorted(set(inputs) - done)  # read (and decoded) only what had no output
    assert sorted(ledger["skipped"]) == sorted(done)
    assert sorted(key for _, key, run in rows + rejects if run == resumed) == sorted(set(inputs) - done)
    assert not [p for p in out.rglob("*") if p.name.startswith((".tmp-", "beam-temp-"))]
    assert set(manifest["runs"]) == {resumed, *(run for _, _, run in rows + rejects)}
    assert manifest["runs"][resumed]["inputs_skipped"] == len(done)


def test_resume_after_new_inputs_processes_only_them(tmp_path):
    first = make_folder(tmp_path / "in")
    out = tmp_path / "out"
    assert runner("--input", str(tmp_path / "in"), "--output", str(out), "--input-format", "folder") == 0
    before = json.loads((out / "manifest.json").read_text())
    added = sorted(set(make_folder(tmp_path / "in", copies=1, start=1)))
    for suffix in (".jpg", ".txt"):  # a new input with the content of a row the first run wrote
        shutil.copy(tmp_path / "in" / f"{first[0]}{suffix}", tmp_path / "in" / f"zz-new-duplicate{suffix}")
    added.append("zz-new-duplicate")

    assert runner("--input", str(tmp_path / "in"), "--output", str(out), "--input-format", "folder", "--resume") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    run = manifest["run_id"]
    ledger = read_ledgers(str(out))[run]
    assert sorted(ledger["read"]) == sorted(added) and sorted(ledger["skipped"]) == first
    rows, rejects = outputs(out)
    assert sorted(key for _, key, r in rows + rejects if r == run) == sorted(added)
    assert ("zz-new-duplicate", "dedupe", "duplicate") in {
        (r["source"], r["stage"], r["reason"]) for r in pq.read_table(out / "rejects").to_pylist()}
    assert len({row_id for row_id, _, _ in rows}) == len(rows)
    counts = manifest["counts"]
    assert counts["accounted"] and counts["inputs"] == len(first) + len(added) == counts["rows"] + counts["rejects"]
    assert set(manifest["runs"]) == {before["run_id"], run}
    assert manifest["runs"][before["run_id"]]["inputs_read"] == len(first)


def test_retry_rejects_reprocesses_and_replaces_them(tmp_path):
    folder = tmp_path / "in"
    make_folder(folder)
    lines = [json.dumps({"image": f"{p.stem}.jpg", "caption": p.with_suffix(".txt").read_text(), "key": p.stem})
             for p in sorted(folder.glob("*-0.jpg"))]
    lines.append(json.dumps({"image": "later.jpg", "caption": "a photo that arrives later", "key": "later"}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert runner("--input", str(folder / "manifest.jsonl"), "--output", str(out)) == 0
    rejects = pq.read_table(out / "rejects").to_pylist()
    assert [(r["source"], r["reason"]) for r in rejects] == [("later", "missing_image_file")]

    shutil.copy(sorted(folder.glob("*-0.jpg"))[0], folder / "later.jpg")  # the transient failure is gone
    assert runner("--input", str(folder / "manifest.jsonl"), "--output", str(out), "--resume",
                  "--retry-rejects", "missing_image_file,failed_to_download") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    rows, rejects = outputs(out)
    assert rejects == [] and sorted(k for _, k, _ in rows) == sorted(json.loads(line)["key"] for line in lines)
    assert manifest["counts"]["accounted"] and manifest["counts"]["inputs"] == len(lines)
    assert manifest["runs"][manifest["run_id"]]["retried_rejects"] == 1
    assert read_ledgers(str(out))[manifest["run_id"]]["read"] == Counter(["later"])


def test_non_empty_output_is_refused_and_overwrite_touches_only_its_folders(tmp_path, capsys):
    make_folder(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    args = ["--input", str(tmp_path / "in"), "--output", str(out), "--input-format", "folder"]
    assert runner(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "--overwrite" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    assert runner(*args, "--overwrite") == 0
    first = json.loads((out / "manifest.json").read_text())
    (out / "shards" / ".tmp-x.partial").write_bytes(b"left by a killed run")
    (out / "shards" / "beam-temp-part-123").mkdir()
    assert runner(*args, "--overwrite") == 0
    second = json.loads((out / "manifest.json").read_text())
    assert list(second["runs"]) == [second["run_id"]] != [first["run_id"]]  # nothing of the first run left
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "ledger", "manifest.json", "notes.txt", "rejects", "shards"]  # README.md: the dataset card
    assert (out / "notes.txt").read_text() == "kept"
    assert not [p for p in out.rglob("*") if p.name.startswith((".tmp-", "beam-temp-"))]

    assert runner(*args, "--resume", "--set", "grounding.box_threshold=0.5") == 2  # another config
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "grounding.box_threshold" in err and "--overwrite" in err
    before = outputs(out)
    assert runner(*args, "--resume", "--set", "grounding.runtime.batch_size=3", "--set", "write.rows_per_file=7") == 0
    assert outputs(out) == before  # execution-only settings may change; nothing was left to do
    assert runner(*args, "--resume", "--overwrite") == 2


@pytest.mark.time_limit(300)
def test_a_killed_run_with_large_files_keeps_what_it_did_when_files_are_committed_by_time(tmp_path):
    """write.rows_per_file 1024 and 43 inputs: without a time bound no file would be committed before
    the end; with --commit-every files appear while the run goes on, and a kill keeps them."""
    inputs = make_folder(tmp_path / "in", copies=4, photos=10)
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "beam_runner.py"), "--input", str(tmp_path / "in"), "--output", str(out),
               "--config", TINY, "--input-format", "folder", "--progress-interval", "0", "--commit-every", "0.3",
               "--set", "near_duplicates.enabled=false", "--set", "grounding.runtime.batch_size=1",
               "--set", "segmentation.runtime.batch_size=1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "killed.log"
    with open(log, "w") as stderr, launched(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                            stderr=stderr) as process:
        deadline = time.monotonic() + 240
        while len(list((out / "shards").glob("*.parquet"))) < 2:
            assert process.poll() is None, f"the run ended before two files were committed: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    rows, _ = outputs(out)
    assert 2 <= len(rows) < len(inputs)
    assert beam_runner.main(command[2:] + ["--resume", "--break-lease"]) == 0
    rows, rejects = outputs(out)
    assert sorted(key for _, key, _ in rows + rejects) == inputs
