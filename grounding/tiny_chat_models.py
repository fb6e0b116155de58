"""Random-weight chat models of each supported family, built from configs, for tests and offline runs.

`entities.model: random-tiny-<family>` builds one: a 2-layer, 32-wide language model (and vision
tower), an offline tokenizer holding the family's special tokens (`unimo_g.models.tiny_vlm`), its
processor with the family's published chat template (`grounding.chat_templates`) and left padding.
Replies are noise; the processor, chat template, batching and generation code are the real ones.
Weights are drawn under a forked RNG seeded by `seed`, so a build is the same every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from transformers import (
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    SiglipVisionConfig,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import LlavaOnevisionImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from grounding import chat_templates
from grounding.vlm_processors import LlavaOnevisionImageProcessor
from unimo_g.models.qwen2_vl_processor import Qwen2VLImageProcessor
from unimo_g.models.tiny_vlm import TINY_HEADS, TINY_HIDDEN, TINY_IMAGE_SIZE, TINY_LAYERS, build_tokenizer

PREFIX = "random-tiny-"
SIZE = TINY_IMAGE_SIZE  # 32-px images


@dataclass(frozen=True)
class TinyChatModel:
    """What a family builder returns; `kind`: `mllm` (images and text) or `llm` (text only)."""

    model: Any
    processor: Any  # a processor (mllm) or a tokenizer (llm), with its chat template, left padding
    kind: str


def _seeded(seed: int, make: Callable[[], Any]):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make().eval()


def _tokenizer(specials: list[str], bos: str | None, eos: str, template: str):
    tokenizer = build_tokenizer(["[PAD]", "[UNK]", *specials], bos_token=bos)
    tokenizer.eos_token = eos
    tokenizer.chat_template = template
    tokenizer.padding_side = "left"
    return tokenizer


def _text(tokenizer, **extra) -> dict:
    return dict(hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN, num_hidden_layers=TINY_LAYERS,
                num_attention_heads=TINY_HEADS, num_key_value_heads=TINY_HEADS // 2, vocab_size=len(tokenizer),
                max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, **extra)


def _clip(patch: int) -> CLIPVisionConfig:
    return CLIPVisionConfig(hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN, num_hidden_layers=TINY_LAYERS,
                            num_attention_heads=TINY_HEADS, image_size=SIZE, patch_size=patch,
                            projection_dim=TINY_HIDDEN)


_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]


def _qwen_vl(seed: int, version: str) -> TinyChatModel:
    patch, merge = 4, 2
    tokenizer = _tokenizer(_QWEN_SPECIALS, None, "<|im_end|>", chat_templates.QWEN2_VL)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=SIZE * SIZE, max_pixels=SIZE * SIZE, patch_size=patch,
                                               merge_size=merge, temporal_patch_size=2)
    processor = Qwen2VLImageProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                      chat_template=chat_templates.QWEN2_VL)
    head_dim = TINY_HIDDEN // TINY_HEADS
    sections = [head_dim // 4, head_dim // 8, head_dim // 8]  # (t, h, w) halves of head_dim / 2
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sections}
    vision = dict(depth=TINY_LAYERS, hidden_size=TINY_HIDDEN, num_heads=TINY_HEADS, patch_size=patch,
                  spatial_merge_size=merge, temporal_patch_size=2)
    ids = tokenizer.convert_tokens_to_ids
    tokens = dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                  vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    if version == "2":
        config = Qwen2VLConfig(text_config=_text(tokenizer, rope_parameters=rope),
                               vision_config=dict(vision, embed_dim=TINY_HIDDEN, mlp_ratio=2), **tokens)
        return TinyChatModel(_seeded(seed, lambda: Qwen2VLForConditionalGeneration(config)), processor, "mllm")
    vision = dict(vision, intermediate_size=2 * TINY_HIDDEN, out_hidden_size=TINY_HIDDEN, window_size=2 * patch * merge,
                  fullatt_block_indexes=[TINY_LAYERS - 1])
    config = Qwen2_5_VLConfig(text_config=_text(tokenizer, rope_parameters=rope), vision_config=vision, **tokens)
    return TinyChatModel(_seeded(seed, lambda: Qwen2_5_VLForConditionalGeneration(config)), processor, "mllm")


def build_qwen2_vl(seed: int) -> TinyChatModel:
    return _qwen_vl(seed, "2")


def build_qwen2_5_vl(seed: int) -> TinyChatModel:
    return _qwen_vl(seed, "2.5")


def build_llava(seed: int) -> TinyChatModel:
    """LLaVA-1.5: CLIP tower (patch 8, CLS dropped) -> LLaMA; "USER: <image>\\n... ASSISTANT:"."""
    patch = 8
    tokenizer = _tokenizer(["<s>", "</s>", "<image>"], "<s>", "</s>", chat_templates.LLAVA)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=chat_templates.LLAVA)
    config = LlavaConfig(vision_config=_clip(patch), text_config=LlamaConfig(**_text(tokenizer)),
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-2)
    return TinyChatModel(_seeded(seed, lambda: LlavaForConditionalGeneration(config)), processor, "mllm")


def build_llava_next(seed: int) -> TinyChatModel:
    """LLaVA-NeXT (Mistral layout, "[INST] <image>\\n... [/INST]"): one 32-px grid, anyres patches."""
    patch = 8
    tokenizer = _tokenizer(["<s>", "</s>", "<image>"], "<s>", "</s>", chat_templates.LLAVA_NEXT)
    grid = [[SIZE, SIZE]]
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": SIZE}, image_grid_pinpoints=grid,
                                                 crop_size={"height": SIZE, "width": SIZE})
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=chat_templates.LLAVA_NEXT)
    config = LlavaNextConfig(vision_config=_clip(patch), text_config=LlamaConfig(**_text(tokenizer)),
                             image_token_id=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=grid,
                             vision_feature_select_strategy="default", vision_feature_layer=-2)
    return TinyChatModel(_seeded(seed, lambda: LlavaNextForConditionalGeneration(config)), processor, "mllm")


def build_llava_onevision(seed: int) -> TinyChatModel:
    """LLaVA-OneVision: SigLIP tower (patch 8, every token) -> Qwen2; "<|im_start|>user <image>\\n..."."""
    patch = 8
    tokenizer = _tokenizer(_QWEN_SPECIALS[:3] + ["<image>", "<video>"], None, "<|im_end|>",
                           chat_templates.LLAVA_ONEVISION)
    grid = [[SIZE, SIZE]]
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": SIZE, "width": SIZE}, image_grid_pinpoints=grid)
    processor = LlavaOnevisionImageProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        num_image_tokens=(SIZE // patch) ** 2, vision_feature_select_strategy="full",
                                        chat_template=chat_templates.LLAVA_ONEVISION)
    vision = SiglipVisionConfig(hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN,
                                num_hidden_layers=TINY_LAYERS, num_attention_heads=TINY_HEADS, image_size=SIZE,
                                patch_size=patch)
    config = LlavaOnevisionConfig(vision_config=vision, text_config=Qwen2Config(**_text(tokenizer)),
                                  image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                                  video_token_id=tokenizer.convert_tokens_to_ids("<video>"), image_grid_pinpoints=grid,
                                  vision_feature_select_strategy="full", vision_feature_layer=-1)
    return TinyChatModel(_seeded(seed, lambda: LlavaOnevisionForConditionalGeneration(config)), processor, "mllm")


def _idefics3(seed: int, template: str, bos: str) -> TinyChatModel:
    patch, scale = 4, 2
    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    specials = [bos, "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *grid]
    tokenizer = _tokenizer(specials, None, "<end_of_utterance>", template)
    size = {"longest_edge": SIZE}
    image_processor = Idefics3ImageProcessorPil(size=size, max_image_size=size, do_image_splitting=False)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=(SIZE // patch) ** 2 // scale**2, chat_template=template)
    vision = dict(hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN, num_hidden_layers=TINY_LAYERS,
                  num_attention_heads=TINY_HEADS, image_size=SIZE, patch_size=patch)
    config = Idefics3Config(text_config=dict(model_type="llama", **_text(tokenizer)), vision_config=vision,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=scale)
    return TinyChatModel(_seeded(seed, lambda: Idefics3ForConditionalGeneration(config)), processor, "mllm")


def build_idefics3(seed: int) -> TinyChatModel:
    """Idefics3 (Llama-3 layout): SigLIP-style tower, pixel shuffle x2, "User:<image>...<end_of_utterance>"."""
    return _idefics3(seed, chat_templates.IDEFICS3, "<|begin_of_text|>")


def build_smolvlm(seed: int) -> TinyChatModel:
    """SmolVLM-Instruct: the Idefics3 architecture (its checkpoints' model_type) with SmolVLM's template."""
    return _idefics3(seed, chat_templates.SMOLVLM, "<|im_start|>")


def build_qwen2(seed: int) -> TinyChatModel:
    """Text-only Qwen2 (the Qwen2.5-Instruct layout and template)."""
    tokenizer = _tokenizer(_QWEN_SPECIALS[:3], None, "<|im_end|>", chat_templates.QWEN2)
    config = Qwen2Config(**_text(tokenizer))
    return TinyChatModel(_seeded(seed, lambda: Qwen2ForCausalLM(config)), tokenizer, "llm")


def build_llama(seed: int) -> TinyChatModel:
    """Text-only LLaMA (the Llama-3-Instruct template)."""
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tokenizer = _tokenizer(specials, "<|begin_of_text|>", "<|eot_id|>", chat_templates.LLAMA3)
    config = LlamaConfig(**_text(tokenizer))
    return TinyChatModel(_seeded(seed, lambda: LlamaForCausalLM(config)), tokenizer, "llm")


TINY_CHAT_BUILDERS: dict[str, Callable[[int], TinyChatModel]] = {
    "qwen2_vl": build_qwen2_vl, "qwen2_5_vl": build_qwen2_5_vl, "llava": build_llava, "llava_next": build_llava_next,
    "llava_onevision": build_llava_onevision, "idefics3": build_idefics3, "smolvlm": build_smolvlm,
    "qwen2": build_qwen2, "llama": build_llama,
}


def build_tiny_chat_model(name: str, seed: int) -> TinyChatModel:
    """`random-tiny-<family>` -> its build; ValueError naming the families for another name."""
    family = name[len(PREFIX):] if name.startswith(PREFIX) else ""
    if family not in TINY_CHAT_BUILDERS:
        raise ValueError(f"{name!r} is no random-weight build; use {PREFIX}<family> with a family of "
                         f"{sorted(TINY_CHAT_BUILDERS)}")
    return TINY_CHAT_BUILDERS[family](seed)
