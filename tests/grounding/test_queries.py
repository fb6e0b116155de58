import numpy as np
import pytest

from grounding.queries import TextQuery, build_queries, positive_map, query_phrase_text
from grounding.tiny import tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def num_tokens(tokenizer, text):
    return len(tokenizer(text)["input_ids"])  # with [CLS] and [SEP]


def test_query_format_and_spans(tokenizer):
    [query] = build_queries(["A Brown Dog", "two cats", "Mr. Smith?"], tokenizer, 256)
    assert query == TextQuery(
        text="a brown dog . two cats . mr  smith .", phrases=(0, 1, 2), spans=((0, 11), (14, 22), (25, 34))
    )
    assert [query.text[s:e] for s, e in query.spans] == ["a brown dog", "two cats", "mr  smith"]


def test_delimiters_inside_a_phrase_are_blanked():
    assert query_phrase_text("St. Mary's?") == "st  mary's"
    assert query_phrase_text("...") == ""


def test_no_phrases_no_queries(tokenizer):
    assert build_queries([], tokenizer, 256) == ()
    assert build_queries(["..."], tokenizer, 256) == ()  # nothing left to ground


def test_token_count_is_exact(tokenizer):
    phrases = ["a brown dog", "two cats", "xylophone player", "the old man's hat", "3 red-and-white balls"]
    [query] = build_queries(phrases, tokenizer, 256)
    expected = 2 + sum(len(tokenizer(p, add_special_tokens=False)["input_ids"]) + 1 for p in phrases)
    assert num_tokens(tokenizer, query.text) == expected


def test_long_lists_are_split_greedily_in_order(tokenizer):
    phrases = ["a brown dog", "two cats", "a red ball", "the green grass", "a man", "a wooden table"]
    max_len = 12
    queries = build_queries(phrases, tokenizer, max_len)
    assert len(queries) > 1
    assert [i for q in queries for i in q.phrases] == list(range(len(phrases)))
    for query in queries:
        assert num_tokens(tokenizer, query.text) <= max_len
        assert [query.text[s:e] for s, e in query.spans] == [phrases[i] for i in query.phrases]
        assert query.text.endswith(" .")
    for query, following in zip(queries, queries[1:]):  # greedy: the next phrase did not fit
        extra = len(tokenizer(phrases[following.phrases[0]], add_special_tokens=False)["input_ids"]) + 1
        assert num_tokens(tokenizer, query.text) + extra > max_len


def test_a_phrase_too_long_alone_is_truncated(tokenizer):
    long_phrase = "a very long description of a small brown dog with white paws and a red collar"
    queries = build_queries(["a cat", long_phrase, "a dog"], tokenizer, 10)
    assert [q.phrases for q in queries] == [(0,), (1,), (2,)]
    cut = queries[1]
    assert num_tokens(tokenizer, cut.text) == 10
    (start, end), = cut.spans
    assert long_phrase.startswith(cut.text[start:end]) and end - start < len(long_phrase)


def test_positive_map_from_offsets(tokenizer):
    [query] = build_queries(["a brown dog", "zebras"], tokenizer, 256)
    encoded = tokenizer(query.text, return_offsets_mapping=True, padding="max_length", max_length=12)
    # [CLS] a brown dog . zebra ##s . [SEP] [PAD]...
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"])[4:8] == [".", "zebra", "##s", "."]
    pm = positive_map(encoded["offset_mapping"], query.spans, 12)
    assert pm.shape == (2, 12) and pm.dtype == bool
    assert np.flatnonzero(pm[0]).tolist() == [1, 2, 3]
    assert np.flatnonzero(pm[1]).tolist() == [5, 6]


def test_positive_map_partial_overlap_padding_and_truncation():
    offsets = [(0, 0), (0, 3), (3, 6), (6, 7), (8, 12), (0, 0)]  # subword pieces and specials
    spans = [(2, 5), (8, 12), (20, 25)]
    pm = positive_map(offsets, spans, 8)
    assert pm.tolist() == [
        [False, True, True, False, False, False, False, False],  # overlaps two pieces
        [False, False, False, False, True, False, False, False],
        [False] * 8,  # span past the text: no token
    ]
    assert positive_map(offsets, spans, 3)[1].tolist() == [False] * 3  # truncated away
    assert positive_map(offsets, [], 4).shape == (0, 4)
