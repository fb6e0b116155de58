"""Representative subsets of a benchmark, so that a quick run estimates the full one.

    select_cases(cases, subjects=N, per_subject=K, sample=M, seed=S)

Applied in that order, each optional: N subjects, then K prompts of each kept subject, then M
cases of what is left. Every draw is seeded and *spread* (systematic stratified sampling): the
items are split into strata, each stratum is shuffled, and the strata are interleaved in proportion
to their sizes (item i of a stratum of n sits at (i + u) / n, u drawn once per stratum), so any
prefix of the order holds each stratum in proportion to its size, to within one item, and the
mean over a prefix estimates the mean over all cases without weights.

- subjects are stratified by the set of templates they take (DreamBench: live subjects and
  objects keep their 9 : 21 ratio);
- a subject's prompts are stratified by template (MultiBench: its 5 templates);
- the final sample is stratified by subject, and within a subject by template.

The kept cases return in benchmark order. A case's images do not depend on which subset chose it
(seeded per case and image), so a subset's images are reused by a larger run in the same folder.
"""

from __future__ import annotations

import random
from typing import Callable, Hashable, Optional, Sequence, TypeVar

from unimo_g_apps.evaluation.cases import Case

T = TypeVar("T")


def spread(items: Sequence[T], stratum: Callable[[T], Hashable], rng: random.Random,
           inner: Optional[Callable[[list[T], random.Random], list[T]]] = None) -> list[T]:
    """`items` reordered so that every prefix covers the strata in proportion to their sizes.
    `inner` orders the items of a stratum (default: a seeded shuffle)."""
    strata: dict[Hashable, list[T]] = {}
    for item in items:
        strata.setdefault(stratum(item), []).append(item)
    keyed = []
    for rank, members in enumerate(strata.values()):
        if inner is not None:
            ordered = inner(list(members), rng)
        else:
            ordered = list(members)
            rng.shuffle(ordered)
        offset = rng.random()  # a random start: no stratum always comes first at a tie
        keyed += [((i + offset) / len(ordered), rank, item) for i, item in enumerate(ordered)]
    keyed.sort(key=lambda k: k[:2])
    return [item for _, _, item in keyed]


def _by_template(cases: list[Case], rng: random.Random) -> list[Case]:
    return spread(cases, lambda c: c.template_name, rng)


def select_cases(cases: Sequence[Case], subjects: Optional[int] = None, per_subject: Optional[int] = None,
                 sample: Optional[int] = None, seed: int = 0) -> list[Case]:
    """The representative subset of the module docstring, in benchmark order."""
    rng = random.Random(seed)
    kept = list(cases)
    if subjects is not None:
        by_subject: dict[str, list[Case]] = {}
        for case in kept:
            by_subject.setdefault(case.subject, []).append(case)
        names = spread(list(by_subject), lambda s: frozenset(c.template_name for c in by_subject[s]), rng)
        chosen = set(names[:subjects])
        kept = [case for case in kept if case.subject in chosen]
    if per_subject is not None:
        by_subject = {}
        for case in kept:
            by_subject.setdefault(case.subject, []).append(case)
        chosen_keys = {case.key for members in by_subject.values() for case in _by_template(members, rng)[:per_subject]}
        kept = [case for case in kept if case.key in chosen_keys]
    if sample is not None:
        chosen_keys = {case.key for case in spread(kept, lambda c: c.subject, rng, _by_template)[:sample]}
        kept = [case for case in kept if case.key in chosen_keys]
    return kept
