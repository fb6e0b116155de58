"""Beam shell over `unimo_g.captions` and `grounding.phrases.noun_phrases`: caption -> cleaned caption -> noun
phrases to ground and the phrases set aside (with why), one spaCy pipeline per worker. A caption
that cleaning leaves empty (only markup) is a reject at stage `phrases`, reason `empty_after_cleaning`."""

from __future__ import annotations

from typing import Union

import apache_beam as beam
from apache_beam.metrics import Metrics

from grounding.phrases.noun_phrases import extract_phrase_set, load_nlp
from pipelines import metrics
from pipelines.prompts.decode import DecodedSample
from pipelines.prompts.work_item import WorkItem
from pipelines.staged import REJECTS, DoFnStage
from unimo_g.captions import clean_caption
from unimo_g.pipeline_config import CaptionConfig, PhraseConfig
from unimo_g.records import Reject

STAGE = "phrases"
REASON_EMPTY = "empty_after_cleaning"


def clean_sample(sample: DecodedSample, config: CaptionConfig) -> Union[str, Reject]:
    """The cleaned caption of `sample`, or its Reject when nothing is left."""
    caption = clean_caption(sample.caption, config)
    if caption.strip():
        return caption
    return Reject(id=sample.id, source=sample.source_key, stage=STAGE, reason=REASON_EMPTY,
                  detail=f"caption {sample.caption[:80]!r} is empty once cleaned", provenance=sample.provenance)


def phrase_item(sample: DecodedSample, caption: str, nlp, config: PhraseConfig) -> WorkItem:
    """The WorkItem of a sample and its cleaned caption: phrases to ground with their plural flags,
    and the phrases set aside (with why). The stage's logic, shared with the benchmarks' plain loop."""
    found = extract_phrase_set(nlp(caption), config)
    return WorkItem(sample=sample, caption=caption, phrases=found.phrases, plural=found.plural,
                    set_aside=found.set_aside)


class ExtractPhrasesFn(beam.DoFn):
    """DecodedSample -> WorkItem with the cleaned caption, `phrases` with their plural flags and the
    phrases set aside (main output), or a Reject (output tagged `REJECTS`)."""

    def __init__(self, config: PhraseConfig, captions: CaptionConfig | None = None):
        self._config = config
        self._captions = captions or CaptionConfig()
        self._nlp = None
        self._phrases = Metrics.distribution("unimo_g", "phrases_per_caption")

    def setup(self):
        self._nlp = load_nlp(self._config.spacy_model)

    def process(self, sample: DecodedSample):
        caption = clean_sample(sample, self._captions)
        if isinstance(caption, Reject):
            Metrics.counter(metrics.DECODE, metrics.reject_counter_name(caption.stage, caption.reason)).inc()
            yield beam.pvalue.TaggedOutput(REJECTS, caption)
            return
        item = phrase_item(sample, caption, self._nlp, self._config)
        self._phrases.update(len(item.phrases))
        yield item


class ExtractPhrases(DoFnStage):
    """PCollection[DecodedSample] -> Staged(WorkItems with the cleaned caption and its phrases, the
    `empty_after_cleaning` Rejects)."""

    def __init__(self, config: PhraseConfig, captions: CaptionConfig | None = None):
        super().__init__(ExtractPhrasesFn(config, captions))
