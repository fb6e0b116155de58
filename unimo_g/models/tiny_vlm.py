"""Tiny random-weight vision-language models for tests and offline smoke runs.

Each builder returns `(model, processor)` of one family, built from configs (no download): a
2-layer, 32-wide language model and vision tower, 32-px entity images (16 visual tokens each), and
an offline tokenizer. Outputs carry no meaning; shapes, token layouts and code paths are the real
ones. A build is deterministic for a seed (weights are drawn under a forked, seeded RNG), and
`save_pretrained` + the family's loader reproduce it exactly.

The tokenizer is a `tokenizers` WordPiece model over a short list of common caption words plus
every lowercase letter, digit and punctuation mark, alone and as a `##` continuation: any ASCII
word encodes to its own tokens (whole word when listed, characters otherwise) instead of one
shared [UNK] as a word-level vocabulary would give.
"""

from __future__ import annotations

import string
from typing import Callable

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import (
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from unimo_g.models.qwen2_vl_processor import Qwen2VLImageProcessor

TINY_IMAGE_SIZE = 32
TINY_HIDDEN = 32
TINY_LAYERS = 2
TINY_HEADS = 4
TINY_MAX_POSITIONS = 2048

# Frequent words of image captions: whole-word tokens for the common case.
TINY_WORDS = tuple(
    """
    a an the and or of in on at to with without from by for near under over above below behind beside
    between inside outside into onto next front top side back middle while is are was be being has have
    it its this that these those there here his her their my our your he she they we one two three four
    some many several other another each small large big little old young new long short tall white black
    red green blue yellow brown gray grey orange pink purple dark light wooden metal
    man woman person people boy girl child children baby men women player group crowd family
    dog dogs cat cats horse horses bird birds cow cows sheep elephant bear zebra giraffe animal
    car cars bus truck train bike bicycle motorcycle boat plane airplane street road sidewalk city building
    house room kitchen table chair sofa couch bed window door wall floor field grass tree trees water
    beach ocean sea sky snow mountain park food plate pizza cake sandwich bowl cup glass bottle phone
    laptop computer book bag hat shirt dress umbrella ball kite frisbee surfboard skateboard
    sitting standing walking running riding holding playing eating looking lying sleeping flying
    wearing carrying parked covered filled made takes taking selfie photo picture
    """.split()
)

CONTINUATION = "##"


def build_tokenizer(special_tokens: list[str], bos_token: str | None) -> PreTrainedTokenizerFast:
    """The offline tokenizer: `special_tokens` come first (ids 0..), then words and characters.

    `special_tokens` must start with the pad and unk tokens `[PAD]`, `[UNK]`; with `bos_token` set,
    every encoding starts with it (as LLaMA tokenizers do). Padding is on the right.
    """
    alphabet = string.ascii_lowercase + string.digits + string.punctuation
    vocab: dict[str, int] = {}
    for token in [*special_tokens, *TINY_WORDS, *alphabet, *(CONTINUATION + c for c in alphabet)]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix=CONTINUATION))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # whitespace, then each punctuation mark
    backend.decoder = decoders.WordPiece(prefix=CONTINUATION)
    if bos_token is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A", pair=f"{bos_token} $A $B", special_tokens=[(bos_token, vocab[bos_token])]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token=bos_token,
        additional_special_tokens=[t for t in special_tokens if t not in ("[PAD]", "[UNK]", bos_token)],
    )
    tokenizer.padding_side = "right"
    return tokenizer


def _seeded(seed: int, make: Callable[[], PreTrainedModel]) -> PreTrainedModel:
    """`make()` with weights drawn from a private RNG seeded by `seed` (the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make().eval()


def _text_config(tokenizer: PreTrainedTokenizerFast, **extra) -> dict:
    return dict(
        hidden_size=TINY_HIDDEN,
        intermediate_size=2 * TINY_HIDDEN,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=TINY_HEADS,
        num_key_value_heads=TINY_HEADS // 2,
        vocab_size=len(tokenizer),
        max_position_embeddings=TINY_MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=None,
        **extra,
    )


def build_tiny_llava(seed: int, image_size: int = TINY_IMAGE_SIZE):
    """LLaVA-1.5 layout: CLIP vision tower (patch 8), "default" feature strategy (CLS dropped) -> LLaMA."""
    patch = 8
    if image_size % patch:
        raise ValueError(f"tiny llava needs an image_size divisible by {patch}, got {image_size}")
    tokenizer = build_tokenizer(["[PAD]", "[UNK]", "<s>", "<image>"], bos_token="<s>")
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=TINY_HIDDEN,
            intermediate_size=2 * TINY_HIDDEN,
            num_hidden_layers=TINY_LAYERS,
            num_attention_heads=TINY_HEADS,
            image_size=image_size,
            patch_size=patch,
            projection_dim=TINY_HIDDEN,
        ),
        text_config=LlamaConfig(**_text_config(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    return _seeded(seed, lambda: LlavaForConditionalGeneration(config)), processor


def build_tiny_qwen2_vl(seed: int, image_size: int = TINY_IMAGE_SIZE):
    """Qwen2-VL layout: patch 4, 2x2 merge (a 32-px image gives 16 tokens), M-RoPE."""
    patch, merge = 4, 2
    if image_size % (patch * merge):
        raise ValueError(f"tiny qwen2_vl needs an image_size divisible by {patch * merge}, got {image_size}")
    specials = ["[PAD]", "[UNK]", "<|endoftext|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
    specials.append("<|video_pad|>")  # the model config needs its id
    tokenizer = build_tokenizer(specials, bos_token=None)
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=pixels, max_pixels=pixels, patch_size=patch, merge_size=merge, temporal_patch_size=2
    )
    processor = Qwen2VLImageProcessor(image_processor=image_processor, tokenizer=tokenizer)
    head_dim = TINY_HIDDEN // TINY_HEADS
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config=_text_config(
            tokenizer,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [head_dim // 4, head_dim // 8, head_dim // 8],  # (t, h, w) halves of head_dim / 2
            },
        ),
        vision_config=dict(
            depth=TINY_LAYERS,
            embed_dim=TINY_HIDDEN,
            hidden_size=TINY_HIDDEN,
            num_heads=TINY_HEADS,
            mlp_ratio=2,
            patch_size=patch,
            spatial_merge_size=merge,
            temporal_patch_size=2,
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    return _seeded(seed, lambda: Qwen2VLForConditionalGeneration(config)), processor


def build_tiny_idefics3(seed: int, image_size: int = TINY_IMAGE_SIZE):
    """Idefics3 / SmolVLM layout: SigLIP-style tower (patch 4), pixel shuffle x2, no image splitting."""
    patch, scale = 4, 2
    if image_size % (patch * scale):
        raise ValueError(f"tiny idefics3 needs an image_size divisible by {patch * scale}, got {image_size}")
    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    specials = ["[PAD]", "[UNK]", "<s>", "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
    specials += grid
    tokenizer = build_tokenizer(specials, bos_token="<s>")
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size}, do_image_splitting=False
    )
    image_seq_len = (image_size // patch) ** 2 // scale**2
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len)
    config = Idefics3Config(
        text_config=dict(model_type="llama", **_text_config(tokenizer)),
        vision_config=dict(
            hidden_size=TINY_HIDDEN,
            intermediate_size=2 * TINY_HIDDEN,
            num_hidden_layers=TINY_LAYERS,
            num_attention_heads=TINY_HEADS,
            image_size=image_size,
            patch_size=patch,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=scale,
    )
    return _seeded(seed, lambda: Idefics3ForConditionalGeneration(config)), processor


TINY_BUILDERS = {"llava": build_tiny_llava, "qwen2_vl": build_tiny_qwen2_vl, "idefics3": build_tiny_idefics3}
