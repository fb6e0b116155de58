"""Beam on a Spark standalone cluster: a master and two workers from the pinned PySpark distribution
(tests/cluster/conftest.py), Beam's Spark 3 job server at the installed Beam version, SDK workers from
Beam's worker pool (`--environment_type=EXTERNAL`). The build's rows equal the DirectRunner's, and a
run killed part way finishes with `--resume`.

The job server jar comes from Maven Central (tests/cluster/distributions.py); where Maven Central does
not serve it the Beam runs skip with Maven's answer, and the cluster itself is still started and checked.
"""

from __future__ import annotations

import pytest

from tests.cluster import distributions
from tests.cluster.beam_services import WorkerPool
from tests.cluster.jobs import LARGER_SETTINGS, kill_part_way_then_resume, manifest_counts, run_build
from tests.cluster.services import http_json
from tests.run_outputs import SAMPLE, read_rows

pytestmark = [pytest.mark.cluster, pytest.mark.time_limit(900)]
PINNED_SPARK = "3.5.8"  # constraints.txt


def spark_flags(cluster, pool: WorkerPool, jar) -> list[str]:
    return ["--runner=SparkRunner", f"--spark_master_url={cluster.master_url}", f"--spark_job_server_jar={jar}",
            *pool.environment_flags()]


def test_the_standalone_cluster_runs_the_pinned_spark_with_two_workers(spark_cluster):
    state = http_json(f"{spark_cluster.ui_url}/json/")
    assert state["status"] == "ALIVE" and state["url"] == spark_cluster.master_url
    assert sorted(worker["state"] for worker in state["workers"]) == ["ALIVE", "ALIVE"]
    assert sum(worker["cores"] for worker in state["workers"]) == 2
    assert distributions.spark_version() == PINNED_SPARK


def test_sample_rows_on_spark_equal_the_direct_runners(spark_job_server_jar, spark_cluster, beam_worker_pool,
                                                       tmp_path):
    direct = run_build(SAMPLE, tmp_path / "direct", "--runner=DirectRunner")
    spark = run_build(SAMPLE, tmp_path / "spark", *spark_flags(spark_cluster, beam_worker_pool, spark_job_server_jar))
    assert read_rows(spark) == read_rows(direct)
    assert manifest_counts(spark)["accounted"]


def test_larger_input_on_spark_equals_the_direct_runner_and_resumes_after_a_kill(
        spark_job_server_jar, spark_cluster, larger_input, larger_direct, tmp_path):
    out = kill_part_way_then_resume(larger_input, tmp_path, lambda deployed: [
        *spark_flags(spark_cluster, deployed.pool, spark_job_server_jar), *LARGER_SETTINGS])
    assert read_rows(out) == read_rows(larger_direct)
