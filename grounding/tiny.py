"""Random-weight Grounding DINO presets and an offline BERT tokenizer, for tests, offline runs and benchmarks.

- `tiny`: a ~0.5M-parameter model; costs little and exercises every real code path.
- `random-grounding-dino-tiny`: the dimensions and processor settings of IDEA-Research/grounding-dino-tiny
  (Swin-T, BERT-base text encoder, 900 queries, 6 + 6 layers) with random weights: the same compute as
  the published model, so throughput measured with it is honest without downloading the weights.

Boxes from either are NOT meaningful. The vocabulary puts [CLS], [SEP], "." and "?" at ids 101, 102,
1012, 1029, the delimiter ids Grounding DINO hard-codes, and holds single characters and "##"
continuation characters so that every lowercase ASCII word tokenizes (frequent caption words as whole
pieces); the full-size preset pads it with unused tokens to BERT-base's 30522 entries.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from transformers import (
    BertConfig,
    BertTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessorPil,
    SwinConfig,
)

# Ids the model uses as phrase delimiters (`GroundingDinoModel.special_tokens`).
FIXED_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}

# Redrawn box heads of the tiny model: logit-space offsets of (cx, cy, w, h) added to the proposals.
_PROPOSAL_BIAS = (0.0, 0.0, 2.0, 2.0)
_BOX_HEAD_STD = 0.5
# The full-size heads read 256-wide features (the tiny model's: 32): a smaller std keeps the boxes
# object-sized (measured on the sample photos: median box area ~0.2 of the image, 5-95% 0.07-0.35).
_FULL_BOX_HEAD_STD = 0.18
TINY_NAME = "tiny"
GROUNDING_DINO_TINY_NAME = "random-grounding-dino-tiny"
BERT_BASE_VOCAB_SIZE = 30522  # bert-base-uncased, the text encoder of grounding-dino-tiny
_COMMON_WORDS = (
    "a an the and or of in on at to with by for from near under over behind beside next its his her their "
    "is are two three some many man woman men women person people boy girl child children baby player "
    "dog dogs cat cats horse bird birds cow sheep bear elephant giraffe zebra animal "
    "car cars bus truck train bike bicycle motorcycle boat plane airplane street road sign light traffic "
    "table chair chairs bed couch sofa desk window door wall floor room kitchen house building tower bridge "
    "tree trees grass flower flowers plant field beach water sea ocean river lake sky cloud clouds snow mountain "
    "ball bat kite frisbee skateboard surfboard board umbrella bag hat shirt dress jacket glasses phone laptop "
    "book cup glass bottle plate bowl food pizza cake sandwich banana apple orange bread fruit "
    "red blue green yellow white black brown gray grey pink purple small large big little old young "
    "wooden metal front top side holding sitting standing walking playing riding eating looking "
    "##s ##es ##ed ##ing ##er ##ly ##y"
).split()


def tiny_vocab() -> list[str]:
    """The vocabulary as a list; position == token id. Unused slots are `[unusedN]`."""
    placed = {token_id: token for token, token_id in FIXED_IDS.items()}
    others = []
    for token in list(string.ascii_lowercase + string.digits + string.punctuation) + [
        "##" + c for c in string.ascii_lowercase + string.digits
    ] + list(_COMMON_WORDS):
        if token not in FIXED_IDS and token not in others:
            others.append(token)
    size = max(max(placed) + 1, 1040) + len(others)
    vocab, free = [], iter(others)
    for token_id in range(size):
        if token_id in placed:
            vocab.append(placed[token_id])
        elif token_id > 103:  # after the reserved BERT block
            vocab.append(next(free, f"[unused{token_id}]"))
        else:
            vocab.append(f"[unused{token_id}]")
    return vocab


def padded_vocab(size: int) -> list[str]:
    """`tiny_vocab()` followed by `[unusedN]` tokens up to `size` entries; every id of `tiny_vocab()` stays."""
    vocab = tiny_vocab()
    if size < len(vocab):
        raise ValueError(f"vocabulary size {size} is below the {len(vocab)} entries of tiny_vocab()")
    return vocab + [f"[unused{token_id}]" for token_id in range(len(vocab), size)]


def tiny_tokenizer(vocab: Optional[Sequence[str]] = None) -> BertTokenizer:
    """An uncased BertTokenizer over `vocab` (default `tiny_vocab()`), loaded offline from a temporary vocab.txt."""
    vocab = list(vocab) if vocab is not None else tiny_vocab()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = BertTokenizer.from_pretrained(folder, do_lower_case=True)
    ids = tokenizer.convert_tokens_to_ids(list(FIXED_IDS))
    if ids != list(FIXED_IDS.values()) or len(tokenizer) != len(vocab):
        raise RuntimeError(f"tiny tokenizer ids {ids} do not match {list(FIXED_IDS.values())}")
    return tokenizer


def tiny_image_processor() -> GroundingDinoImageProcessorPil:
    """Resizes to shortest edge 128, longest edge 192 (so the default canvas is 192 x 192)."""
    return GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 192})


def tiny_config(vocab_size: int) -> GroundingDinoConfig:
    """A ~0.5M-parameter Grounding DINO: one block per Swin stage, 1-layer BERT, 2 decoder layers."""
    backbone = SwinConfig(
        embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
    )
    return GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
        num_queries=30, encoder_n_points=2, decoder_n_points=2, max_text_len=256,
    )


def random_model(
    config: GroundingDinoConfig, seed: int, box_head_std: float = _BOX_HEAD_STD
) -> GroundingDinoForObjectDetection:
    """Random weights for `config` drawn after `torch.manual_seed(seed)`: the same seed gives the same model.

    The global RNG state is restored afterwards. transformers starts the box heads' last layers at
    zero, so every box would be one of the encoder's fixed-size proposals (5% to 40% of the image
    side, mostly the smallest); the proposal head's output bias is redrawn around `_PROPOSAL_BIAS`
    so that boxes have object-like sizes, and the weights of all box heads are redrawn (normal with
    `box_head_std`) so that boxes move with the image.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config)
        proposal_head = model.model.encoder_output_bbox_embed.layers[-1]
        decoder_head = model.bbox_embed[0].layers[-1]  # shared by every decoder layer (tied weights)
        with torch.no_grad():
            for layer in (proposal_head, decoder_head):
                torch.nn.init.normal_(layer.weight, std=box_head_std)
            proposal_head.bias.copy_(torch.normal(torch.tensor(_PROPOSAL_BIAS), _BOX_HEAD_STD))
        return model


def tiny_model(seed: int) -> GroundingDinoForObjectDetection:
    """The tiny preset's random weights (see `random_model`)."""
    return random_model(tiny_config(len(tiny_vocab())), seed)


def grounding_dino_tiny_config(vocab_size: int = BERT_BASE_VOCAB_SIZE) -> GroundingDinoConfig:
    """The architecture of IDEA-Research/grounding-dino-tiny (its published config.json), spelled out.

    Swin-T backbone (embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7, stages 2-4 out), BERT-base
    text encoder (768 hidden, 12 layers, 12 heads), d_model 256, 6 encoder + 6 decoder layers with
    2048-wide FFNs and 8 heads, 900 queries, 4 feature levels, 4 sampling points, 256 text tokens.
    These equal transformers' `GroundingDinoConfig()` defaults; they are written out so that a change
    of defaults cannot silently change the benchmark.
    """
    backbone = SwinConfig(
        embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, image_size=224,
        patch_size=4, mlp_ratio=4.0, out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=vocab_size, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=512,
    )
    return GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=256, encoder_layers=6, decoder_layers=6,
        encoder_ffn_dim=2048, decoder_ffn_dim=2048, encoder_attention_heads=8, decoder_attention_heads=8,
        num_queries=900, num_feature_levels=4, encoder_n_points=4, decoder_n_points=4, max_text_len=256,
        two_stage=True, decoder_bbox_embed_share=True, two_stage_bbox_embed_share=False,
    )


def grounding_dino_tiny_image_processor() -> GroundingDinoImageProcessorPil:
    """grounding-dino-tiny's preprocessing: shortest edge 800, longest 1333, ImageNet mean/std, bilinear."""
    return GroundingDinoImageProcessorPil(size={"shortest_edge": 800, "longest_edge": 1333})


def grounding_dino_tiny_model(seed: int) -> GroundingDinoForObjectDetection:
    """`grounding_dino_tiny_config()` with random weights (see `random_model`); ~172M parameters."""
    return random_model(grounding_dino_tiny_config(), seed, box_head_std=_FULL_BOX_HEAD_STD)


def _tiny_preset(seed: int) -> tuple[Any, Any, Any]:
    return tiny_model(seed), tiny_image_processor(), tiny_tokenizer()


def _grounding_dino_tiny_preset(seed: int) -> tuple[Any, Any, Any]:
    return (
        grounding_dino_tiny_model(seed),
        grounding_dino_tiny_image_processor(),
        tiny_tokenizer(padded_vocab(BERT_BASE_VOCAB_SIZE)),
    )


# Model name (GroundingConfig.model) -> seed -> (model, image processor, tokenizer), all offline.
RANDOM_PRESETS: dict[str, Callable[[int], tuple[Any, Any, Any]]] = {
    TINY_NAME: _tiny_preset,
    GROUNDING_DINO_TINY_NAME: _grounding_dino_tiny_preset,
}
