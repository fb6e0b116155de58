"""Beam shell over `grounding.phrases`: caption -> noun phrases, one spaCy pipeline per worker."""

from __future__ import annotations


import apache_beam as beam
from apache_beam.metrics import Metrics

from grounding.phrases import extract_phrases, is_plural, load_nlp
from pipelines.decode import DecodedSample
from pipelines.work_item import WorkItem
from unimo_g.pipeline_config import PhraseConfig


class ExtractPhrasesFn(beam.DoFn):
    """DecodedSample -> WorkItem with `phrases` and their plural flags."""

    def __init__(self, config: PhraseConfig):
        self._config = config
        self._nlp = None
        self._phrases = Metrics.distribution("unimo_g", "phrases_per_caption")

    def setup(self):
        self._nlp = load_nlp(self._config.spacy_model)

    def process(self, sample: DecodedSample):
        doc = self._nlp(sample.caption)
        phrases = extract_phrases(doc, self._config)
        self._phrases.update(len(phrases))
        yield WorkItem(sample=sample, phrases=phrases, plural=tuple(is_plural(doc, p) for p in phrases))
