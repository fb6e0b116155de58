"""Stage-2 prompts: which entities of a row become images, and the interleaved prompt they make.

The pipeline stores every grounded entity of a caption; at load time each sample substitutes a
random subset (UNIMO-G's multimodal instruction tuning; 10% of samples stay text-only). Entity
indices of the returned prompt are renumbered 0..K-1 in the order of the kept entities, which is
also the order of the sample's entity images and masks.
"""

from __future__ import annotations

import random
from typing import Sequence

from unimo_g.prompt import compose_prompt, sample_substitutions
from unimo_g.records import PromptPart


def choose_entities(
    num_entities: int, rng: random.Random, substitute_prob: float, text_only_prob: float, max_entities: int
) -> list[int]:
    """Sorted indices of the entities to substitute: `sample_substitutions`, then at most
    `max_entities` of them (a uniform random subset when there are more)."""
    chosen = sample_substitutions(num_entities, rng, substitute_prob, text_only_prob)
    if len(chosen) > max_entities:
        chosen = sorted(rng.sample(chosen, max_entities))
    return chosen


def substituted_prompt(
    caption: str, spans: Sequence[tuple[int, int]], chosen: Sequence[int], mode: str
) -> tuple[tuple[PromptPart, ...], list[int]]:
    """The prompt with entities `chosen` substituted, and the original indices of those it holds.

    spans[k]: `(start, end)` character span of entity k in `caption`. Returns `(prompt, kept)`
    where `PromptPart(entity=j)` of the prompt stands for original entity `kept[j]`. An entity
    whose span `compose_prompt` drops (it overlaps one placed before it) is left out of `kept`.
    """
    prompt = compose_prompt(caption, [(*spans[k], j) for j, k in enumerate(chosen)], mode)
    present = {part.entity for part in prompt if part.entity is not None}
    kept = [k for j, k in enumerate(chosen) if j in present]
    if len(kept) < len(chosen):
        # Dropping spans that were skipped does not change which others are placed.
        prompt = compose_prompt(caption, [(*spans[k], j) for j, k in enumerate(kept)], mode)
    return prompt, kept
