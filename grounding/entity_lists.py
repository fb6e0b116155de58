"""A model's entity replies -> the caption the row keeps and its phrases (`entities.source` mllm / llm).

The replies of one input are tried in order (the first answer, then the strict retry's); the
first that passes `grounding.entity_replies` gives the phrases: each listed entity, leading
determiners cut as for spaCy phrases (`phrases.strip_determiners`), edges trimmed, the same text
listed again made a `mention` of the first, at most `phrases.max_phrases` (the rest `phrase_cap`).
An mllm's caption is cleaned like an input caption (`unimo_g.captions`) and must still hold its
entities. When no reply passes, `entities.on_failure` decides: `spacy` runs the phrase stage on the
model's caption if a reply held one (else on the input's), `reject` returns the failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

from spacy.tokens import Doc

from grounding.entity_replies import Failure, Listed, entity_spans, parse_llm_reply, parse_mllm_reply
from grounding.phrases.items import is_determiner
from grounding.phrases.noun_phrases import extract_phrase_set, is_plural, trim_span
from grounding.phrases.phrase_set import PhraseSet, SetAside
from unimo_g.captions import clean_caption
from unimo_g.pipeline_config import CaptionConfig, EntitiesConfig, PhraseConfig
from unimo_g.records import Phrase
from unimo_g.schema import OUTCOME_MENTION

INPUT_CAPTION = "input"  # caption_source of a row whose caption is the input's own


@dataclass(frozen=True)
class EntityResult:
    """`caption` (cleaned) indexes `found`; `caption_source` is `input` or the model id that wrote it;
    `fallback` is None when the model's list was used, else the failure reasons behind the spaCy fallback."""

    caption: str
    caption_source: str
    found: PhraseSet
    fallback: Optional[str] = None


def messages(config: EntitiesConfig, caption: str, strict: bool) -> list[dict]:
    """The chat of one request: for mllm an image then the instruction, for llm the instruction
    with the input's caption (the image itself goes to the processor separately)."""
    prompt = config.prompts[1 if strict else 0]
    if config.source == "mllm":
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return [{"role": "user", "content": prompt.replace("{caption}", caption)}]


def parse(config: EntitiesConfig, reply: str, caption: str) -> Union[Listed, Failure]:
    """One reply checked for the configured source (`caption`: the input's, cleaned)."""
    return parse_mllm_reply(reply) if config.source == "mllm" else parse_llm_reply(reply, caption)


def replies_with_retry(
    generate: Callable[[list[list[dict]], Optional[list]], list[str]],
    config: EntitiesConfig,
    captions: Sequence[str],
    images: Optional[Sequence] = None,
) -> list[tuple[str, ...]]:
    """Per request, its reply and, when that failed the check, the strict prompt's reply.

    `generate(chats, images)` answers a list of chats (with the images of mllm requests, else None);
    `captions` are the inputs' cleaned captions. The retries run as one more call for the failed ones.
    """
    first = generate([messages(config, c, strict=False) for c in captions], list(images) if images else None)
    failed = [i for i, (reply, c) in enumerate(zip(first, captions, strict=True))
              if isinstance(parse(config, reply, c), Failure)]
    replies = [(reply,) for reply in first]
    if failed:
        again = generate([messages(config, captions[i], strict=True) for i in failed],
                         [images[i] for i in failed] if images else None)
        for i, reply in zip(failed, again, strict=True):
            replies[i] = (first[i], reply)
    return replies


def listed_phrases(doc: Doc, spans: Sequence[tuple[int, int]], config: PhraseConfig) -> PhraseSet:
    """The phrases of listed entity spans of `doc.text` (see the module docstring)."""
    kept: list[Phrase] = []
    aside: list[SetAside] = []
    seen: list[str] = []
    for start, end in spans:
        span = doc.char_span(start, end, alignment_mode="expand")
        if config.strip_determiners and span is not None:
            tokens = list(span)
            first = 0
            while first < len(tokens) - 1 and is_determiner(tokens[first]):
                first += 1
            start = max(start, tokens[first].idx)
        start, end = trim_span(doc.text, start, end)
        if start >= end:
            continue
        phrase = Phrase(text=doc.text[start:end], start=start, end=end)
        if phrase.text.lower() in seen:
            aside.append(SetAside(phrase, OUTCOME_MENTION, of=seen.index(phrase.text.lower())))
        elif len(kept) == config.max_phrases:
            aside.append(SetAside(phrase, "phrase_cap"))
        else:
            kept.append(phrase)
            seen.append(phrase.text.lower())
    return PhraseSet(phrases=tuple(kept), plural=tuple(is_plural(doc, p) for p in kept), set_aside=tuple(aside))


def _cleaned(listed: Listed, captions: CaptionConfig) -> Union[Listed, Failure]:
    caption = clean_caption(listed.caption, captions)
    if not caption.strip():
        return Failure("no_caption", "the caption is empty once cleaned")
    if caption == listed.caption:
        return listed
    spans = entity_spans(caption, list(listed.entities))
    return Failure(spans.reason, spans.detail, caption) if isinstance(spans, Failure) else Listed(caption, spans)


def resolve(
    replies: Sequence[str],
    caption: str,
    config: EntitiesConfig,
    phrases: PhraseConfig,
    captions: CaptionConfig,
    parse_doc: Callable[[str], Doc],
) -> Union[EntityResult, list[Failure]]:
    """The result of one input's replies (`caption`: the input's, cleaned), or the failure of each
    reply when they all failed and `on_failure` is `reject`. `parse_doc` is the spaCy pipeline."""
    failures: list[Failure] = []
    for reply in replies:
        parsed = parse(config, reply, caption)
        if isinstance(parsed, Listed) and config.source == "mllm":
            parsed = _cleaned(parsed, captions)
        if isinstance(parsed, Listed):
            source = config.model_id if config.source == "mllm" else INPUT_CAPTION
            found = listed_phrases(parse_doc(parsed.caption), parsed.spans, phrases)
            return EntityResult(parsed.caption, source, found)
        failures.append(parsed)
    if config.on_failure == "reject":
        return failures
    model_caption = next((clean_caption(f.caption, captions) for f in failures if f.caption), "")
    text, source = (model_caption, config.model_id) if model_caption.strip() else (caption, INPUT_CAPTION)
    return EntityResult(text, source, extract_phrase_set(parse_doc(text), phrases),
                        fallback=",".join(f.reason for f in failures))
