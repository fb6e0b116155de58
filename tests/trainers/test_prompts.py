import random

from trainers.prompts import choose_entities, substituted_prompt
from unimo_g.records import PromptPart

CAPTION = "a brown dog sleeping on a red sofa"
SPANS = [(0, 11), (24, 34)]  # "a brown dog", "a red sofa"


def test_renumbered_in_order_of_kept_entities():
    prompt, kept = substituted_prompt(CAPTION, SPANS, [1], "replace")
    assert kept == [1]
    assert prompt == (PromptPart(text="a brown dog sleeping on "), PromptPart(entity=0))
    prompt, kept = substituted_prompt(CAPTION, SPANS, [0, 1], "append")
    assert kept == [0, 1]
    assert prompt == (
        PromptPart(text="a brown dog"),
        PromptPart(entity=0),
        PromptPart(text=" sleeping on a red sofa"),
        PromptPart(entity=1),
    )


def test_none_chosen_is_the_caption():
    assert substituted_prompt(CAPTION, SPANS, [], "replace") == ((PromptPart(text=CAPTION),), [])


def test_entity_of_a_dropped_span_is_left_out():
    spans = [(0, 11), (2, 11), (24, 34)]  # entity 1 overlaps entity 0
    prompt, kept = substituted_prompt(CAPTION, spans, [0, 1, 2], "replace")
    assert kept == [0, 2]
    assert prompt == (PromptPart(entity=0), PromptPart(text=" sleeping on "), PromptPart(entity=1))


def test_same_span_entities_follow_each_other():
    spans = [(0, 11), (0, 11)]  # a plural phrase grounded twice
    prompt, kept = substituted_prompt(CAPTION, spans, [0, 1], "replace")
    assert kept == [0, 1]
    assert prompt[:2] == (PromptPart(entity=0), PromptPart(entity=1))


def test_choose_entities_caps_and_sorts():
    picks = [choose_entities(6, random.Random(seed), 1.0, 0.0, 3) for seed in range(20)]
    assert all(len(p) == 3 and p == sorted(p) for p in picks)
    assert len({tuple(p) for p in picks}) > 1  # a random subset, not always the first three
    assert choose_entities(6, random.Random(0), 1.0, 1.0, 3) == []
    assert choose_entities(6, random.Random(0), 1.0, 0.0, 0) == []
    assert choose_entities(0, random.Random(0), 1.0, 0.0, 3) == []
