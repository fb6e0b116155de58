"""Session fixtures that start real engines on loopback and stop every process they started.

    beam_worker_pool   Beam's SDK worker pool (`--environment_type=EXTERNAL` points here)
    beam_job_service   Beam's Python job service: runs submitted portable pipelines on SDK workers
                       it asks the worker pool for
    spark_cluster      a Spark standalone master and two workers (spark-class, PySpark's distribution)
    flink_cluster      a Flink standalone session cluster: a JobManager and a TaskManager with two slots
    dask_cluster       a dask.distributed scheduler and two single-threaded workers

Each is package-scoped: started on first use, stopped by pid once the last test of tests/cluster has
run, pass or fail, so the engines' processes and their memory do not outlive the tests that use them.
Each waits for readiness with a bounded timeout and logs to a file under the session's temp folder,
which a readiness failure prints (tests/cluster/engines.py, beam_services.py). Where a tool is missing,
`require` fails the test under CI=true and skips it elsewhere; an artifact Maven Central does not serve
skips with Maven's answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from bench.inputs import make_inputs
from tests.cluster import distributions
from tests.cluster.beam_services import WorkerPool, start_job_service, start_worker_pool, wait_until_listening
from tests.cluster.engines import (DaskCluster, FlinkCluster, SparkCluster, dask_distributed, flink_session,
                                   spark_standalone)
from tests.cluster.jobs import BROKEN_INPUTS, LARGER_INPUTS, LARGER_SETTINGS, run_build
from tests.cluster.services import running
from tests.run_outputs import SAMPLE

T = TypeVar("T")
SAMPLE_JPEG = next(SAMPLE.glob("*/*.jpg"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(find: Callable[[], T]) -> T:
    """`find()`, or the test's end: a failure under CI when the install should have provided it."""
    try:
        return find()
    except distributions.NotServed as error:
        pytest.skip(str(error))
    except distributions.Missing as error:
        if IN_CI:
            pytest.fail(f"CI installs everything the cluster tests need, but: {error}")
        pytest.skip(str(error))


@pytest.fixture(scope="package")
def cluster_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="package")
def beam_worker_pool(cluster_dir) -> WorkerPool:
    service, pool = start_worker_pool(cluster_dir / "worker_pool")
    with running(service):
        wait_until_listening(service, pool.address)
        yield pool


@pytest.fixture(scope="package")
def larger_input(cluster_dir) -> Path:
    """LARGER_INPUTS image-caption pairs, folder layout: the sample photos at six sizes, and BROKEN_INPUTS
    pairs that end as rejects (bytes that are no image, an empty caption)."""
    folder = make_inputs(cluster_dir / "larger_input", LARGER_INPUTS - BROKEN_INPUTS)
    for i in range(BROKEN_INPUTS):
        key = folder / "00000" / f"9{i:08d}"
        key.with_suffix(".jpg").write_bytes(b"not an image" if i % 2 else SAMPLE_JPEG.read_bytes())
        key.with_suffix(".txt").write_text("a dog on a sofa" if i % 2 else "")
    return folder


@pytest.fixture(scope="package")
def larger_direct(larger_input, cluster_dir) -> Path:
    """The DirectRunner's output for the larger input: what every other engine must write."""
    return run_build(larger_input, cluster_dir / "larger_direct", "--runner=DirectRunner", *LARGER_SETTINGS)


@pytest.fixture(scope="package")
def beam_job_service(cluster_dir) -> str:
    """The job endpoint (host:port) of a Beam job service process."""
    service, endpoint = start_job_service(cluster_dir / "job_service")
    with running(service):
        wait_until_listening(service, endpoint)
        yield endpoint


@pytest.fixture(scope="package")
def spark_cluster(cluster_dir) -> SparkCluster:
    require(distributions.spark_home)
    require(distributions.java)
    with spark_standalone(cluster_dir / "spark") as cluster:
        yield cluster


@pytest.fixture(scope="package")
def flink_cluster(cluster_dir) -> FlinkCluster:
    require(distributions.flink_home)
    require(distributions.java)
    with flink_session(cluster_dir / "flink") as cluster:
        yield cluster


@pytest.fixture(scope="package")
def dask_cluster(cluster_dir) -> DaskCluster:
    require(distributions.dask_distributed)
    with dask_distributed(cluster_dir / "dask") as cluster:
        yield cluster


@pytest.fixture(scope="package")
def spark_job_server_jar() -> Path:
    """Beam's Spark 3 job server at the installed Beam version (first in a test's arguments: a skip
    for a jar Maven Central does not serve then comes before any other fixture's work)."""
    return require(lambda: distributions.job_server_jar("spark"))


@pytest.fixture(scope="package")
def flink_job_server_jar() -> Path:
    """Beam's Flink job server for distributions.FLINK_JOB_SERVER_MINOR at the installed Beam version."""
    return require(lambda: distributions.job_server_jar("flink"))
