"""The phrases of one caption: those sent to grounding, and those set aside with the reason why.

A row's `phrases` column holds both, in order of start, with `phrase_outcomes` aligned: a phrase sent
to grounding gets its grounding outcome (`entity`, `below_threshold`, ...), a phrase set aside gets
its reason (`non_object_head`, `number_only`, ... or `mention`: another mention of an entity phrase,
replaced by the same entity in the prompt when that phrase becomes one). `row_phrases` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from unimo_g.records import Phrase
from unimo_g.schema import OUTCOME_MENTION


@dataclass(frozen=True)
class SetAside:
    """A phrase not sent to grounding: `reason` is a `schema.PHRASE_OUTCOMES` token; for
    `mention`, `of` indexes the grounded phrase (in `PhraseSet.phrases`) it names again."""

    phrase: Phrase
    reason: str
    of: int = -1

    def __post_init__(self):
        if (self.reason == OUTCOME_MENTION) != (self.of >= 0):
            raise ValueError(f"a set-aside phrase names the phrase it mentions exactly when its reason is "
                             f"{OUTCOME_MENTION!r}, got reason {self.reason!r} with of={self.of}")


@dataclass(frozen=True)
class PhraseSet:
    """`phrases`: sent to grounding, sorted by start, disjoint, `plural` flags aligned; `set_aside`:
    the others, sorted by start, disjoint from each other and from `phrases`."""

    phrases: tuple[Phrase, ...] = ()
    plural: tuple[bool, ...] = ()
    set_aside: tuple[SetAside, ...] = ()

    def mentions_of(self, index: int) -> tuple[Phrase, ...]:
        """The further mentions of phrase `index`."""
        return tuple(s.phrase for s in self.set_aside if s.of == index)


def row_phrases(
    phrases: Sequence[Phrase], outcomes: Sequence[str], set_aside: Sequence[SetAside]
) -> tuple[tuple[Phrase, ...], tuple[str, ...], tuple[int, ...]]:
    """All phrases of a row in order of start with their outcomes, and the row index of each of
    `phrases` (entities index the row's phrases)."""
    if len(phrases) != len(outcomes):
        raise ValueError(f"{len(phrases)} phrases with {len(outcomes)} outcomes")
    tagged = [(p.start, 0, k, p, outcome) for k, (p, outcome) in enumerate(zip(phrases, outcomes))]
    tagged += [(s.phrase.start, 1, k, s.phrase, s.reason) for k, s in enumerate(set_aside)]
    tagged.sort(key=lambda t: t[:3])
    where = [0] * len(phrases)
    for row_index, (_, kind, k, _, _) in enumerate(tagged):
        if kind == 0:
            where[k] = row_index
    return tuple(t[3] for t in tagged), tuple(t[4] for t in tagged), tuple(where)
