"""Smoke test of `bench.model_sharing` (no timing assertions)."""

import json

from bench import model_sharing


def test_model_sharing_benchmark_runs_both_steps(tmp_path):
    out = tmp_path / "sharing.json"
    assert model_sharing.main(["--n", "2", "--batch-size", "2", "--repeats", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    for stage in ("grounding", "segmentation"):
        assert report[stage]["direct_ms_per_image"] > 0 and report[stage]["shared_ms_per_image"] > 0
