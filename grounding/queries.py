"""Grounding DINO text queries built from phrases, and phrase-to-token maps.

A query is the original model's prompt format: lowercased phrases joined by " . " and ending
with " ." (`"a brown dog . two cats ."`). The model treats ".", "?", [CLS] and [SEP] as phrase
delimiters, so "." and "?" inside a phrase are replaced by spaces in the query (the phrase's
character span, and so its offsets, stay the same length).

Phrase-to-token maps come from the tokenizer's offset mapping and each phrase's character span
inside the query, never from decoded token strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

SEPARATOR = " . "
TERMINATOR = " ."
_DELIMITER_CHARS = str.maketrans({".": " ", "?": " "})
_NUM_SPECIAL_TOKENS = 2  # [CLS] and [SEP]
_NUM_TERMINATOR_TOKENS = 1  # the "." after each phrase


@dataclass(frozen=True)
class TextQuery:
    """One text input of the model.

    `phrases[k]` indexes the image's phrase list; `spans[k] = (start, end)` is that phrase's
    character span inside `text` (`text[start:end]` is the lowercased, possibly truncated phrase).
    """

    text: str
    phrases: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]


def query_phrase_text(phrase: str) -> str:
    """A phrase as written into a query: lowercased, with the delimiters "." and "?" blanked."""
    return phrase.lower().translate(_DELIMITER_CHARS).strip()


def _token_offsets(tokenizer, text: str) -> list[tuple[int, int]]:
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [tuple(offset) for offset in encoded["offset_mapping"]]


def _fit_phrase(tokenizer, text: str, max_tokens: int) -> str:
    """`text` cut after its first `max_tokens` tokens (unchanged when it is short enough)."""
    offsets = _token_offsets(tokenizer, text)
    if len(offsets) <= max_tokens:
        return text
    return text[: offsets[max_tokens - 1][1]].rstrip()


def build_queries(phrases: Sequence[str], tokenizer, max_text_len: int) -> tuple[TextQuery, ...]:
    """Pack phrase texts into as few queries as fit `max_text_len` tokens ([CLS] and [SEP] included).

    Greedy and order-preserving: phrases are appended to the current query until the next one
    would not fit, then a new query starts. A phrase too long for a query of its own is truncated
    to its first `max_text_len - 3` tokens (room for [CLS], its " ." and [SEP]); it is grounded on
    that prefix. A phrase that yields no token at all (only blanks) is left out of every query.
    Returns no query for no phrases.
    """
    budget = max_text_len - _NUM_SPECIAL_TOKENS  # tokens left for phrases and their terminators
    max_phrase_tokens = budget - _NUM_TERMINATOR_TOKENS
    if max_phrase_tokens < 1:
        raise ValueError(f"max_text_len={max_text_len} leaves no room for a phrase")
    groups: list[list[tuple[int, str]]] = []
    used = budget + 1  # forces a new group for the first phrase
    for index, phrase in enumerate(phrases):
        text = _fit_phrase(tokenizer, query_phrase_text(phrase), max_phrase_tokens)
        cost = len(_token_offsets(tokenizer, text)) + _NUM_TERMINATOR_TOKENS
        if cost == _NUM_TERMINATOR_TOKENS:
            continue
        if used + cost > budget:
            groups.append([])
            used = 0
        groups[-1].append((index, text))
        used += cost
    return tuple(_assemble(group) for group in groups)


def _assemble(group: Sequence[tuple[int, str]]) -> TextQuery:
    parts, spans, cursor = [], [], 0
    for index, text in group:
        if parts:
            parts.append(SEPARATOR)
            cursor += len(SEPARATOR)
        parts.append(text)
        spans.append((cursor, cursor + len(text)))
        cursor += len(text)
    parts.append(TERMINATOR)
    return TextQuery(text="".join(parts), phrases=tuple(i for i, _ in group), spans=tuple(spans))


def positive_map(
    offsets: np.ndarray | Sequence[Sequence[int]], spans: Sequence[tuple[int, int]], num_tokens: int
) -> np.ndarray:
    """Which tokens belong to which phrase: `(num_phrases, num_tokens)` bool.

    `offsets` is the tokenizer's offset mapping of one query, `(T, 2)` character `[start, end)`
    per token; special and padding tokens have empty offsets `(0, 0)` and match nothing. Token `t`
    belongs to phrase `k` when its non-empty character range overlaps `spans[k]`. Columns past `T`
    (padding up to `num_tokens`) are False; tokens past `num_tokens` are ignored (truncation).
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:num_tokens]  # (T, 2)
    spans_arr = np.asarray(spans, dtype=np.int64).reshape(-1, 2)  # (P, 2)
    starts, ends = offsets[:, 0][None, :], offsets[:, 1][None, :]  # (1, T)
    overlap = (starts < spans_arr[:, 1:2]) & (ends > spans_arr[:, 0:1]) & (ends > starts)  # (P, T)
    result = np.zeros((len(spans_arr), num_tokens), dtype=bool)
    result[:, : overlap.shape[1]] = overlap
    return result
