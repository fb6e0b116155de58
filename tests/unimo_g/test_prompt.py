import random

import pytest

from unimo_g.prompt import compose_prompt, sample_substitutions
from unimo_g.records import PromptPart
from unimo_g.schema import prompt_text

CAPTION = "a brown dog sleeping on a red sofa"


def test_replace_mode_substitutes_phrases():
    parts = compose_prompt(CAPTION, [(0, 11, 0), (24, 34, 1)], "replace")
    assert parts == (PromptPart(entity=0), PromptPart(text=" sleeping on "), PromptPart(entity=1))
    assert prompt_text(parts) == "<img>0</img> sleeping on <img>1</img>"


def test_append_mode_keeps_phrase_then_entity():
    parts = compose_prompt(CAPTION, [(24, 34, 1), (0, 11, 0)], "append")
    assert prompt_text(parts) == "a brown dog<img>0</img> sleeping on a red sofa<img>1</img>"


def test_no_spans_is_the_caption():
    assert compose_prompt(CAPTION, [], "replace") == (PromptPart(text=CAPTION),)
    assert compose_prompt("", [], "replace") == ()


def test_overlapping_spans_keep_the_first():
    parts = compose_prompt(CAPTION, [(2, 11, 1), (0, 11, 0)], "replace")
    assert prompt_text(parts) == "<img>0</img> sleeping on a red sofa"


def test_span_outside_caption_raises():
    with pytest.raises(ValueError, match="outside"):
        compose_prompt("dog", [(0, 9, 0)])


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="mode"):
        compose_prompt(CAPTION, [], "prepend")


def test_substitution_sampling_respects_text_only_share():
    rng = random.Random(0)
    draws = [sample_substitutions(3, rng, substitute_prob=1.0, text_only_prob=0.1) for _ in range(5000)]
    text_only = sum(not d for d in draws) / len(draws)
    assert 0.08 < text_only < 0.12
    assert all(d in ([], [0, 1, 2]) for d in draws)
    assert sample_substitutions(0, rng, 1.0, 0.0) == []


def test_entities_of_one_plural_phrase_follow_each_other():
    caption = "two dogs on grass"
    assert prompt_text(compose_prompt(caption, [(0, 8, 0), (0, 8, 1)], "replace")) == "<img>0</img><img>1</img> on grass"
    assert prompt_text(compose_prompt(caption, [(0, 8, 0), (0, 8, 1)], "append")) == "two dogs<img>0</img><img>1</img> on grass"
