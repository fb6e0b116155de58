"""CLIP image-caption similarity and image embeddings, the quantity of LAION's `similarity` column.

LAION-400M and LAION-5B filtered pairs on the cosine of the L2-normalised CLIP image and alt-text
embeddings computed with OpenAI's CLIP ViT-B/32 (LAION-400M: pairs below 0.3 dropped; LAION-5B's
English subset: below 0.28; Schuhmann et al., LAION-5B, arXiv 2210.08402, and the LAION-400M and
LAION-5B release notes); the `similarity` column of LAION's metadata, which img2dataset carries into
its outputs, is that number. `score_batch` computes the same with any `CLIPModel`.

`ScoresConfig.model` is a hub id, a local directory, or a random-weight preset built offline
(`tiny`; `random-clip-vit-base-patch32` and `random-clip-vit-large-patch14` with the published
models' dimensions, for benchmarks). Loading never trusts remote code. Scores from random weights
are NOT meaningful.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTokenizer, CLIPVisionConfig
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from unimo_g.config_tools import check_backend
from unimo_g.devices import resolve_device, resolve_dtype
from unimo_g.pipeline_config import ScoresConfig

TINY = "tiny"
IMAGE_PROCESSOR_BACKEND = "pil"  # the published (Pillow) preprocessing; the torchvision one resizes differently
# OpenAI CLIP's text context: 77 positions including the start and end tokens.
CLIP_CONTEXT_TOKENS = 77


@dataclass
class ClipScorer:
    """A loaded CLIP model with its image processor and tokenizer, ready for `score_batch`.

    `context_tokens`: captions are truncated to this many tokens (start and end token included).
    """

    model: Any  # CLIPModel in eval mode on `device`
    image_processor: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    context_tokens: int
    name: str
    revision: Optional[str] = None

    @property
    def embed_dim(self) -> int:
        """Width D of the (projected) image and text embeddings."""
        return int(self.model.config.projection_dim)


def preprocess_images(scorer: ClipScorer, images: Sequence[np.ndarray]) -> torch.Tensor:
    """`pixel_values` `(B, 3, S, S)` for `(H, W, 3)` uint8 RGB images of any sizes: the image
    processor's own resize (shortest edge, bicubic), centre crop, rescale and normalisation, per
    image, so a batch holds exactly what each image alone would."""
    pixels = scorer.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
    return pixels.to(device=scorer.device, dtype=scorer.dtype)


def tokenize(scorer: ClipScorer, captions: Sequence[str]) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` `(B, T)`, T <= `context_tokens`: longer captions are cut
    (the end token kept), shorter ones padded on the right (the text model pools at the end token,
    so padding does not change a caption's embedding)."""
    encoded = scorer.tokenizer(
        list(captions), padding="longest", truncation=True, max_length=scorer.context_tokens, return_tensors="pt"
    )
    return {key: encoded[key].to(scorer.device) for key in ("input_ids", "attention_mask")}


def _normalised(features: torch.Tensor) -> torch.Tensor:
    features = features.float()
    return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.inference_mode()
def embed_images(scorer: ClipScorer, images: Sequence[np.ndarray], forward: str = "batch") -> torch.Tensor:
    """L2-normalised image embeddings `(B, D)` float32 on the model's device (`forward` as in `score_batch`)."""
    if forward == "image" and len(images) > 1:
        return torch.cat([embed_images(scorer, [image]) for image in images])
    output = scorer.model.get_image_features(pixel_values=preprocess_images(scorer, images))
    return _normalised(output.pooler_output)


@torch.inference_mode()
def embed_texts(scorer: ClipScorer, captions: Sequence[str]) -> torch.Tensor:
    """L2-normalised text embeddings `(B, D)` float32 on the model's device."""
    output = scorer.model.get_text_features(**tokenize(scorer, captions))
    return _normalised(output.pooler_output)


def score_batch(
    scorer: ClipScorer, images: Sequence[np.ndarray], captions: Sequence[str], head: Optional[torch.nn.Module] = None,
    forward: str = "batch",
) -> tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
    """Per pair: the image-caption cosine similarity `(B,)`, the aesthetic score `(B,)` of `head`
    over the normalised image embedding (None without a head), and the normalised image embeddings
    `(B, D)`, all float32 numpy. `forward="image"`: one pair per forward, so every result is
    bit-identical whatever the batch; "batch": one forward for all."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if forward == "image" and len(images) > 1:
        parts = [score_batch(scorer, [image], [caption], head) for image, caption in zip(images, captions)]
        aesthetic = None if head is None else np.concatenate([part[1] for part in parts])
        return (np.concatenate([part[0] for part in parts]), aesthetic,
                np.concatenate([part[2] for part in parts]))
    image_embeddings = embed_images(scorer, images)
    text_embeddings = embed_texts(scorer, captions)
    similarity = (image_embeddings * text_embeddings).sum(dim=-1)
    aesthetic = None
    if head is not None:
        with torch.inference_mode():
            aesthetic = head(image_embeddings).reshape(-1).float().cpu().numpy()
    return similarity.cpu().numpy(), aesthetic, image_embeddings.cpu().numpy()


# -- random-weight presets --------------------------------------------------------------------------

def byte_level_tokenizer() -> CLIPTokenizer:
    """A real `CLIPTokenizer` over a vocabulary of single bytes (each with and without CLIP's
    end-of-word mark) and no merges: every caption tokenizes, one token per character, so
    truncation at the context length is exercised by ordinary captions. Ids: start 0, end 1."""
    characters = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *characters, *(c + "</w>" for c in characters)]:
        vocab.setdefault(token, len(vocab))
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        return CLIPTokenizer.from_pretrained(folder)  # the constructor alone maps everything to unknown in 5.x


def _random_clip(
    seed: int, vision: dict, text: dict, projection_dim: int, image_size: int, vocab_size: Optional[int] = None
) -> tuple[Any, Any, Any]:
    tokenizer = byte_level_tokenizer()
    text_config = CLIPTextConfig(
        vocab_size=vocab_size or len(tokenizer), max_position_embeddings=CLIP_CONTEXT_TOKENS,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        **text,
    )
    config = CLIPConfig(
        text_config=text_config.to_dict(),
        vision_config=CLIPVisionConfig(image_size=image_size, **vision).to_dict(),
        projection_dim=projection_dim,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    # OpenAI's preprocessing (shortest edge to the input size, bicubic, centre crop, CLIP mean/std)
    processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                      crop_size={"height": image_size, "width": image_size})
    return model, processor, tokenizer


def build_tiny(seed: int) -> tuple[Any, Any, Any]:
    """A ~0.3M-parameter CLIP: 32-pixel images, patch 8, two layers per tower, 32-wide embeddings."""
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    return _random_clip(seed, dict(patch_size=8, **layers), layers, projection_dim=32, image_size=32)


def build_vit_base_patch32(seed: int) -> tuple[Any, Any, Any]:
    """openai/clip-vit-base-patch32's dimensions (ViT-B/32 at 224 px, 12+12 layers, D = 512)."""
    return _random_clip(
        seed,
        dict(patch_size=32, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        projection_dim=512, image_size=224, vocab_size=49408,
    )


def build_vit_large_patch14(seed: int) -> tuple[Any, Any, Any]:
    """openai/clip-vit-large-patch14's dimensions (ViT-L/14 at 224 px, 24+12 layers, D = 768), the
    embedding LAION's aesthetic predictors read."""
    return _random_clip(
        seed, dict(patch_size=14, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                   num_attention_heads=16),
        dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        projection_dim=768, image_size=224, vocab_size=49408,
    )


RANDOM_PRESETS: dict[str, Callable[[int], tuple[Any, Any, Any]]] = {
    TINY: build_tiny,
    "random-clip-vit-base-patch32": build_vit_base_patch32,
    "random-clip-vit-large-patch14": build_vit_large_patch14,
}


def _load_transformers(config: ScoresConfig, dtype: torch.dtype) -> tuple[Any, Any, Any]:
    """(model, image_processor, tokenizer) from a random-weight preset, a hub id or a local directory."""
    if config.model in RANDOM_PRESETS:
        return RANDOM_PRESETS[config.model](config.seed)
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(
        config.model, revision=config.revision, trust_remote_code=False, backend=IMAGE_PROCESSOR_BACKEND
    )
    model = CLIPModel.from_pretrained(config.model, revision=config.revision, dtype=dtype, trust_remote_code=False)
    return model, processor.image_processor, processor.tokenizer


def load_clip_scorer(config: ScoresConfig) -> ClipScorer:
    """Load the CLIP model named by `config` on `config.runtime.device` in `config.runtime.dtype`, in
    eval mode. Raises RuntimeError for an absent GPU (no CPU fallback), ValueError for an unknown backend."""
    check_backend("scores", config.backend)
    device = resolve_device(config.runtime.device)
    dtype = resolve_dtype(config.runtime.dtype, device)
    model, image_processor, tokenizer = _load_transformers(config, dtype)
    model = model.to(device=device, dtype=dtype).eval()
    context = min(CLIP_CONTEXT_TOKENS, int(model.config.text_config.max_position_embeddings))
    return ClipScorer(model=model, image_processor=image_processor, tokenizer=tokenizer, device=device, dtype=dtype,
                      context_tokens=context, name=config.model, revision=config.revision)
