"""Smoke test of the engine-throughput benchmark on Beam's job service and worker pool (no timing
assertion)."""

import pytest

from bench.engines import compare
from tests.run_outputs import TINY

pytestmark = [pytest.mark.cluster, pytest.mark.time_limit(600)]


def test_compare_times_the_direct_runner_and_the_portable_deployment_on_one_input(tmp_path):
    record = compare(tmp_path, "portable", 6, 1, TINY, ())
    rows = {name: [run["rows"] for run in runs] for name, runs in record["runs"].items()}
    assert rows == {"direct": [6], "portable": [6]}
    assert record["direct_inputs_per_s"] > 0 and record["portable_inputs_per_s"] > 0
    assert record["ratio_engine_over_direct"] > 0
