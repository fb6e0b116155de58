"""The Fn API deployment Spark and Flink use, as separate processes: the build submits to a Beam job
service (`--runner=PortableRunner --job_endpoint=...`), whose SDK workers come from a worker pool
(`--environment_type=EXTERNAL`), as a Spark executor's or Flink TaskManager's do. Rows are compared
with the DirectRunner's in full; a run killed part way (the build, the job service, the worker pool
and its SDK workers at once) finishes with `--resume` to exactly the DirectRunner's rows.
"""

from __future__ import annotations

import json

import pytest

from tests.cluster.beam_services import Deployment, WorkerPool
from tests.cluster.jobs import (LARGER_INPUTS, LARGER_SETTINGS, kill_part_way_then_resume,
                                manifest_counts, run_build)
from tests.run_outputs import SAMPLE, read_rows

pytestmark = [pytest.mark.cluster, pytest.mark.time_limit(900)]


def portable_flags(job_endpoint: str, pool: WorkerPool) -> list[str]:
    return ["--runner=PortableRunner", f"--job_endpoint={job_endpoint}", *pool.environment_flags()]


def test_sample_rows_equal_the_direct_runners(beam_job_service, beam_worker_pool, tmp_path):
    direct = run_build(SAMPLE, tmp_path / "direct", "--runner=DirectRunner")
    portable = run_build(SAMPLE, tmp_path / "portable", *portable_flags(beam_job_service, beam_worker_pool))
    assert read_rows(portable) == read_rows(direct)
    counts = manifest_counts(portable)
    assert counts["accounted"] and counts["inputs"] == 10 and counts["rows"] + counts["rejects"] == 10


def test_larger_input_rows_and_rejects_equal_the_direct_runners(beam_job_service, beam_worker_pool, larger_input,
                                                                larger_direct, tmp_path):
    portable = run_build(larger_input, tmp_path / "portable", *portable_flags(beam_job_service, beam_worker_pool),
                         *LARGER_SETTINGS)
    assert read_rows(portable) == read_rows(larger_direct)
    counts, expected = manifest_counts(portable), manifest_counts(larger_direct)
    assert counts["accounted"] and counts["inputs"] == LARGER_INPUTS
    same = ("rows", "rejects", "rejects_by_reason")
    assert {k: counts[k] for k in same} == {k: expected[k] for k in same}
    assert counts["rows"] > 0 and counts["rejects"] > 0  # both paths ran on the workers


def test_a_killed_run_resumes_to_the_direct_runners_rows(larger_input, larger_direct, tmp_path):
    def flags(deployed: Deployment) -> list[str]:
        return [*portable_flags(deployed.job_endpoint, deployed.pool), *LARGER_SETTINGS]

    out = kill_part_way_then_resume(larger_input, tmp_path, flags, job_service=True)
    assert read_rows(out) == read_rows(larger_direct)


def model_loads(pool: WorkerPool, since: int) -> dict[str, int]:
    """How many times each model step loaded its model, from the pool's load log past byte `since`."""
    counts: dict[str, int] = {}
    text = pool.load_log.read_text()[since:] if pool.load_log.exists() else ""
    for line in text.splitlines():
        stage = json.loads(line)["stage"]
        counts[stage] = counts.get(stage, 0) + 1
    return counts


@pytest.mark.parametrize("share_model", [True, False])
def test_model_loads_per_run_with_and_without_sharing(beam_job_service, beam_worker_pool, tmp_path, share_model):
    """Beam's Python job service gives a job one SDK worker: each model loads once per run either way."""
    since = beam_worker_pool.load_log.stat().st_size if beam_worker_pool.load_log.exists() else 0
    flag = str(share_model).lower()
    share = ["--set", f"grounding.runtime.share_model={flag}", "--set", f"segmentation.runtime.share_model={flag}"]
    run_build(SAMPLE, tmp_path / "out", *portable_flags(beam_job_service, beam_worker_pool), *share)
    loads = model_loads(beam_worker_pool, since)
    assert loads.get("grounding") == 1 and loads.get("segmentation") == 1, loads
