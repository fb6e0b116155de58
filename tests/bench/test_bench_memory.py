"""The memory benchmark's feature-job path: peak RSS over N and 2N rows, in fresh processes, within its target
ratio (a coarse bound: model loading dominates at this size; the pipeline job's memory is checked on its graph,
tests/pipelines/test_memory_graph.py)."""

import pytest

from bench import memory


@pytest.mark.time_limit(600)  # waits on two benchmark processes
def test_feature_job_memory_ratio_runs_both_sizes_in_fresh_processes(tmp_path):
    report = memory.memory_ratio(tmp_path, memory.FEATURES_CONFIG, n=3, factor=2, job="features")
    runs = report["runs"]
    assert sorted(runs, key=int) == ["3", "6"]
    for size, record in runs.items():
        assert record["samples"] == int(size) == record["rows"] + record["rejects"]
        assert record["peak_mib"] > 100 and record["seconds"] > 0
    assert report["ratio"] == runs["6"]["peak_mib"] / runs["3"]["peak_mib"] <= memory.TARGET_RATIO
