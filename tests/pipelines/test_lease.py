"""One writer per output folder: the lease is taken atomically before anything is written, a second
launch is refused naming the holder, a stale lease is taken over, --break-lease takes a fresh one
only with --resume, and a run whose lease was taken stops itself."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

import beam_runner
from pipelines.io.lease import LEASE_NAME, Lease, LeaseHeld, LeaseKeeper, acquire, read_lease, release, renew
from pipelines.outputs.verify import verify
from tests.pipelines.test_resume import ONE_AT_A_TIME, ROOT, TINY, make_folder, outputs
from tests.processes import launched

MULTI = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def test_a_second_acquire_is_refused_naming_the_holder(tmp_path):
    out = str(tmp_path / "out")
    first = acquire(out, "run-a", "cmd a")
    assert read_lease(out) == first and (tmp_path / "out" / LEASE_NAME).is_file()
    held = r"in use by run run-a \(host .*, pid \d+; renewed 0 s ago, stale after 120 s\)"
    with pytest.raises(LeaseHeld, match=held):
        acquire(out, "run-b", "cmd b")
    with pytest.raises(LeaseHeld):
        acquire(out, "run-b", "cmd b", break_lease=True)  # --break-lease only with --resume
    assert acquire(out, "run-b", "cmd b", resume=True, break_lease=True).run_id == "run-b"
    assert not release(out, "run-a") and release(out, "run-b") and read_lease(out) is None


def test_a_stale_lease_is_taken_over_and_a_dead_holder_is_named(tmp_path, caplog):
    out = str(tmp_path / "out")
    held = acquire(out, "run-a", "cmd")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "out" / LEASE_NAME).write_bytes(replace(held, pid=dead.pid).to_bytes())
    with pytest.raises(LeaseHeld, match="its process is gone.*pass --resume --break-lease"):
        acquire(out, "run-b", "cmd")
    (tmp_path / "out" / LEASE_NAME).write_bytes(replace(held, renewed_at=time.time() - 500).to_bytes())
    assert acquire(out, "run-b", "cmd").run_id == "run-b"
    assert "is stale: taken over" in caplog.text


def test_a_run_whose_lease_is_taken_over_is_told_once(tmp_path):
    out = str(tmp_path / "out")
    lease = acquire(out, "run-a", "cmd")
    lost = threading.Event()
    keeper = LeaseKeeper(out, lease, lambda message: lost.set(), renew_s=0.05)
    keeper.start()
    time.sleep(0.2)
    assert read_lease(out).renewed_at > lease.renewed_at  # renewed while it runs
    acquire(out, "run-b", "cmd", resume=True, break_lease=True)
    assert lost.wait(5)
    keeper.stop()
    assert renew(out, lease) is None and read_lease(out).run_id == "run-b"


def test_a_torn_or_foreign_file_is_no_lease(tmp_path):
    (tmp_path / LEASE_NAME).write_text("{not json")
    assert read_lease(str(tmp_path)) is None
    assert Lease.from_bytes(Lease("r", "h", 1, "c", 0.0, 0.0, 1.0).to_bytes()).run_id == "r"


def _launch(stack: contextlib.ExitStack, argv: list[str], log: Path) -> subprocess.Popen:
    """A build in a process of its own, its standard error in `log`; killed when `stack` closes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    stderr = stack.enter_context(open(log, "w"))
    return stack.enter_context(launched([sys.executable, str(ROOT / "beam_runner.py"), *argv], cwd=ROOT, env=env,
                                        stdout=subprocess.DEVNULL, stderr=stderr))


@pytest.mark.time_limit(300)
@pytest.mark.parametrize("mode", [[], MULTI], ids=["in_memory", "multi_processing"])
def test_two_launches_at_once_one_runs_the_other_is_refused(tmp_path, mode):
    inputs = make_folder(tmp_path / "in", photos=4)
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "in"), "--output", str(out), "--config", TINY, "--input-format", "folder",
            "--set", "near_duplicates.enabled=false", "--progress-interval", "0", *mode]
    with contextlib.ExitStack() as stack:
        launches = [_launch(stack, argv, tmp_path / f"{i}.log") for i in range(2)]
        codes = sorted(p.wait(timeout=240) for p in launches)
    logs = [(tmp_path / f"{i}.log").read_text() for i in range(2)]
    assert codes == [0, 2], logs
    assert any("is in use by run" in log or "is not empty" in log for log in logs), logs
    assert verify(str(out))[0] == 0 and not (out / LEASE_NAME).exists()
    rows, rejects = outputs(out)
    assert sorted(key for _, key, _ in rows + rejects) == inputs  # every input once: no doubled rows


@pytest.mark.time_limit(300)
def test_a_resume_during_a_new_run_is_refused_and_deletes_nothing(tmp_path):
    inputs = make_folder(tmp_path / "in", copies=6, photos=10)  # long enough to be running at the resume
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "in"), "--output", str(out), "--config", TINY, "--input-format", "folder",
            "--set", "near_duplicates.enabled=false", "--progress-interval", "0", *ONE_AT_A_TIME]
    with contextlib.ExitStack() as stack:
        first = _launch(stack, argv, tmp_path / "first.log")
        deadline = time.monotonic() + 180
        while not list((out / "shards").glob("*.parquet")):
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-2000:]
            time.sleep(0.05)
        before = {p.name for p in (out / "shards").glob("*.parquet")}
        assert beam_runner.main([*argv, "--resume"]) == 2
        assert first.poll() is None, "the first run ended before the resume was refused: the test proves nothing"
        assert before <= {p.name for p in (out / "shards").iterdir()}  # nothing of the first run deleted
        assert first.wait(timeout=240) == 0, (tmp_path / "first.log").read_text()[-2000:]
    assert verify(str(out))[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["inputs"] == len(inputs) and manifest["counts"]["duplicate_row_ids"] == 0
