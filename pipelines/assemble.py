"""Final stage: filter masks, cut entity images, compose the interleaved prompt, build the row."""

from __future__ import annotations

from collections import Counter

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.work_item import WorkItem
from segmentation.entity_image import entity_image
from segmentation.geometry import box_fill, mask_filter_reason
from unimo_g.rle import encode_mask
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.prompt import compose_prompt
from unimo_g.records import Entity, Sample
from unimo_g.schema import prompt_text


def assemble_sample(item: WorkItem, config: PipelineConfig) -> tuple[Sample, Counter]:
    """The output row for `item`, and the count of entities dropped by each mask filter.

    Entities are ordered as the groundings (by phrase position, then score); each entity's box is
    xyxy in pixels of the EXIF-transposed original image, its mask RLE is at that image's size.
    """
    sample = item.sample
    height, width = sample.pixels.shape[:2]
    entities: list[Entity] = []
    dropped: Counter = Counter()
    for grounding, prediction in zip(item.groundings, item.masks, strict=True):
        area = int(prediction.mask.sum())
        reason = mask_filter_reason(
            area, grounding.box, prediction.score, height * width, config.segmentation,
            fill=box_fill(prediction.mask, grounding.box),  # only the mask inside its box counts
        )
        if reason is not None:
            dropped[reason] += 1
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
    prompt = compose_prompt(
        sample.caption, [(e.start, e.end, k) for k, e in enumerate(entities)], config.compose.mode
    )
    row = Sample(
        id=sample.id,
        source_key=sample.source_key,
        url=sample.url,
        sha256=sample.sha256,
        image=sample.image,
        image_format=sample.image_format,
        width=width,
        height=height,
        caption=sample.caption,
        phrases=item.phrases,
        entities=tuple(entities),
        prompt=prompt,
        prompt_text=prompt_text(prompt),
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
