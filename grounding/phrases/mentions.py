"""Which phrases of a caption name one entity twice ("magnificent Qilin, ..., Qilin has golden scales").

A later phrase is a mention of an earlier one when both have the same head lemma and number, and
the modifiers of one (its words other than determiners and the head) are all modifiers of the other:
"the dog" / "a dog", "Qilin" / "magnificent Qilin", "old man" / "man". Modifiers that differ name
different entities ("a black dog" / "a white dog", "two cats" / "three cats"), and a non-identical
later phrase opening with an indefinite article introduces a new one ("a dog" ... "a small dog").
Identical phrases are always one entity: Grounding DINO would box both queries alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from spacy.tokens import Doc

_INDEFINITE = frozenset({"a", "an", "another"})


@dataclass(frozen=True)
class MentionKey:
    """What decides whether two phrases name one entity."""

    text: str  # the phrase as kept, lowercased
    head: str  # lemma of the head word, lowercased
    plural: bool
    modifiers: frozenset[str]
    indefinite: bool  # opens with "a", "an" or "another"


def mention_key(doc: Doc, start: int, end: int, head: int, plural: bool, text: str) -> MentionKey:
    """The key of the phrase `text` at characters `[start, end)`, headed by token `head`."""
    span = doc.char_span(start, end, alignment_mode="expand")
    first = span[0] if span is not None and len(span) else doc[head]
    opener = doc[first.i - 1] if first.i > 0 and first.pos_ != "DET" else first
    words = [] if span is None else [t.lower_ for t in span if t.i != head and not (t.is_punct or t.pos_ == "DET")]
    return MentionKey(text=text.lower(), head=doc[head].lemma_.lower(), plural=plural,
                      modifiers=frozenset(words), indefinite=opener.lower_ in _INDEFINITE)


def mention_of(key: MentionKey, earlier: Sequence[MentionKey]) -> Optional[int]:
    """Index of the first of `earlier` that `key` mentions again, or None."""
    for index, other in enumerate(earlier):
        if key.text == other.text:
            return index
        if key.indefinite or (key.head, key.plural) != (other.head, other.plural):
            continue
        if key.modifiers <= other.modifiers or other.modifiers <= key.modifiers:
            return index
    return None
