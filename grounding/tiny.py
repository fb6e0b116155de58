"""A tiny random-weight Grounding DINO and an offline BERT tokenizer, for tests and offline runs.

Boxes from this model are NOT meaningful; it costs little and exercises every real code path.
The vocabulary puts [CLS], [SEP], "." and "?" at ids 101, 102, 1012, 1029, the delimiter ids
Grounding DINO hard-codes, and holds single characters and "##" continuation characters so that
every lowercase ASCII word tokenizes (frequent caption words as whole pieces).
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

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


def tiny_tokenizer() -> BertTokenizer:
    """An uncased BertTokenizer over `tiny_vocab()`, loaded offline from a temporary vocab.txt."""
    vocab = tiny_vocab()
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


def tiny_model(seed: int) -> GroundingDinoForObjectDetection:
    """Random weights drawn after `torch.manual_seed(seed)`: the same seed gives the same model.

    The global RNG state is restored afterwards. transformers starts the box heads' last layers at
    zero, so every box would be one of the encoder's fixed-size proposals (5% to 40% of the image
    side, mostly the smallest); the proposal head's output bias is redrawn around `_PROPOSAL_BIAS`
    so that boxes have object-like sizes, and the weights of all box heads are redrawn so that
    boxes move with the image.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(tiny_config(len(tiny_vocab())))
        proposal_head = model.model.encoder_output_bbox_embed.layers[-1]
        decoder_head = model.bbox_embed[0].layers[-1]  # shared by every decoder layer (tied weights)
        with torch.no_grad():
            for layer in (proposal_head, decoder_head):
                torch.nn.init.normal_(layer.weight, std=_BOX_HEAD_STD)
            proposal_head.bias.copy_(torch.normal(torch.tensor(_PROPOSAL_BIAS), _BOX_HEAD_STD))
        return model
