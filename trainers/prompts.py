"""Stage-2 prompts: which entities of a row become images, and the interleaved prompt they make.

The pipeline stores every grounded entity of a caption; at load time each sample substitutes a
random subset (UNIMO-G's multimodal instruction tuning). The mix, per row with n > 0 entities:
  - text-only with probability `text_only_prob` (paper: 10%);
  - otherwise at least one entity image: one entity drawn uniformly, each further entity with
    `substitute_prob`, at most `max_entities` in all (a uniform subset of the draw when more).
A row without entities is text-only whatever the draw. `text_only_prob` is therefore the share of
rows WITH entities that stay text-only; the share of all samples is
zero_share + (1 - zero_share) * text_only_prob (`expected_mix`). The paper's data has 16% rows
without an entity, more than its 10% text-only share, so that share can only mean rows with
entities. Entity indices of the returned prompt are renumbered 0..K-1 in the order of the kept
entities, which is also the order of the sample's entity images and masks.
"""

from __future__ import annotations

import math
import random
from typing import Mapping, Sequence

from unimo_g.prompt import compose_prompt
from unimo_g.records import PromptPart


def choose_entities(
    num_entities: int, rng: random.Random, substitute_prob: float, text_only_prob: float, max_entities: int
) -> list[int]:
    """Sorted indices of the entities to substitute in a row of `num_entities` (see the module
    docstring): [] for a text-only sample, else 1..max_entities indices."""
    if num_entities == 0 or max_entities == 0 or rng.random() < text_only_prob:
        return []
    first = rng.randrange(num_entities)
    chosen = [k for k in range(num_entities) if k == first or rng.random() < substitute_prob]
    if len(chosen) > max_entities:
        chosen = sorted(rng.sample(chosen, max_entities))
    return chosen


def expected_images(num_entities: int, substitute_prob: float, max_entities: int) -> float:
    """Mean entity images of a row of `num_entities` that is not text-only: 1 + Binomial(n - 1, p),
    capped at `max_entities`."""
    if num_entities == 0 or max_entities == 0:
        return 0.0
    others = num_entities - 1
    return sum(
        min(1 + j, max_entities) * math.comb(others, j) * substitute_prob**j * (1 - substitute_prob) ** (others - j)
        for j in range(others + 1)
    )


def expected_mix(
    entity_counts: Mapping[int, float], substitute_prob: float, text_only_prob: float, max_entities: int
) -> dict[str, float]:
    """The mix `choose_entities` realises on rows whose entity counts have the distribution
    `entity_counts` ({n: share}, shares summing to 1): "text_only_share" of all samples and
    "images_per_sample" (mean entity images over all samples)."""
    total = sum(entity_counts.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"entity count shares must sum to 1, got {total}")
    with_images = 0.0 if max_entities == 0 else 1.0 - text_only_prob
    zero = entity_counts.get(0, 0.0)
    return {
        "text_only_share": zero + (1.0 - zero) * (1.0 - with_images),
        "images_per_sample": sum(
            share * with_images * expected_images(n, substitute_prob, max_entities)
            for n, share in entity_counts.items()
        ),
    }


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
