"""Beam's DaskRunner on a dask.distributed scheduler with two workers (tests/cluster/conftest.py).

The build refuses the DaskRunner (pipelines/runner_support.py) because the runner cannot execute its
graph correctly; these tests pin down why on the cluster, on a three-step graph, so that a Beam
release that fixes the runner fails them and the refusal can be lifted:

- a multi-output ParDo's tagged output carries every output of the ParDo (the runner keys each step's
  Dask bag by the producing transform, not by the output, `DaskRunner.to_dask_bag_visitor`); the
  build's first step (Check, with a rejects output) then hands samples to the rejects writer;
- only the bag of the last transform visited is computed (`DaskRunner.run_pipeline`), so sibling
  branches (the build writes shards, rejects and a manifest) do not run;
- `DaskRunnerResult.metrics()` raises NotImplementedError: no Beam counters.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.cluster.jobs import build_command, build_env
from tests.run_outputs import ROOT, SAMPLE

pytestmark = [pytest.mark.cluster, pytest.mark.time_limit(300)]
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


def record(element, folder, branch):
    """Append `element` to FOLDER/BRANCH.jsonl (the workers share this machine's file system). No type
    hints: Beam would check them against the multi-output step's declared output type."""
    with open(Path(folder) / f"{branch}.jsonl", "a") as out:
        out.write(json.dumps(element) + "\n")
    return element


def recorded(folder: Path, branch: str) -> list[int]:
    path = folder / f"{branch}.jsonl"
    return sorted(json.loads(line) for line in path.read_text().splitlines()) if path.exists() else []


def test_the_dask_runner_mixes_tagged_outputs_and_runs_only_the_last_branch(dask_cluster, tmp_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask.dask_runner import DaskRunner

    def split(element):
        yield beam.pvalue.TaggedOutput("odd", element) if element % 2 else element

    options = PipelineOptions([f"--dask_client_address={dask_cluster.address}"])
    pipeline = beam.Pipeline(runner=DaskRunner(), options=options)
    outputs = pipeline | beam.Create([1, 2, 3, 4]) | beam.FlatMap(split).with_outputs("odd", main="even")
    outputs.even | "RecordEven" >> beam.Map(record, str(tmp_path), "even")
    outputs.odd | "RecordOdd" >> beam.Map(record, str(tmp_path), "odd")
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        result.client.close()  # the runner leaves its client open; it would retry the scheduler once stopped

    fixed = "Beam's DaskRunner changed: run the build on Dask again (docs/runbooks/dask.md) and lift the refusal"
    assert recorded(tmp_path, "odd") == [1, 2, 3, 4], f"{fixed} (the tagged output holds only its own elements now)"
    assert recorded(tmp_path, "even") == [], f"{fixed} (sibling branches run now)"
    with pytest.raises(NotImplementedError):
        result.metrics()


def test_the_build_refuses_the_dask_runner_before_writing_anything(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(build_command(SAMPLE, out, f"--runner={DASK_RUNNER}"),
                          env=build_env(), cwd=ROOT, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "DaskRunner" in done.stderr and "docs/runbooks/dask.md" in done.stderr
    assert not out.exists()


def test_the_cluster_has_two_worker_processes(dask_cluster):
    from distributed import Client

    with Client(dask_cluster.address, timeout=30) as client:
        pids = set(client.run(os.getpid).values())
    assert len(pids) == dask_cluster.workers and os.getpid() not in pids
