"""SIGINT and SIGTERM during a build, in both DirectRunner modes: the run stops at once with two
lines (what is committed, the command that continues it) and exit 130 / 143, no process of the run
is left, nothing is committed after the launcher has said it stopped, and `--resume` finishes with
every input accounted for once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import beam_runner
from pipelines.interrupt import descendant_pids, resume_command
from tests.pipelines.test_resume import ONE_AT_A_TIME, ROOT, TINY, make_folder, outputs
from tests.processes import launched

MULTI = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _live_members(group: int) -> list[int]:
    """Processes of process group `group` that are not zombies."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


@pytest.mark.time_limit(240)
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process groups from /proc")
@pytest.mark.parametrize("mode, signum, to_group", [
    ([], signal.SIGINT, True),  # Ctrl-C in a terminal: the whole foreground group gets SIGINT
    (MULTI, signal.SIGINT, True),
    (MULTI, signal.SIGTERM, False),  # `kill PID` of the launcher alone: its workers must still end
    ([], signal.SIGTERM, False),
], ids=["in_memory-SIGINT", "multi_processing-SIGINT", "multi_processing-SIGTERM", "in_memory-SIGTERM"])
def test_a_signal_stops_the_whole_run_in_two_lines_and_resume_finishes_it(tmp_path, mode, signum, to_group):
    inputs = make_folder(tmp_path / "in", copies=2, photos=10)
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "in"), "--output", str(out), "--config", TINY, "--input-format", "folder",
            "--set", "near_duplicates.enabled=false", "--progress-interval", "0", *ONE_AT_A_TIME, *mode]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "beam_runner.py"), *argv]
    with launched(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as process:
        deadline = time.monotonic() + 180
        while len(list((out / "shards").glob("*.parquet"))) < 2:
            assert process.poll() is None, f"the run ended before the signal: {process.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no shard file was committed in time"
            time.sleep(0.05)
        if to_group:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
        stderr = process.communicate(timeout=60)[1]
    after_exit = _files(out)

    assert process.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    stop_lines = stderr[stderr.index(f"stopped by {signal.Signals(signum).name}"):].splitlines()
    assert len(stop_lines) == 2, stop_lines
    assert f"are committed in {out}." in stop_lines[0]
    assert stop_lines[1] == f"continue with: {resume_command('python beam_runner.py', argv)}"
    rows, rejects = outputs(out)
    assert f" {len(rows)} rows + {len(rejects)} rejects of " in stop_lines[0]
    assert not (out / "manifest.json").exists(), "a stopped run must not write the manifest of a finished one"
    assert _live_members(process.pid) == [], "a process of the stopped run is still running"
    time.sleep(2)
    assert _files(out) == after_exit, "files were committed after the run said it stopped"

    if mode:  # resume once per mode (in_memory resumes in test_resume.py after a SIGKILL)
        assert beam_runner.main([*argv, "--resume"]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        rows, rejects = outputs(out)
        assert manifest["counts"]["accounted"] is True and manifest["counts"]["inputs"] == len(inputs)
        assert sorted(key for _, key, _ in rows + rejects) == inputs
        stopped = [run for run_id, run in manifest["runs"].items() if run_id != manifest["run_id"]]
        assert len(stopped) == 1 and stopped[0]["inputs_read"] >= stopped[0]["rows"] + stopped[0]["rejects"] > 0


def test_descendants_are_found_below_a_process():
    child = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(descendant_pids(os.getpid())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        found = descendant_pids(os.getpid())
        assert found[0] == child.pid and len(found) == 2  # the shell, then its sleep
    finally:
        for pid in reversed(descendant_pids(os.getpid())):
            os.kill(pid, signal.SIGKILL)
        child.wait()


def test_the_continue_command_replaces_overwrite_with_resume():
    assert resume_command("unimo-g build", ["--input", "a b", "--overwrite"]) == "unimo-g build --input 'a b' --resume"
    assert resume_command("python beam_runner.py", ["--resume"]) == "python beam_runner.py --resume"
