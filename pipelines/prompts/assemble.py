"""Final stage: filter masks, cut entity images, compose the interleaved prompt, build the row."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Mapping, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from grounding.phrases.phrase_set import row_phrases
from pipelines.prompts.work_item import WorkItem
from pipelines.staged import Staged
from segmentation.entity_image import entity_image
from segmentation.geometry import box_fill, mask_filter_reason
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.prompt import compose_prompt
from unimo_g.records import Entity, Sample
from unimo_g.rle import encode_mask
from unimo_g.schema import OUTCOME_ENTITY, prompt_text


def phrase_outcomes(num_phrases: int, entities: Sequence[Entity], phrase_reasons: Mapping[int, str],
                    mask_reasons: Mapping[int, str]) -> tuple[str, ...]:
    """One `schema.PHRASE_OUTCOMES` token per phrase: `entity` when it has an entity in the row, else
    the grounding reason (`phrase_reasons`), else the mask filter that dropped its best box
    (`mask_reasons`), else `below_threshold` (grounding found no box and gave no reason)."""
    with_entity = {entity.phrase for entity in entities}
    return tuple(
        OUTCOME_ENTITY if k in with_entity else phrase_reasons.get(k) or mask_reasons.get(k) or "below_threshold"
        for k in range(num_phrases)
    )


def assemble_sample(item: WorkItem, config: PipelineConfig) -> tuple[Sample, Counter]:
    """The output row for `item`, and the count of entities dropped by each mask filter.

    Entities are ordered as the groundings (by phrase position, then score); each entity's box is
    xyxy in pixels of the EXIF-transposed original image, its mask RLE is at that image's size.
    The row's `caption` is `item.caption` (the cleaned caption the phrases index; the sample's own
    caption when `item.caption` is empty), `caption_original` the caption as received. The row's
    phrases are the grounded ones and `item.set_aside` in order of start (`grounding.phrases.phrase_set`);
    a further mention of an entity's phrase is replaced by that entity in the prompt too.
    """
    sample = item.sample
    caption = item.caption or sample.caption
    height, width = sample.pixels.shape[:2]
    entities: list[Entity] = []
    dropped: Counter = Counter()
    mask_reasons: dict[int, str] = {}
    for grounding, prediction in zip(item.groundings, item.masks, strict=True):
        area = int(prediction.mask.sum())
        reason = mask_filter_reason(
            area, grounding.box, prediction.score, height * width, config.segmentation,
            fill=box_fill(prediction.mask, grounding.box),  # only the mask inside its box counts
        )
        if reason is not None:
            dropped[reason] += 1
            mask_reasons.setdefault(grounding.phrase, reason)  # groundings come best first per phrase
            continue
        phrase = item.phrases[grounding.phrase]
        entities.append(
            Entity(
                phrase=grounding.phrase,
                text=phrase.text,
                start=phrase.start,
                end=phrase.end,
                box=tuple(float(v) for v in grounding.box),
                box_score=float(grounding.score),
                mask=encode_mask(prediction.mask),
                mask_area=area,
                mask_score=float(prediction.score),
                image=entity_image(sample.pixels, prediction.mask, grounding.box, config.entity_image),
                image_format=config.entity_image.format,
            )
        )
    outcomes = phrase_outcomes(len(item.phrases), entities, dict(item.phrase_reasons), mask_reasons)
    phrases, outcomes, where = row_phrases(item.phrases, outcomes, item.set_aside)
    spans = [(e.start, e.end, k) for k, e in enumerate(entities)]
    spans += [(m.phrase.start, m.phrase.end, k) for k, e in enumerate(entities)
              for m in item.set_aside if m.of == e.phrase]
    entities = [replace(e, phrase=where[e.phrase]) for e in entities]
    prompt = compose_prompt(caption, spans, config.compose.mode)
    row = Sample(
        id=sample.id,
        source_key=sample.source_key,
        url=sample.url,
        sha256=sample.sha256,
        image=sample.image,
        image_format=sample.image_format,
        width=width,
        height=height,
        caption=caption,
        phrases=phrases,
        entities=tuple(entities),
        prompt=prompt,
        prompt_text=prompt_text(prompt),
        caption_original=sample.caption,
        phrase_outcomes=outcomes,
        provenance=sample.provenance,
        phash=sample.phash,
        computed_similarity=sample.computed_similarity,
        computed_aesthetic=sample.computed_aesthetic,
        caption_source=item.caption_source,
    )
    return row, dropped


class AssembleFn(beam.DoFn):
    """WorkItem -> Sample, counting rows, entities and entities dropped by reason."""

    def __init__(self, config: PipelineConfig):
        self._config = config
        self._rows = Metrics.counter("unimo_g", "rows")
        self._entities = Metrics.counter("unimo_g", "entities")

    def process(self, item: WorkItem):
        row, dropped = assemble_sample(item, self._config)
        self._rows.inc()
        self._entities.inc(len(row.entities))
        for reason, count in dropped.items():
            Metrics.counter("unimo_g.entities_dropped", reason).inc(count)
        yield row


class Assemble(beam.PTransform):
    """PCollection[WorkItem] -> Staged(the output rows, no rejects: every item becomes a row)."""

    def __init__(self, config: PipelineConfig):
        super().__init__()
        self._config = config

    def expand(self, items):
        return Staged(items | beam.ParDo(AssembleFn(self._config)))
