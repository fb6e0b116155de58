"""Beam on Flink: a standalone session cluster (a JobManager and a TaskManager with two slots, from
the Flink distribution in the pinned apache-flink-libraries; tests/cluster/conftest.py) and the Flink
cluster Beam's job server embeds (`--flink_master=[local]`), with Beam's Flink job server for the
Flink line Beam publishes at the installed version and SDK workers from Beam's worker pool. The
build's rows equal the DirectRunner's.

The job server jar comes from Maven Central (tests/cluster/distributions.py); where Maven Central does
not serve it the Beam runs skip with Maven's answer, and the cluster itself is still started and checked.
"""

from __future__ import annotations

import pytest

from tests.cluster import distributions
from tests.cluster.beam_services import WorkerPool
from tests.cluster.jobs import LARGER_SETTINGS, manifest_counts, run_build
from tests.cluster.services import http_json
from tests.run_outputs import SAMPLE, read_rows

pytestmark = [pytest.mark.cluster, pytest.mark.time_limit(900)]
PINNED_FLINK = "1.20.3"  # constraints.txt: apache-flink-libraries


def flink_flags(master: str, pool: WorkerPool, jar) -> list[str]:
    return ["--runner=FlinkRunner", f"--flink_master={master}",
            f"--flink_version={distributions.FLINK_JOB_SERVER_MINOR}", f"--flink_job_server_jar={jar}",
            *pool.environment_flags()]


def test_the_session_cluster_runs_the_pinned_flink_with_its_slots(flink_cluster):
    overview = http_json(f"{flink_cluster.rest_url}/overview")
    assert overview["flink-version"] == PINNED_FLINK == distributions.flink_version()
    assert overview["taskmanagers"] == 1 and overview["slots-total"] == flink_cluster.slots
    assert PINNED_FLINK.startswith(distributions.FLINK_JOB_SERVER_MINOR + ".")  # the job server's Flink line


@pytest.mark.parametrize("where", ["embedded", "session cluster"])
def test_sample_rows_on_flink_equal_the_direct_runners(flink_job_server_jar, where, request, beam_worker_pool,
                                                       tmp_path):
    master = "[local]" if where == "embedded" else request.getfixturevalue("flink_cluster").rest_url
    direct = run_build(SAMPLE, tmp_path / "direct", "--runner=DirectRunner")
    flink = run_build(SAMPLE, tmp_path / "flink", *flink_flags(master, beam_worker_pool, flink_job_server_jar))
    assert read_rows(flink) == read_rows(direct)
    assert manifest_counts(flink)["accounted"]


def test_larger_input_on_the_flink_session_cluster_equals_the_direct_runner(
        flink_job_server_jar, flink_cluster, beam_worker_pool, larger_input, larger_direct, tmp_path):
    flink = run_build(larger_input, tmp_path / "flink",
                      *flink_flags(flink_cluster.rest_url, beam_worker_pool, flink_job_server_jar), *LARGER_SETTINGS)
    assert read_rows(flink) == read_rows(larger_direct)
