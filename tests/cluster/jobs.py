"""Running the build the way a user does (`python -m unimo_g_cli build ...` in a process of its own),
killing it part way, and reading back what it wrote, for comparing engines."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from tests.cluster.beam_services import Deployment, deployment
from tests.cluster.services import Service, group_alive, running, wait_for
from tests.run_outputs import ROOT, TINY

RUN_TIMEOUT_S = 900
LARGER_INPUTS = 200
BROKEN_INPUTS = 6  # of LARGER_INPUTS: rejects of the decode and check steps
# Every copy of a sample photo a row (the copies are near-duplicates), in files of 16 rows: many
# commits, so a kill lands mid-run.
LARGER_SETTINGS = ("--set", "near_duplicates.enabled=false", "--set", "write.rows_per_file=16")
KILL_AFTER_FILES = 2  # committed shard files before a run is killed


def build_command(input_path: Path, out: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "unimo_g_cli", "build", "--input", str(input_path), "--output", str(out),
            "--config", TINY, *flags]


def build_env(**extra: str) -> dict:
    return dict(os.environ, WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1", **extra)


def run_build(input_path: Path, out: Path, *flags: str) -> Path:
    """Run one build to the end; fail with its output's tail if it does not exit 0."""
    done = subprocess.run(build_command(input_path, out, *flags), env=build_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert done.returncode == 0, f"build exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
    return out


def manifest_counts(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["counts"]


def committed_shards(out: Path) -> list[str]:
    return glob.glob(str(out / "shards" / "*.parquet"))


def kill_part_way_then_resume(input_path: Path, folder: Path, engine_flags: Callable[[Deployment], list[str]],
                              job_service: bool = False) -> Path:
    """Run the build on an engine until KILL_AFTER_FILES shard files are committed (a file commits when
    full: pass LARGER_SETTINGS in `engine_flags`), kill everything
    (the build process with any job server it started, the worker pool with its SDK workers, the job
    service), then finish on fresh processes with `--resume`. Checks that every process died and that
    the resumed output accounts for every input exactly once; returns the output folder."""
    out = folder / "out"
    with deployment(folder / "first", job_service) as first:
        build = Service("build (to be killed)", build_command(input_path, out, *engine_flags(first), "--overwrite"),
                        folder / "first" / "build.log", env=build_env(), cwd=ROOT)
        with running(build):
            wait_for(lambda: len(committed_shards(out)) >= KILL_AFTER_FILES or None,
                     f"{KILL_AFTER_FILES} committed shard files", [build], RUN_TIMEOUT_S, poll_s=0.2)
    for service in (build, *first.services):
        assert not group_alive(service.pid), f"{service.name} left processes behind"
    manifest = out / "manifest.json"
    assert committed_shards(out) and (not manifest.exists() or not manifest_counts(out)["accounted"])

    with deployment(folder / "second", job_service) as second:
        run_build(input_path, out, *engine_flags(second), "--resume")
    counts = manifest_counts(out)
    assert counts["accounted"] and counts["duplicate_row_ids"] == 0
    assert counts["inputs"] == counts["rows"] + counts["rejects"]
    verify = subprocess.run([sys.executable, "-m", "unimo_g_cli", "verify", str(out)], env=build_env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return out
