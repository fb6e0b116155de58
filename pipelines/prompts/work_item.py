"""The element that flows through the model stages of the pipeline.

Each stage fills one more field with `dataclasses.replace`; all geometry is in pixels of the
EXIF-transposed original image held in `sample.pixels` (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grounding.phrases.phrase_set import SetAside
from pipelines.prompts.decode import DecodedSample
from unimo_g.records import Phrase


@dataclass(frozen=True)
class WorkItem:
    """`caption` is the cleaned caption (`unimo_g.captions.clean_caption` of `sample.caption`) that
    `phrases` index; `phrase_reasons[k]` says why phrase k kept no box in grounding; `set_aside`
    holds the caption's other phrases, never grounded (`grounding.phrases.phrase_set`)."""

    sample: DecodedSample
    caption: str = ""
    phrases: tuple[Phrase, ...] = ()
    plural: tuple[bool, ...] = ()  # per phrase: its head noun is plural
    set_aside: tuple[SetAside, ...] = ()
    caption_source: str = "input"  # who wrote `caption`: the input, or the model id (entities.source mllm)
    groundings: tuple[Any, ...] = ()  # grounding.detect.Grounding, sorted
    phrase_reasons: tuple[tuple[int, str], ...] = ()  # (phrase, reason) for phrases without a box
    masks: tuple[Any, ...] = ()  # segmentation.segment.MaskPrediction, aligned with groundings
