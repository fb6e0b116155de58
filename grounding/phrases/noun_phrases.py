"""Caption -> noun phrases with exact character offsets (spaCy noun chunks, repaired and filtered).

Every returned `Phrase` satisfies `caption[p.start:p.end] == p.text` (offsets are Python `str`
indices, i.e. code points). Phrases are sorted by `start` and never overlap.

    noun chunks + repairs of tagging errors (grounding.phrases.repair, `repair_tags`)
    -> list items (grounding.phrases.items, `split_lists`), each kept or dropped with its reason
    -> edges trimmed; further mentions of a kept phrase merged with it (grounding.phrases.mentions,
       `merge_mentions`; else repeated text dropped as `duplicate`); at most `max_phrases` kept
    -> PhraseSet: the phrases sent to grounding, and every other phrase with why (grounding.phrases.phrase_set)
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

from spacy.language import Language
from spacy.tokens import Doc

from grounding.phrases import tag_alternatives
from grounding.phrases.items import items
from grounding.phrases.mentions import mention_key, mention_of
from grounding.phrases.phrase_set import PhraseSet, SetAside
from grounding.phrases.repair import PLURAL_TAGS as _REPAIRED_PLURAL_TAGS
from grounding.phrases.repair import candidates
from unimo_g.pipeline_config import PhraseConfig
from unimo_g.records import Phrase
from unimo_g.schema import OUTCOME_MENTION

# Components that noun chunks never use: dropped at load time to save parsing time.
_UNUSED_COMPONENTS = (
    "ner", "entity_ruler", "entity_linker", "textcat", "textcat_multilabel", "spancat", "senter", "span_finder",
)
_PLURAL_TAGS = frozenset({"NNS", "NNPS"})
# Characters kept at a span's edge although they are symbols (a "$5 bill" keeps its "$").
_KEPT_SYMBOL_CATEGORIES = frozenset({"Sc"})
# Emoji presentation selectors and the keycap mark: combining marks that only decorate symbols.
_EMOJI_MARKS = frozenset({"\ufe0e", "\ufe0f", "\u20e3"})


def load_nlp(name_or_path: str) -> Language:
    """Load a spaCy pipeline with only what `Doc.noun_chunks` needs (tagger, parser, lemmatizer; no NER),
    and the tagger's runner-up tags that the tag repair reads (`grounding.phrases.tag_alternatives`).

    The lemmatizer stays: the stop-head filter compares lemmas ("photos" -> "photo").
    Raises OSError naming the pipeline when it is not installed, ValueError when it has no parser.
    """
    import spacy  # heavy import, deferred until a pipeline is actually loaded

    try:
        nlp = spacy.load(name_or_path, exclude=list(_UNUSED_COMPONENTS))
    except OSError as err:
        raise OSError(
            f"spaCy pipeline {name_or_path!r} could not be loaded; install it with "
            f"`python -m spacy download {name_or_path}` or set phrases.spacy_model to an installed "
            f"package or a local path ({err})"
        ) from err
    if not nlp.has_pipe("parser"):
        raise ValueError(f"spaCy pipeline {name_or_path!r} has no dependency parser; noun chunks need one")
    if nlp.has_pipe("tagger"):
        nlp.add_pipe(tag_alternatives.NAME, last=True)
    return nlp


def _is_edge_junk(char: str) -> bool:
    """True for characters stripped from a phrase's edges: spaces, punctuation, symbols, emoji marks."""
    if char.isspace() or char in _EMOJI_MARKS:
        return True
    category = unicodedata.category(char)
    if category.startswith("S"):
        return category not in _KEPT_SYMBOL_CATEGORIES
    return category[0] in "PZC"


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """`[start, end)` shrunk past whitespace, punctuation and symbols at both edges (may become empty)."""
    while start < end and _is_edge_junk(text[start]):
        start += 1
    while end > start and _is_edge_junk(text[end - 1]):
        end -= 1
    return start, end


def clean_spans(text: str, spans: Sequence[tuple[int, int]], max_phrases: int) -> tuple[Phrase, ...]:
    """Candidate character spans of `text` -> final phrases.

    Edges are trimmed (`trim_span`), empty spans dropped; spans are taken by `start` (the longer
    first at equal starts) and a span overlapping one already taken is dropped (nested or crossing
    chunks keep the earlier, outer one); a span whose lowercased text was already taken is dropped
    (the first occurrence wins); at most `max_phrases` are kept, in order of `start`.
    """
    trimmed = [trim_span(text, start, end) for start, end in spans]
    ordered = sorted({span for span in trimmed if span[0] < span[1]}, key=lambda s: (s[0], -s[1]))
    phrases: list[Phrase] = []
    seen: set[str] = set()
    last_end = -1
    for start, end in ordered:
        if len(phrases) == max_phrases:
            break
        if start < last_end:
            continue
        key = text[start:end].lower()
        if key in seen:
            continue
        seen.add(key)
        phrases.append(Phrase(text=text[start:end], start=start, end=end))
        last_end = end
    return tuple(phrases)


def _plural(doc: Doc, phrase: Phrase, head: int, repaired: dict[int, str]) -> bool:
    return is_plural(doc, phrase) or repaired.get(head) in _REPAIRED_PLURAL_TAGS


def extract_phrase_set(doc: Doc, config: PhraseConfig) -> PhraseSet:
    """The phrases of a parsed caption to ground, and every other noun phrase with its reason.

    Candidates (noun chunks, with `repair_tags` also the phrases tagging errors hid) are cut into
    list items (`split_lists`) and judged (`grounding.phrases.items`): a pronoun, a stop head ("the
    background", "a close-up"), quoted text, a non-object or scene head ("cinematic lighting", "the
    beach"), a number or colour alone, a list item without a noun are set aside with that reason.
    With `strip_determiners`, leading determiners and possessives are cut ("his iPhone" -> "iPhone").
    Edges are trimmed (`trim_span`; a span left empty is no phrase); a later phrase naming a kept
    one again becomes its `mention` (`merge_mentions`; otherwise the same text again is a
    `duplicate`); beyond `max_phrases` kept phrases the rest are `phrase_cap`. The docs must come
    from `load_nlp` when `repair_tags` is set.
    """
    found, repaired = candidates(doc, config.repair_tags)
    trimmed = []
    for item in items(doc, found, repaired, config):
        start, end = trim_span(doc.text, item.start, item.end)
        if start < end:
            trimmed.append((start, end, item))
    trimmed.sort(key=lambda t: (t[0], -t[1]))
    kept: list[Phrase] = []
    plural: list[bool] = []
    keys = []
    aside: list[SetAside] = []
    last_end = -1
    for start, end, item in trimmed:
        if start < last_end:  # only when an item crosses another; never for spaCy's disjoint chunks
            continue
        last_end = end
        phrase = Phrase(text=doc.text[start:end], start=start, end=end)
        if item.reason is not None:
            aside.append(SetAside(phrase, item.reason))
            continue
        is_many = _plural(doc, phrase, item.head, repaired)
        key = mention_key(doc, start, end, item.head, is_many, phrase.text)
        if config.merge_mentions:
            earlier = mention_of(key, keys)
            if earlier is not None:
                aside.append(SetAside(phrase, OUTCOME_MENTION, of=earlier))
                continue
        elif key.text in {k.text for k in keys}:
            aside.append(SetAside(phrase, "duplicate"))
            continue
        if len(kept) == config.max_phrases:
            aside.append(SetAside(phrase, "phrase_cap"))
            continue
        kept.append(phrase)
        plural.append(is_many)
        keys.append(key)
    return PhraseSet(phrases=tuple(kept), plural=tuple(plural), set_aside=tuple(aside))


def extract_phrases(doc: Doc, config: PhraseConfig) -> tuple[Phrase, ...]:
    """The phrases of a parsed caption sent to grounding (`extract_phrase_set(doc, config).phrases`):
    filtered, sorted by start, non-overlapping."""
    return extract_phrase_set(doc, config).phrases


def is_plural(doc: Doc, phrase: Phrase) -> bool:
    """True when the head noun of `phrase` (a span of `doc.text`) is plural (tag NNS/NNPS or Number=Plur)."""
    span = doc.char_span(phrase.start, phrase.end, alignment_mode="expand")
    if span is None:
        raise ValueError(f"phrase {phrase!r} does not lie inside the parsed caption")
    return span.root.tag_ in _PLURAL_TAGS or "Plur" in span.root.morph.get("Number")




def caption_too_long(caption: str, config: PhraseConfig) -> bool:
    """True when the caption exceeds `max_caption_chars` (such captions are rejected, never parsed)."""
    return len(caption) > config.max_caption_chars


def _parse(nlp: Language, captions: Sequence[str], config: PhraseConfig):
    for index, caption in enumerate(captions):
        if caption_too_long(caption, config):
            raise ValueError(
                f"caption {index} has {len(caption)} characters, above phrases.max_caption_chars="
                f"{config.max_caption_chars}; reject it before parsing"
            )
    return nlp.pipe(captions)


def extract_phrases_batch(nlp: Language, captions: Sequence[str], config: PhraseConfig) -> list[tuple[Phrase, ...]]:
    """`extract_phrases` for many captions, parsed with `nlp.pipe`.

    Raises ValueError for a caption longer than `max_caption_chars` (filter with `caption_too_long`).
    """
    return [extract_phrases(doc, config) for doc in _parse(nlp, captions, config)]


def extract_phrase_set_batch(nlp: Language, captions: Sequence[str], config: PhraseConfig) -> list[PhraseSet]:
    """`extract_phrase_set` for many captions, parsed with `nlp.pipe` (see `extract_phrases_batch`)."""
    return [extract_phrase_set(doc, config) for doc in _parse(nlp, captions, config)]


def extract_phrases_plural_batch(
    nlp: Language, captions: Sequence[str], config: PhraseConfig
) -> list[tuple[tuple[Phrase, ...], tuple[bool, ...]]]:
    """Like `extract_phrases_batch`, with one plural flag per phrase (`is_plural`) for grounding."""
    return [(found.phrases, found.plural) for found in extract_phrase_set_batch(nlp, captions, config)]
