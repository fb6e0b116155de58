"""A spaCy component that keeps the tagger's second choice for every token (`token._.tag_alternative`).

The tag repair of `grounding.phrases.repair` asks whether the tagger itself found a noun reading
plausible for a word it tagged otherwise ("can" in "a red can": MD first, NN second). spaCy keeps
only the best tag; this component re-runs the tagger's output layer on the tok2vec tensor the
pipeline already computed (cheap: no second tok2vec pass) and stores the runner-up Penn tag.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, Token

NAME = "unimo_g_tag_alternatives"
EXTENSION = "tag_alternative"

if not Token.has_extension(EXTENSION):
    Token.set_extension(EXTENSION, default=None)


class TagAlternatives:
    """Sets `token._.tag_alternative` to the tagger's second-best tag of each token."""

    def __init__(self, nlp: Language):
        if not nlp.has_pipe("tagger"):
            raise ValueError("the tag alternatives need a pipeline with a tagger")
        self._tagger = nlp.get_pipe("tagger")

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc]))

    def pipe(self, docs: Iterable[Doc], batch_size: int = 128) -> Iterator[Doc]:
        batch: list[Doc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == batch_size:
                yield from self._annotate(batch)
                batch = []
        yield from self._annotate(batch)

    def _annotate(self, docs: list[Doc]) -> list[Doc]:
        if not docs:
            return docs
        labels = self._tagger.labels
        for doc, scores in zip(docs, self._tagger.model.predict(docs)):
            if not len(doc):
                continue
            scores = np.asarray(getattr(scores, "get", lambda: scores)())  # (tokens, labels); cupy -> numpy
            second = np.argsort(-scores, axis=1, kind="stable")[:, 1]
            for token, label in zip(doc, second):
                token._.set(EXTENSION, labels[int(label)])
        return docs


@Language.factory(NAME)
def make_tag_alternatives(nlp: Language, name: str) -> TagAlternatives:
    return TagAlternatives(nlp)


def has_alternatives(doc: Doc) -> bool:
    """True when `doc` went through this component (an empty doc counts)."""
    return not len(doc) or doc[0]._.get(EXTENSION) is not None
