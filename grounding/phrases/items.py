"""Candidate phrases -> items with the character span kept and, for an item that names no object,
the reason it is dropped (a `schema.PHRASE_OUTCOMES` token).

Tag-style captions join many tags in one noun chunk ("fair skin, beauty, white-collar, high
translucency"): with `phrases.split_lists` a chunk is cut at commas, semicolons and spaced dashes,
and at "and"/"or" right after a noun ("orange vest and hard hat", never "black and white cat").
Each item is then judged on its own head word, in this order (the first that applies is the reason):

- `pronoun`: its head is a pronoun (`drop_pronouns`);
- `stop_head`: head lemma or text, or the item without determiners, in `stop_heads` (framing and
  position: "the background", "a close-up");
- `quoted_text`: it lies inside quotation marks, text to be rendered ("a sign that says 'Open Late'")
  (`drop_quoted`);
- `non_object_head`: head word in `non_object_heads` (styles, quality and render tags, lighting,
  abstract nouns, face and body attributes, partitives such as "a stack of");
- `scene_head`: head word in `scene_heads` (settings, surfaces, sky and weather, times of day);
- `number_only`: only numbers and resolutions ("8K", "35mm", "4 K") (`drop_numbers`);
- `colour_only`: only colour words ("white", "pink and white") (`colour_words`);
- `no_noun`: a list item without a noun ("gentle"), or one hyphenated word opening with an adjective:
  English writes compound adjectives with a hyphen ("white-collar", "high-end"), compound nouns mostly
  without one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from spacy.tokens import Doc, Token

from grounding.phrases.repair import NOUN_POS, Candidate
from unimo_g.pipeline_config import PhraseConfig

# Leading tokens removed when `strip_determiners` is set: determiners, predeterminers ("all the"),
# possessives ("his", "whose"). Penn Treebank tags (English tagger), or the universal POS / morphology.
_DETERMINER_TAGS = frozenset({"DT", "PDT", "PRP$", "WDT", "WP$"})
_LIST_MARKS = frozenset({",", ";"})
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}
# A number, possibly with a unit or resolution suffix: 8K, 4k, 35mm, 1080p, 1920s, 3D.
_NUMBER_WORD = re.compile(r"\d+(?:[.,]\d+)*[a-z]{0,3}", re.IGNORECASE)


@dataclass(frozen=True)
class Item:
    """Character span `[start, end)` of the caption (determiners stripped when configured), its
    head token, and the reason it is dropped (None: it names an object)."""

    start: int
    end: int
    head: int
    reason: Optional[str] = None


def is_determiner(token: Token) -> bool:
    return token.tag_ in _DETERMINER_TAGS or token.pos_ == "DET" or "Yes" in token.morph.get("Poss")


def _is_separator(doc: Doc, i: int, nominal) -> bool:
    token = doc[i]
    if token.text in _LIST_MARKS:
        return True
    if token.is_punct and token.whitespace_ and i > 0 and doc[i - 1].whitespace_:  # " - ", " | "
        return True
    return token.pos_ == "CCONJ" and i > 0 and nominal(i - 1)


def split_items(doc: Doc, candidate: Candidate, nominal) -> list[Candidate]:
    """`candidate` cut at list separators; each piece headed by the candidate's head when it holds
    it, else by its last nominal token (head -1: the piece has none)."""
    pieces, start = [], candidate.start
    for i in range(candidate.start, candidate.end + 1):
        if i == candidate.end or _is_separator(doc, i, nominal):
            if i > start:
                inside = range(start, i)
                head = candidate.head if candidate.head in inside else next(
                    (j for j in reversed(inside) if nominal(j)), -1)
                pieces.append(Candidate(start, i, head, candidate.repaired))
            start = i + 1
    return pieces


def _quoted(text: str, start: int, end: int) -> bool:
    """True when `text[start:end]` is enclosed in one pair of quotation marks (only spaces between)."""
    left = text[:start].rstrip()
    right = text[end:].lstrip()
    return bool(left and right) and _QUOTES.get(left[-1]) == right[0]


def _number_only(doc: Doc, start: int, end: int) -> bool:
    """Only numbers, each word taken whole as written (the tokens "4" "K" of "4K" are one word)."""
    text = doc.text
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    words = [word.strip(".,;:!?()[]\"'") for word in text[start:end].split()]
    return bool(words) and all(_NUMBER_WORD.fullmatch(word) for word in words)


def _compound_adjective(tokens: list[Token]) -> bool:
    """One hyphenated word whose first part is an adjective ("white-collar")."""
    joined = all(not t.whitespace_ for t in tokens[:-1])
    return (joined and len(tokens) >= 3 and tokens[0].pos_ == "ADJ" and tokens[1].text == "-"
            and tokens[-1].pos_ in NOUN_POS)


def _colour_only(tokens: list[Token], colours: frozenset[str]) -> bool:
    words = [t for t in tokens if not (t.is_punct or t.pos_ == "CCONJ")]
    return bool(words) and all(t.lower_ in colours for t in words)


def judge(doc: Doc, piece: Candidate, config: PhraseConfig, listed: bool) -> Item:
    """The item of one candidate piece; `listed`: it is an item of a list (split from a chunk, or
    between list separators of the caption)."""
    tokens = list(doc[piece.start : piece.end])
    first = 0
    while first < len(tokens) - 1 and is_determiner(tokens[first]):
        first += 1
    start = tokens[first].idx if config.strip_determiners else tokens[0].idx
    end = tokens[-1].idx + len(tokens[-1].text)

    def item(reason: Optional[str] = None) -> Item:
        return Item(start, end, piece.head, reason)

    if piece.head < 0:  # a list item without a noun: a colour tag, or another adjective
        colours = frozenset(config.colour_words)
        return item("colour_only" if colours and _colour_only(tokens[first:], colours) else "no_noun")
    head = doc[piece.head]
    if config.drop_pronouns and head.pos_ == "PRON":
        return item("pronoun")
    bare = doc.text[tokens[first].idx : end].lower()  # without determiners
    stop = set(config.stop_heads)
    if head.lemma_.lower() in stop or head.text.lower() in stop or bare in stop:
        return item("stop_head")
    if config.drop_quoted and _quoted(doc.text, tokens[0].idx, end):
        return item("quoted_text")
    if head.lower_ in config.non_object_heads:
        return item("non_object_head")
    if head.lower_ in config.scene_heads:
        return item("scene_head")
    rest = tokens[first:]
    if config.drop_numbers and _number_only(doc, rest[0].idx, end):
        return item("number_only")
    if config.colour_words and _colour_only(rest, frozenset(config.colour_words)):
        return item("colour_only")
    if listed and _compound_adjective(rest):
        return item("no_noun")
    return item()


def items(doc: Doc, found: list[Candidate], repaired: dict[int, str], config: PhraseConfig) -> list[Item]:
    """Every candidate judged, cut into list items first when `split_lists`; in order of start."""

    def nominal(i: int) -> bool:
        return doc[i].pos_ in NOUN_POS or i in repaired

    def between_separators(piece: Candidate) -> bool:
        return (piece.start > 0 and _is_separator(doc, piece.start - 1, nominal)) or (
            piece.end < len(doc) and _is_separator(doc, piece.end, nominal))

    judged = []
    for candidate in found:
        pieces = split_items(doc, candidate, nominal) if config.split_lists else [candidate]
        for piece in pieces:
            listed = config.split_lists and (len(pieces) > 1 or between_separators(piece))
            judged.append(judge(doc, piece, config, listed))
    return judged
