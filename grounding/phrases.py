"""Caption -> noun phrases with exact character offsets (spaCy noun chunks).

Every returned `Phrase` satisfies `caption[p.start:p.end] == p.text` (offsets are Python `str`
indices, i.e. code points). Phrases are sorted by `start` and never overlap.
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

from spacy.language import Language
from spacy.tokens import Doc, Span, Token

from unimo_g.pipeline_config import PhraseConfig
from unimo_g.records import Phrase

# Components that noun chunks never use: dropped at load time to save parsing time.
_UNUSED_COMPONENTS = (
    "ner", "entity_ruler", "entity_linker", "textcat", "textcat_multilabel", "spancat", "senter", "span_finder",
)
# Leading tokens removed when `strip_determiners` is set: determiners, predeterminers ("all the"),
# possessives ("his", "whose"). Penn Treebank tags (English tagger), or the universal POS / morphology.
_DETERMINER_TAGS = frozenset({"DT", "PDT", "PRP$", "WDT", "WP$"})
_PLURAL_TAGS = frozenset({"NNS", "NNPS"})
# Characters kept at a span's edge although they are symbols (a "$5 bill" keeps its "$").
_KEPT_SYMBOL_CATEGORIES = frozenset({"Sc"})
# Emoji presentation selectors and the keycap mark: combining marks that only decorate symbols.
_EMOJI_MARKS = frozenset({"\ufe0e", "\ufe0f", "\u20e3"})


def load_nlp(name_or_path: str) -> Language:
    """Load a spaCy pipeline with only what `Doc.noun_chunks` needs (tagger, parser, lemmatizer; no NER).

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


def _is_determiner(token: Token) -> bool:
    return token.tag_ in _DETERMINER_TAGS or token.pos_ == "DET" or "Yes" in token.morph.get("Poss")


def _chunk_span(chunk: Span, config: PhraseConfig) -> tuple[int, int] | None:
    """The character span kept for one noun chunk, or None when the chunk is filtered out."""
    root = chunk.root
    if config.drop_pronouns and root.pos_ == "PRON":
        return None
    tokens = list(chunk)
    first = 0
    while first < len(tokens) - 1 and _is_determiner(tokens[first]):
        first += 1
    bare = chunk.doc.text[tokens[first].idx : chunk.end_char].lower()  # chunk without determiners
    stop = set(config.stop_heads)
    if root.lemma_.lower() in stop or root.text.lower() in stop or bare in stop:
        return None
    start = tokens[first].idx if config.strip_determiners else chunk.start_char
    return start, chunk.end_char


def extract_phrases(doc: Doc, config: PhraseConfig) -> tuple[Phrase, ...]:
    """Noun phrases of a parsed caption, filtered (`config`), sorted by start, non-overlapping.

    Filters: pronoun chunks ("it", "he") when `drop_pronouns`; chunks whose head lemma, head text
    or determiner-less text is in `stop_heads` ("the background", "a close-up"). With
    `strip_determiners`, leading determiners and possessives are cut ("his iPhone" -> "iPhone").
    Then `clean_spans` trims edges, de-overlaps, de-duplicates and caps at `max_phrases`.
    """
    spans = [span for chunk in doc.noun_chunks if (span := _chunk_span(chunk, config)) is not None]
    return clean_spans(doc.text, spans, config.max_phrases)


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


def extract_phrases_plural_batch(
    nlp: Language, captions: Sequence[str], config: PhraseConfig
) -> list[tuple[tuple[Phrase, ...], tuple[bool, ...]]]:
    """Like `extract_phrases_batch`, with one plural flag per phrase (`is_plural`) for grounding."""
    results = []
    for doc in _parse(nlp, captions, config):
        phrases = extract_phrases(doc, config)
        results.append((phrases, tuple(is_plural(doc, phrase) for phrase in phrases)))
    return results
