"""The strict check of entity replies, on replies in the output style of each supported family."""

import pytest

from grounding.entity_replies import Failure, Listed, entity_spans, parse_llm_reply, parse_mllm_reply

CAPTION = "A brown dog holds a red ball next to a wooden chair."
OBJECT = '{"caption": "%s", "entities": ["brown dog", "red ball", "wooden chair"]}' % CAPTION

# How each family's instruct checkpoints answer a "reply with JSON only" prompt (decoded with
# skip_special_tokens, after the generation prompt).
FAMILY_STYLES = {
    "qwen2_vl": f"```json\n{OBJECT}\n```",  # Qwen2-VL / Qwen2.5-VL fence their JSON
    "llava": f" {OBJECT}",  # LLaVA-1.5 answers after "ASSISTANT:" with a space
    "llava_next": f"{OBJECT}\n",  # Mistral-based LLaVA-NeXT after "[/INST]"
    "llava_onevision": f"```json\n{OBJECT}\n```\n",
    "idefics3": f" {OBJECT}",  # after "Assistant:", as SmolVLM
    "smolvlm": f" {OBJECT}",
}


@pytest.mark.parametrize("family", sorted(FAMILY_STYLES))
def test_well_formed_replies_of_every_family(family):
    parsed = parse_mllm_reply(FAMILY_STYLES[family])
    assert isinstance(parsed, Listed) and parsed.caption == CAPTION
    assert parsed.entities == ("brown dog", "red ball", "wooden chair")
    assert all(CAPTION[s:e] == text for (s, e), text in zip(parsed.spans, parsed.entities))


@pytest.mark.parametrize("reply, reason", [
    ("", "empty"),
    ("```json\n```", "empty"),
    (f"Sure! Here is the JSON: {OBJECT}", "not_json"),  # chatter around the JSON
    (f"{OBJECT}\nI hope this helps.", "not_json"),
    (OBJECT.replace('"', "'"), "not_json"),  # a Python dict, not JSON
    (OBJECT[:-20], "not_json"),  # cut by max_new_tokens
    (f"```json\n{OBJECT}\n```\n```json\n{OBJECT}\n```", "not_json"),  # two fences
    ('{"caption": "A dog."}', "bad_keys"),
    ('{"caption": "A dog.", "entities": ["dog"], "objects": []}', "bad_keys"),
    ('["dog"]', "bad_keys"),
    ('{"caption": "", "entities": []}', "no_caption"),
    ('{"caption": 3, "entities": []}', "no_caption"),
    ('{"caption": "A dog.", "entities": "dog"}', "bad_entities"),
    ('{"caption": "A dog.", "entities": ["dog", 3]}', "bad_entities"),
    ('{"caption": "A dog.", "entities": [" "]}', "bad_entities"),
])
def test_malformed_replies_fail_with_their_reason(reply, reason):
    parsed = parse_mllm_reply(reply)
    assert isinstance(parsed, Failure) and parsed.reason == reason, parsed


@pytest.mark.parametrize("entities, reason", [
    (["brown dog", "cat"], "not_in_caption"),
    (["Brown dog"], "not_in_caption"),  # letter for letter
    (["red ball", "brown dog"], "out_of_order"),
    (["dog", "dog"], "out_of_order"),  # one mention listed twice
])
def test_entities_must_be_substrings_in_order(entities, reason):
    parsed = parse_mllm_reply('{"caption": "%s", "entities": %s}' % (CAPTION, str(entities).replace("'", '"')))
    assert isinstance(parsed, Failure) and parsed.reason == reason
    assert parsed.caption == CAPTION  # kept for the spaCy fallback on the model's caption


def test_repeated_words_are_found_after_the_previous_entity():
    assert entity_spans("a dog and a dog", ["dog", "dog"]) == ((2, 5), (12, 15))
    assert parse_mllm_reply('{"caption": "A dog.", "entities": []}') == Listed("A dog.", ())


@pytest.mark.parametrize("reply", ['["brown dog", "red ball"]', '```json\n["brown dog", "red ball"]\n```',
                                   ' ["brown dog", "red ball"]\n'])
def test_llm_lists(reply):
    parsed = parse_llm_reply(reply, CAPTION)
    assert isinstance(parsed, Listed) and parsed.caption == CAPTION and parsed.entities == ("brown dog", "red ball")


@pytest.mark.parametrize("reply, reason", [
    ('{"entities": ["dog"]}', "bad_entities"),
    ("dog, red ball", "not_json"),
    ('["red ball", "brown dog"]', "out_of_order"),
    ('["a puppy"]', "not_in_caption"),
])
def test_llm_failures(reply, reason):
    parsed = parse_llm_reply(reply, CAPTION)
    assert isinstance(parsed, Failure) and parsed.reason == reason and parsed.caption is None
