"""Candidate noun phrases of a parsed caption: spaCy's noun chunks, plus the ones a tagging error hid.

The small English models misread words of caption fragments: in "a red can" the tagger takes "can"
for a modal verb and the noun chunk becomes "a red"; in "a tree and autumn leaves" "leaves" is a
verb and neither object gets a chunk; in "a man wearing suit is eating salad" the parser hangs
"salad" under a verb and no chunk holds it. The repairs use only the models' own evidence, never a
list of words:

1. a word tagged VERB, AUX or ADJ whose runner-up tag (`grounding.phrases.tag_alternatives`) is a noun tag
   and that ends the phrase (no determiner, noun, adjective or number follows), right after a
   determiner or adjective ("a shiny can", "a croissant": JJ, runner-up NN), or after a chunk-final
   noun whose runner-up tag is an adjective (a modifier taken for the head): an adjective ("a
   vintage convertible"), or an auxiliary with no verb to help that the parser made that noun's
   head ("a red can": "red" is the subject of "can"; "a man walks" and "a man riding" keep their verbs);
2. a plural noun read as a verb: a VBZ/VBP main verb whose runner-up is a plural noun tag, right
   after a noun that the parser did not make its subject, with no object of its own: "autumn
   leaves" (while "a dog runs" keeps its verb: "dog" is its subject);
3. nouns that no chunk holds: the run of determiners, adjectives, numbers and nouns ending at them
   becomes a phrase ("salad", "A pink elephant" of "A pink elephant balancing on a ball"); not a
   word that both models read as a verb form, tagged noun but with a verb tag as runner-up and in
   a clause role ("standing" in "a zebra standing under a rainbow": NN, runner-up VBG, acl).

A word read as a noun by 1 or 2 extends the chunk that ends right before it, or starts a run (3).
"""

from __future__ import annotations

from dataclasses import dataclass

from spacy.tokens import Doc, Token

from grounding.phrases.tag_alternatives import EXTENSION, has_alternatives

NOUN_POS = frozenset({"NOUN", "PROPN"})
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
PLURAL_TAGS = frozenset({"NNS", "NNPS"})
_MISREAD_POS = frozenset({"VERB", "AUX", "ADJ"})
_MODIFIER_POS = frozenset({"DET", "ADJ"})
_CONTINUES_PHRASE = frozenset({"NOUN", "PROPN", "ADJ", "NUM", "DET", "PRON"})
_RUN_POS = frozenset({"DET", "ADJ", "NUM", "NOUN", "PROPN"})
_OBJECT_DEPS = frozenset({"dobj", "attr", "ccomp", "xcomp", "acomp", "oprd", "dative"})
_SUBJECT_DEPS = frozenset({"nsubj", "nsubjpass"})
_CLAUSE_DEPS = frozenset({"acl", "relcl", "advcl", "xcomp", "ccomp", "pcomp"})


@dataclass(frozen=True)
class Candidate:
    """Tokens `[start, end)` of the doc, headed by token `head`; `repaired` when a repair made it."""

    start: int
    end: int
    head: int
    repaired: bool = False


def _alternative(token: Token) -> str | None:
    return token._.get(EXTENSION)


def _ends_phrase(doc: Doc, i: int) -> bool:
    return i + 1 == len(doc) or doc[i + 1].pos_ not in _CONTINUES_PHRASE


def _misread_noun(doc: Doc, token: Token, chunk_ends: set[int]) -> bool:
    """Repair 1: a phrase-final word after a modifier, with a noun tag as the tagger's runner-up."""
    if token.i == 0 or token.pos_ not in _MISREAD_POS or _alternative(token) not in NOUN_TAGS:
        return False
    if not _ends_phrase(doc, token.i) or any(child.dep_ == "conj" for child in token.children):
        return False  # coordinated words ("black and white cat") are one phrase's modifiers
    before = doc[token.i - 1]
    if before.pos_ in _MODIFIER_POS:
        return True
    if before.i not in chunk_ends or before.pos_ not in NOUN_POS or _alternative(before) != "JJ":
        return False
    if token.pos_ == "ADJ":
        return True
    # An auxiliary with no verb to help: "a red can" ("red" its subject), never "a man walks".
    following = doc[token.i + 1] if token.i + 1 < len(doc) else None
    verb_follows = following is not None and following.pos_ in ("VERB", "AUX")
    return token.pos_ == "AUX" and not verb_follows and before.head.i == token.i


def _plural_read_as_verb(doc: Doc, token: Token) -> bool:
    """Repair 2: a VBZ/VBP word with a plural noun tag as runner-up, after a noun that is not its subject."""
    if token.i == 0 or token.pos_ != "VERB" or token.tag_ not in ("VBZ", "VBP"):
        return False
    if _alternative(token) not in PLURAL_TAGS:
        return False
    before = doc[token.i - 1]
    if before.pos_ not in NOUN_POS or (before.dep_ in _SUBJECT_DEPS and before.head.i == token.i):
        return False
    return not any(child.dep_ in _OBJECT_DEPS for child in token.children)


def repaired_nouns(doc: Doc) -> dict[int, str]:
    """Token index -> the noun tag it is read with, for the words repairs 1 and 2 read as nouns.

    Raises ValueError for a doc without tag alternatives (parse with `grounding.phrases.noun_phrases.load_nlp`)."""
    if not has_alternatives(doc):
        raise ValueError("phrases.repair_tags needs the tagger's alternatives: parse captions with the "
                         "pipeline of grounding.phrases.noun_phrases.load_nlp")
    chunk_ends = {chunk.end - 1 for chunk in doc.noun_chunks}
    return {token.i: _alternative(token) for token in doc
            if _misread_noun(doc, token, chunk_ends) or _plural_read_as_verb(doc, token)}


def candidates(doc: Doc, repair: bool) -> tuple[list[Candidate], dict[int, str]]:
    """The noun chunks (extended and completed by the repairs when `repair`), sorted by start, and
    the repaired words with the noun tag each is read with."""
    chunks = [Candidate(chunk.start, chunk.end, chunk.root.i) for chunk in doc.noun_chunks]
    if not repair:
        return chunks, {}
    repaired = repaired_nouns(doc)

    def nominal(i: int) -> bool:
        return doc[i].pos_ in NOUN_POS or i in repaired

    def verb_form(i: int) -> bool:  # a noun tag the parser and the runner-up tag both contradict
        alternative = _alternative(doc[i]) or ""
        return i not in repaired and alternative.startswith("VB") and doc[i].dep_ in _CLAUSE_DEPS

    covered: set[int] = set()
    result: list[Candidate] = []
    for chunk in chunks:
        end = chunk.end
        while end < len(doc) and end in repaired:  # "a red" + "can"
            end += 1
        if end > chunk.end:
            chunk = Candidate(chunk.start, end, end - 1, repaired=True)
        covered.update(range(chunk.start, chunk.end))
        result.append(chunk)
    i = 0
    while i < len(doc):
        if i in covered or not nominal(i) or verb_form(i):
            i += 1
            continue
        start = i
        while start > 0 and start - 1 not in covered and doc[start - 1].pos_ in _RUN_POS:
            start -= 1
        end = i + 1
        while end < len(doc) and end not in covered and nominal(end):
            end += 1
        result.append(Candidate(start, end, end - 1, repaired=True))
        covered.update(range(start, end))
        i = end
    return sorted(result, key=lambda c: (c.start, -c.end)), repaired
