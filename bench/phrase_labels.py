"""The labelled caption set (`data/entity_labels/captions.jsonl`) and how phrases are scored on it.

Each line holds a caption, its style, source and split, and the groundable entities a person would list,
each as one or more mentions (substrings of the caption: "magnificent Qilin" and a later "Qilin" are
one entity). A mention is resolved to the first whole-word occurrence of its text that no earlier
mention took, entities in listed order.

Scoring. A predicted phrase (one Grounding DINO query) matches an entity when it overlaps one of the
entity's mentions and ends where that mention ends: it names the same head noun ("white clothing"
for "white clothing"; "gentle, white clothing" too, but not "red" for "red can"). Each entity is
credited once; a second phrase matching an entity already credited is a false positive (it costs a
second query slot for one object). Precision = matched phrases / phrases; recall = entities matched /
entities. `exact` counts phrases whose span equals a mention's span.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

LABELS = Path(__file__).resolve().parents[1] / "data" / "entity_labels" / "captions.jsonl"

Span = tuple[int, int]
# "dev": the captions the phrase filters were written against; "held_out": labelled after the
# filters were written and never used to change them (an unbiased estimate).
SPLITS = ("dev", "held_out")


@dataclass(frozen=True)
class LabelledCaption:
    id: str
    split: str
    style: str
    source: str
    caption: str
    entities: tuple[tuple[Span, ...], ...]  # per entity, the character spans of its mentions


def resolve_mentions(caption: str, entities: Sequence[Sequence[str]]) -> tuple[tuple[Span, ...], ...]:
    """Character spans of every mention; ValueError naming a mention that is not in the caption."""
    taken: set[Span] = set()
    resolved = []
    for mentions in entities:
        spans = []
        for text in mentions:
            found = next((m.span() for m in re.finditer(rf"(?<!\w){re.escape(text)}(?!\w)", caption)
                          if m.span() not in taken), None)
            if found is None:
                raise ValueError(f"mention {text!r} is not a free whole-word substring of {caption!r}")
            taken.add(found)
            spans.append(found)
        resolved.append(tuple(spans))
    return tuple(resolved)


def load_labels(path: Path | str = LABELS) -> list[LabelledCaption]:
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        if record["split"] not in SPLITS:
            raise ValueError(f"{path}:{number}: split {record['split']!r} is not one of {SPLITS}")
        try:
            entities = resolve_mentions(record["caption"], record["entities"])
        except ValueError as err:
            raise ValueError(f"{path}:{number}: {err}") from None
        rows.append(LabelledCaption(record["id"], record["split"], record["style"], record["source"],
                                    record["caption"], entities))
    return rows


@dataclass
class Score:
    """Counts over captions; `add` one caption's predictions at a time."""

    captions: int = 0
    predicted: int = 0
    matched: int = 0  # predicted phrases credited to an entity
    exact: int = 0  # of those, spans equal to the mention's
    entities: int = 0
    found: int = 0  # entities credited

    def add(self, predicted: Iterable[Span], entities: Sequence[Sequence[Span]]) -> None:
        self.captions += 1
        credited: set[int] = set()
        for start, end in predicted:
            self.predicted += 1
            for k, mentions in enumerate(entities):
                hit = next((m for m in mentions if m[1] == end and start < m[1] and m[0] < end), None)
                if hit is not None and k not in credited:
                    credited.add(k)
                    self.matched += 1
                    self.exact += (start, end) == hit
                    break
        self.entities += len(entities)
        self.found += len(credited)

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.entities if self.entities else 1.0

    @property
    def exact_precision(self) -> float:
        return self.exact / self.predicted if self.predicted else 1.0
