"""Interleaved multimodal prompts: the caption with entity phrases replaced by (or followed by) images.

Used by the pipeline (every grounded entity substituted) and by the stage-2 trainer (a random
subset substituted at load time). Offsets are `str` indices into the caption.
"""

from __future__ import annotations

import random
from typing import Literal, Sequence

from unimo_g.records import PromptPart

Mode = Literal["replace", "append"]


def compose_prompt(caption: str, spans: Sequence[tuple[int, int, int]], mode: Mode = "replace") -> tuple[PromptPart, ...]:
    """Interleave `caption` with entity references.

    spans: `(start, end, entity_index)` character spans of the caption to substitute. Several
    entities of one span (a plural phrase grounded to several boxes) follow each other in the order
    given; otherwise overlapping spans keep the earlier-starting (then longer) one. In `replace` mode
    `caption[start:end]` becomes the entity; in `append` mode the phrase stays and the entity
    follows it. Adjacent text pieces are merged; empty text pieces are dropped.
    """
    if mode not in ("replace", "append"):
        raise ValueError(f"compose mode must be 'replace' or 'append', got {mode!r}")
    parts: list[PromptPart] = []

    def add_text(text: str) -> None:
        if not text:
            return
        if parts and parts[-1].text is not None:
            parts[-1] = PromptPart(text=parts[-1].text + text)
        else:
            parts.append(PromptPart(text=text))

    cursor = 0
    placed = None  # the (start, end) span placed last
    for start, end, entity in sorted(spans, key=lambda s: (s[0], -s[1])):
        if not 0 <= start < end <= len(caption):
            raise ValueError(f"span [{start}, {end}) lies outside a caption of {len(caption)} characters")
        if (start, end) == placed:  # another entity of the same phrase
            parts.append(PromptPart(entity=entity))
            continue
        if start < cursor:  # overlaps a span already placed
            continue
        add_text(caption[cursor:start])
        if mode == "append":
            add_text(caption[start:end])
        parts.append(PromptPart(entity=entity))
        cursor, placed = end, (start, end)
    add_text(caption[cursor:])
    return tuple(parts)


def sample_substitutions(
    num_entities: int, rng: random.Random, substitute_prob: float, text_only_prob: float
) -> list[int]:
    """Which entities to substitute for one stage-2 sample.

    With probability `text_only_prob` none (the sample stays text-only, paper: 10%); otherwise each
    entity independently with `substitute_prob`. Returns sorted entity indices.
    """
    if num_entities == 0 or rng.random() < text_only_prob:
        return []
    return [k for k in range(num_entities) if rng.random() < substitute_prob]
