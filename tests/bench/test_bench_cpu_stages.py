"""Smoke test of the CPU-stage benchmark on the tiny preset (no timing assertions)."""

import json

from bench import cpu_stages


def test_every_stage_is_timed_and_the_worker_budget_adds_up(tmp_path):
    out = tmp_path / "cpu.json"
    assert cpu_stages.main(["--preset", "tiny", "--n", "3", "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    ms = result["ms_per_sample"]
    assert result["samples"] == 3 and result["entities_per_sample"] > 0
    assert len(ms) == 8 + len(cpu_stages.ENTITY_ENCODINGS) and all(value > 0 for value in ms.values())
    expected = ms["decode"] + ms["phrases (spaCy)"] + ms["entity images + RLE, PNG level 1 (default)"]
    assert abs(result["gpu_worker_ms"] - expected) < 1e-9
    assert result["gpu_worker_samples_per_s"] == 1e3 / result["gpu_worker_ms"]
