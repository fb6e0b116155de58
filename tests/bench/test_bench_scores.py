"""Smoke test of the score-stage benchmark on the tiny CLIP (no timing assertions)."""

import json

from bench import scores


def test_every_model_is_timed_against_the_decode_baseline(tmp_path):
    out = tmp_path / "scores.json"
    assert scores.main(["--models", "tiny", "--n", "3", "--repeats", "1", "--batch-size", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    ms = result["ms_per_sample"]
    assert result["samples"] == 3
    assert set(ms) == {"decode (baseline)", "tiny: preprocess", "tiny: similarity, forward image",
                       "tiny: similarity, forward batch"}
    assert all(value > 0 for value in ms.values()) and result["x_decode"]["decode (baseline)"] == 1.0
    assert result["gflops_per_image"]["tiny"] > 0
