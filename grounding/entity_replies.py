"""The strict check of a model's entity reply (`entities.source` mllm or llm).

An mllm reply is one JSON object `{"caption": "...", "entities": ["...", ...]}`; an llm reply one
JSON list of strings, the entities of a caption it was given. Models wrap JSON in a code fence
(Qwen2-VL: "```json ... ```") or start with a space (LLaVA, SmolVLM): one fence and surrounding
whitespace are accepted, anything else around the JSON fails. Each entity must be a non-empty
substring of the caption (exactly, letter for letter), the entities in caption order and not
overlapping: each is searched from the end of the one before. A reply that fails names why
(`Failure.reason`), so that the retry and the fallback are counted by cause.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional, Union

_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?\s*```$", re.DOTALL)


@dataclass(frozen=True)
class Listed:
    """A reply that passed: the caption (the model's, or the one it was given) and each entity's
    character span `[start, end)` in it, in order."""

    caption: str
    spans: tuple[tuple[int, int], ...]

    @property
    def entities(self) -> tuple[str, ...]:
        return tuple(self.caption[start:end] for start, end in self.spans)


@dataclass(frozen=True)
class Failure:
    """A reply that failed the check: `reason` is a short token; `caption` the model's caption when
    the reply held a usable one (an mllm reply whose entities failed), for the spaCy fallback."""

    reason: str
    detail: str = ""
    caption: Optional[str] = None


Parsed = Union[Listed, Failure]


def _json_value(reply: str) -> Union[object, Failure]:
    text = reply.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        return Failure("empty", "the reply is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        return Failure("not_json", f"{err.msg} at character {err.pos} of {text[:120]!r}")


def entity_spans(caption: str, entities: object) -> Union[tuple[tuple[int, int], ...], Failure]:
    """Spans of `entities` (a list of strings) in `caption`, each searched after the one before."""
    if not isinstance(entities, list) or not all(isinstance(e, str) for e in entities):
        return Failure("bad_entities", f"entities must be a list of strings, got {entities!r}"[:200])
    spans, cursor = [], 0
    for entity in entities:
        if not entity.strip():
            return Failure("bad_entities", "an entity is empty")
        found = caption.find(entity, cursor)
        if found < 0:
            reason = "out_of_order" if entity in caption else "not_in_caption"
            return Failure(reason, f"entity {entity!r} is not in the caption after character {cursor}")
        spans.append((found, found + len(entity)))
        cursor = found + len(entity)
    return tuple(spans)


def parse_mllm_reply(reply: str) -> Parsed:
    """A caption-and-entities reply checked: `Listed` with the model's caption, or a `Failure`."""
    value = _json_value(reply)
    if isinstance(value, Failure):
        return value
    if not isinstance(value, dict) or set(value) != {"caption", "entities"}:
        keys = sorted(value) if isinstance(value, dict) else type(value).__name__
        return Failure("bad_keys", f"expected the keys caption and entities, got {keys}")
    caption = value["caption"]
    if not isinstance(caption, str) or not caption.strip():
        return Failure("no_caption", f"caption must be a non-empty string, got {caption!r}"[:200])
    spans = entity_spans(caption, value["entities"])
    if isinstance(spans, Failure):
        return Failure(spans.reason, spans.detail, caption=caption)
    return Listed(caption=caption, spans=spans)


def parse_llm_reply(reply: str, caption: str) -> Parsed:
    """A list-of-entities reply about `caption` checked: `Listed` with `caption`, or a `Failure`."""
    value = _json_value(reply)
    if isinstance(value, Failure):
        return value
    spans = entity_spans(caption, value)
    return spans if isinstance(spans, Failure) else Listed(caption=caption, spans=spans)
