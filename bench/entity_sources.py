"""`entities.source: llm` as a phrase source of `bench.phrase_quality`: the pipeline's own code path
(`grounding.entity_models`, the strict retry, `grounding.entity_lists.resolve` with its spaCy
fallback) without Beam, on the labelled captions."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Callable, Sequence

from grounding.entity_lists import EntityResult, replies_with_retry, resolve
from grounding.entity_models import generate_replies, load_entity_model
from grounding.phrases.noun_phrases import load_nlp
from unimo_g.pipeline_config import CaptionConfig, EntitiesConfig, ModelRuntimeConfig, PhraseConfig

Spans = list[list[tuple[int, int]]]


def llm_source(model: str, device: str, dtype: str, spacy_model: str,
               batch_size: int = 16) -> Callable[[Sequence[str]], Spans]:
    """Spans of the phrases the llm source sends to grounding, per caption; prints how many replies
    fell back to spaCy and why (stderr)."""
    config = EntitiesConfig(source="llm", model=model, forward="batch",
                            runtime=ModelRuntimeConfig(device=device, dtype=dtype, batch_size=batch_size))
    phrases = PhraseConfig(spacy_model=spacy_model)
    loaded, nlp = load_entity_model(config), load_nlp(spacy_model)

    def predict(captions: Sequence[str]) -> Spans:
        spans, fallbacks = [], Counter()
        for start in range(0, len(captions), batch_size):
            chunk = list(captions[start : start + batch_size])
            replies = replies_with_retry(lambda chats, _: generate_replies(loaded, chats, None, config), config, chunk)
            for caption, answer in zip(chunk, replies, strict=True):
                result = resolve(answer, caption, config, phrases, CaptionConfig(), nlp)
                assert isinstance(result, EntityResult)  # on_failure spacy: never a reject
                fallbacks.update([result.fallback] if result.fallback else [])
                spans.append([(p.start, p.end) for p in result.found.phrases])
        print(f"llm {model}: {sum(fallbacks.values())} of {len(captions)} captions fell back to spaCy "
              f"{dict(fallbacks.most_common(5))}", file=sys.stderr)
        return spans

    return predict
