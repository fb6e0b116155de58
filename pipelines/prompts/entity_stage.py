"""The paper's step 1 as a model stage (`entities.source` mllm or llm): a model names the entities.

    DecodedSamples ─► CleanCaptions ─► RunInference(EntityModelHandler) ─► ApplyEntities ─► WorkItems
    (empty captions, model errors and, with on_failure reject, unparseable replies) ─► Staged.rejects

The handler asks the model (`grounding.entity_models`, or vLLM: `pipelines.prompts.entity_vllm`) for each
request's reply and one strict retry of a reply that fails the check (`grounding.entity_lists`);
ApplyEntities, which holds the spaCy pipeline, turns the replies into the caption and phrases of
the WorkItem (`grounding.entity_lists.resolve`). Rejects: stage `recaption` (mllm) or `entities`
(llm), reason `model_error` or `unparseable`; spaCy fallbacks are counted by the failure reasons.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from grounding.entity_lists import EntityResult, replies_with_retry, resolve
from grounding.entity_models import generate_replies, load_entity_model
from grounding.phrases.noun_phrases import load_nlp
from pipelines import metrics
from pipelines.prompts.decode import DecodedSample
from pipelines.prompts.model_handlers import IsolatingHandler, record_load
from pipelines.prompts.model_stage import RunModelStage
from pipelines.prompts.phrase_stage import clean_sample
from pipelines.prompts.work_item import WorkItem
from pipelines.staged import REJECTS, DoFnStage, Staged
from unimo_g.pipeline_config import CaptionConfig, EntitiesConfig, PhraseConfig
from unimo_g.records import Reject

REASON_UNPARSEABLE = "unparseable"
MAX_DETAIL_CHARS = 500


def stage_name(config: EntitiesConfig) -> str:
    return "recaption" if config.source == "mllm" else "entities"


@dataclass(frozen=True)
class EntityRequest:
    """A sample with its cleaned caption; after the model, `replies` holds its answer (and retry)."""

    sample: DecodedSample
    caption: str
    replies: tuple[str, ...] = ()


class EntityRunner:
    """A loaded model with the one call RunInference makes (callable through a shared-model proxy)."""

    def __init__(self, config: EntitiesConfig):
        started = time.perf_counter()
        self._config = config
        self._loaded = load_entity_model(config)
        record_load(stage_name(config), config.model_id, config.runtime.device, time.perf_counter() - started)

    def reply(self, captions: list[str], images: Optional[list]) -> list[tuple[str, ...]]:
        """Per request, its reply and the strict retry's when the first failed the check."""
        return replies_with_retry(lambda chats, pictures: generate_replies(self._loaded, chats, pictures, self._config),
                                  self._config, captions, images)


class EntityModelHandler(IsolatingHandler):
    """EntityRequest -> EntityRequest with `replies`, or a model_error Reject (`run_isolated`)."""

    def __init__(self, config: EntitiesConfig):
        super().__init__(config)
        self.stage = stage_name(config)

    def load_model(self):
        if self._config.backend == "vllm":
            from pipelines.prompts.entity_vllm import VllmEntityRunner  # needs vllm and openai

            return VllmEntityRunner(self._config)
        return EntityRunner(self._config)

    def _infer(self, batch: Sequence[EntityRequest], model) -> list[EntityRequest]:
        images = [item.sample.pixels for item in batch] if self._config.source == "mllm" else None
        replies = model.reply([item.caption for item in batch], images)
        return [EntityRequest(item.sample, item.caption, tuple(r)) for item, r in zip(batch, replies, strict=True)]


class CleanCaptionFn(beam.DoFn):
    """DecodedSample -> EntityRequest, or the `empty_after_cleaning` Reject of the phrase stage."""

    def __init__(self, captions: CaptionConfig):
        self._captions = captions

    def process(self, sample: DecodedSample):
        caption = clean_sample(sample, self._captions)
        if isinstance(caption, Reject):
            Metrics.counter(metrics.DECODE, metrics.reject_counter_name(caption.stage, caption.reason)).inc()
            yield beam.pvalue.TaggedOutput(REJECTS, caption)
        else:
            yield EntityRequest(sample, caption)


def to_work_item(request: EntityRequest, result: EntityResult) -> WorkItem:
    return WorkItem(sample=request.sample, caption=result.caption, phrases=result.found.phrases,
                    plural=result.found.plural, set_aside=result.found.set_aside, caption_source=result.caption_source)


class ApplyEntitiesFn(beam.DoFn):
    """EntityRequest with replies -> WorkItem (main output), or an `unparseable` Reject (`REJECTS`)."""

    def __init__(self, config: EntitiesConfig, phrases: PhraseConfig, captions: CaptionConfig):
        self._config, self._phrases, self._captions = config, phrases, captions
        self._nlp = None

    def setup(self):
        self._nlp = load_nlp(self._phrases.spacy_model)

    def process(self, request: EntityRequest):
        stage = stage_name(self._config)
        result = resolve(request.replies, request.caption, self._config, self._phrases, self._captions, self._nlp)
        if isinstance(result, EntityResult):
            if result.fallback is not None:  # counted once per failure reason of its replies
                for reason in sorted(set(result.fallback.split(","))):
                    Metrics.counter(f"unimo_g.{stage}", f"spacy_fallback.{reason}").inc()
            yield to_work_item(request, result)
            return
        detail = "; ".join(f"reply {k + 1}: {f.reason}: {f.detail}" for k, f in enumerate(result))
        reject = Reject(id=request.sample.id, source=request.sample.source_key, stage=stage, reason=REASON_UNPARSEABLE,
                        detail=detail[:MAX_DETAIL_CHARS], provenance=request.sample.provenance)
        Metrics.counter(metrics.DECODE, metrics.reject_counter_name(stage, REASON_UNPARSEABLE)).inc()
        yield beam.pvalue.TaggedOutput(REJECTS, reject)


class ListEntities(beam.PTransform):
    """PCollection[DecodedSample] -> Staged(WorkItems, the Rejects of its three steps)."""

    def __init__(self, config: EntitiesConfig, phrases: PhraseConfig, captions: CaptionConfig):
        super().__init__()
        if config.source == "spacy":
            raise ValueError("ListEntities runs entities.source mllm or llm; spacy is the phrase stage")
        self._config, self._phrases, self._captions = config, phrases, captions

    def expand(self, samples):
        handler = EntityModelHandler(self._config)  # its model_error Rejects split off by RunModelStage
        cleaned = samples | "CleanCaptions" >> DoFnStage(CleanCaptionFn(self._captions))
        answered = cleaned.samples | "Model" >> RunModelStage(handler)
        applied = answered.samples | "ApplyEntities" >> DoFnStage(
            ApplyEntitiesFn(self._config, self._phrases, self._captions))
        return Staged(applied.samples, cleaned.rejects + answered.rejects + applied.rejects)
