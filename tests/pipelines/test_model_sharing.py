"""One model copy per machine: with `runtime.share_model`, the SDK processes of a worker call one
loaded model instead of loading their own (Beam's `share_model_across_processes`).

Counted from the load log every model load appends to (`UNIMO_G_MODEL_LOAD_LOG`), on the
DirectRunner with two worker processes.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from pipelines.prompts.model_handlers import LOAD_LOG_ENV, GroundingModelHandler, SegmentationModelHandler
from tests.pipelines.test_end_to_end import run_job
from tests.run_outputs import read_rows
from unimo_g.pipeline_config import GroundingConfig, ModelRuntimeConfig, SegmentationConfig

TWO_PROCESSES = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _loads(log) -> Counter:
    lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return Counter((line["stage"], line["pid"]) for line in lines)


def _run(tmp_path, monkeypatch, name: str, share: str):
    log = tmp_path / f"{name}.loads.jsonl"
    monkeypatch.setenv(LOAD_LOG_ENV, str(log))
    out = run_job(tmp_path, name, *TWO_PROCESSES, "--set", f"grounding.runtime.share_model={share}",
                  "--set", f"segmentation.runtime.share_model={share}", "--set", f"scores.runtime.share_model={share}")
    return out, _loads(log)


def test_two_processes_share_one_model_per_stage_and_rows_are_unchanged(tmp_path, monkeypatch):
    shared_out, shared = _run(tmp_path, monkeypatch, "shared", "true")
    assert sorted(stage for stage, _ in shared) == ["grounding", "scores", "segmentation"]
    assert all(count == 1 for count in shared.values()), shared

    own_out, own = _run(tmp_path, monkeypatch, "own", "false")
    assert sorted(stage for stage, _ in own) == ["grounding", "grounding", "scores", "scores", "segmentation",
                                                 "segmentation"], (
        "without sharing each of the two processes loads its own copy")
    assert read_rows(shared_out) == read_rows(own_out)


def test_sharing_defaults_to_on_for_gpus_and_follows_the_config():
    cpu, gpu = ModelRuntimeConfig(), ModelRuntimeConfig(device="cuda")
    assert (cpu.shares_model, gpu.shares_model, ModelRuntimeConfig(device="cuda:1").shares_model) == (False, True, True)
    handler = GroundingModelHandler(GroundingConfig(runtime=ModelRuntimeConfig(device="cuda", model_copies=2)))
    assert (handler.share_model_across_processes(), handler.model_copies()) == (True, 2)
    handler = SegmentationModelHandler(SegmentationConfig(runtime=ModelRuntimeConfig(device="cuda", share_model=False)))
    assert handler.share_model_across_processes() is False
    assert SegmentationModelHandler(SegmentationConfig()).share_model_across_processes() is False
    with pytest.raises(ValueError, match="model_copies=2 needs runtime.share_model"):
        ModelRuntimeConfig(share_model=False, model_copies=2)
    with pytest.raises(ValueError, match="model_copies must be >= 1"):
        ModelRuntimeConfig(model_copies=0)
