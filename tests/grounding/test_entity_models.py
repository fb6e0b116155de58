"""Loading and greedy generation of the entity models, with a random-weight build of every family:
the real processors, chat templates, left-padded batching and `generate` (replies are noise)."""

import numpy as np
import pytest
import torch

from grounding.entity_lists import messages
from grounding.entity_models import fit_image, generate_replies, load_entity_model
from grounding.tiny_chat_models import TINY_CHAT_BUILDERS, build_tiny_chat_model
from unimo_g.pipeline_config import EntitiesConfig, ModelRuntimeConfig

MLLM_FAMILIES = ["qwen2_vl", "qwen2_5_vl", "llava", "llava_next", "llava_onevision", "idefics3", "smolvlm"]
LLM_FAMILIES = ["qwen2", "llama"]
# What each family's chat template puts around the user's turn (the published templates' layout).
TEMPLATE_MARKS = {
    "qwen2_vl": ("<|im_start|>user\n<|vision_start|>", "<|im_start|>assistant\n"),
    "qwen2_5_vl": ("<|im_start|>user\n<|vision_start|>", "<|im_start|>assistant\n"),
    "llava": ("USER: <image>\n", "ASSISTANT:"),
    "llava_next": ("[INST] <image>\n", " [/INST]"),
    "llava_onevision": ("<|im_start|>user <image>\n", "<|im_start|>assistant\n"),
    "idefics3": ("<|begin_of_text|>User:<image>", "<end_of_utterance>\nAssistant:"),
    "smolvlm": ("<|im_start|>User:<image>", "<end_of_utterance>\nAssistant:"),
    "qwen2": ("<|im_start|>user\nList the entities", "<|im_start|>assistant\n"),
    "llama": ("<|start_header_id|>user<|end_header_id|>\n\nList the entities",
              "<|start_header_id|>assistant<|end_header_id|>\n\n"),
}
RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8), RNG.integers(0, 256, (50, 30, 3), dtype=np.uint8)]
CAPTIONS = ["a dog", "a brown dog holds a red ball next to a wooden chair in a sunny garden"]


def config(family: str, **extra) -> EntitiesConfig:
    source = "llm" if family in LLM_FAMILIES else "mllm"
    return EntitiesConfig(source=source, model=f"random-tiny-{family}", max_new_tokens=6, **extra)


def test_every_family_has_a_build():
    assert sorted(TINY_CHAT_BUILDERS) == sorted(MLLM_FAMILIES + LLM_FAMILIES) == sorted(TEMPLATE_MARKS)


@pytest.mark.parametrize("family", MLLM_FAMILIES + LLM_FAMILIES)
def test_family_generates_batched_and_per_image(family):
    per_image = config(family)
    loaded = load_entity_model(per_image)
    assert loaded.tokenizer.padding_side == "left"
    chats = [messages(per_image, caption, strict=False) for caption in CAPTIONS]
    rendered = loaded.processor.apply_chat_template(chats[1], add_generation_prompt=True, tokenize=False)
    opening, generation_prompt = TEMPLATE_MARKS[family]
    assert opening in rendered and rendered.endswith(generation_prompt)
    images = IMAGES if per_image.source == "mllm" else None
    replies = generate_replies(loaded, chats, images, per_image)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    assert generate_replies(loaded, chats, images, per_image) == replies  # greedy: the same every time
    batched = generate_replies(loaded, chats, images, config(family, forward="batch"))
    assert len(batched) == 2 and all(isinstance(r, str) for r in batched)
    if per_image.source == "llm":  # text prompts of different lengths: left padding keeps each reply
        assert batched == replies


def test_a_build_is_the_same_for_a_seed():
    first, again = build_tiny_chat_model("random-tiny-llava", 3), build_tiny_chat_model("random-tiny-llava", 3)
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))


def test_wrong_builds_and_sources_are_refused():
    with pytest.raises(ValueError, match="llm build; entities.source mllm needs a mllm"):
        load_entity_model(EntitiesConfig(source="mllm", model="random-tiny-qwen2"))
    with pytest.raises(ValueError, match="random-tiny-<family>"):
        build_tiny_chat_model("random-tiny-gpt", 0)
    with pytest.raises(ValueError, match="spacy loads no model"):
        load_entity_model(EntitiesConfig())
    loaded = load_entity_model(config("llava"))
    with pytest.raises(ValueError, match="one image per chat"):
        generate_replies(loaded, [messages(config("llava"), "a dog", False)], None, config("llava"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without a GPU")
def test_an_absent_gpu_is_an_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        load_entity_model(config("qwen2", runtime=ModelRuntimeConfig(device="cuda")))


def test_large_images_are_shrunk_to_the_configured_side():
    image = fit_image(np.zeros((300, 1200, 3), dtype=np.uint8), 600)
    assert image.size == (600, 150)
    assert fit_image(np.zeros((30, 40, 3), dtype=np.uint8), 600).size == (40, 30)
