"""Smoke test of the resume-cost benchmark (no timing assertion)."""

from bench.resume import ROOT, resume_cost


def test_resume_cost_times_a_full_run_and_a_resume_that_skips_everything(tmp_path):
    record = resume_cost(tmp_path, 4, ROOT / "configs" / "tiny.yaml")
    assert record["n"] == 4 == record["skipped"] == record["rows"] + record["rejects"]
    assert record["full_s"] > 0 and record["resume_s"] > 0 and record["ratio"] > 0
