"""SAM loading through transformers: a `SegmentationConfig` turned into a ready model.

`config.model` is a hub id or a local directory (weights through `from_pretrained`, pinned by
`config.revision`), or a random-weight preset built from a config with `config.seed` (its masks are
not meaningful): `tiny`, a small SAM for tests and offline runs, or `random-sam-vit-base`, the
dimensions and processor settings of facebook/sam-vit-base (the same compute as the published
model, for benchmarks without the weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor

from unimo_g.config_tools import check_backend
from unimo_g.devices import resolve_device, resolve_dtype
from unimo_g.pipeline_config import SegmentationConfig

TINY_MODEL = "tiny"
SAM_VIT_BASE_MODEL = "random-sam-vit-base"
# The tiny model's input canvas (pixels, square) and ViT patch: an 8x8 embedding grid.
TINY_IMAGE_SIZE = 128
TINY_PATCH_SIZE = 16
TINY_HIDDEN_SIZE = 32
# Pinned so every worker preprocesses identically whether or not torchvision is installed.
IMAGE_PROCESSOR_BACKEND = "pil"


@dataclass(frozen=True)
class SegmentationModel:
    """A SAM model ready for inference (eval mode, on `device` in `dtype`) and its processor."""

    model: SamModel
    processor: SamProcessor
    device: torch.device
    dtype: torch.dtype


def tiny_sam_config() -> SamConfig:
    """A small SAM: 2-layer ViT on a 128 px canvas; prompt encoder and decoder sized to match."""
    vision = {
        "hidden_size": TINY_HIDDEN_SIZE,
        "output_channels": TINY_HIDDEN_SIZE,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": TINY_IMAGE_SIZE,
        "patch_size": TINY_PATCH_SIZE,
        "window_size": 4,
        "global_attn_indexes": [1],
        "num_pos_feats": TINY_HIDDEN_SIZE // 2,  # positional encoding is sin+cos: 2 * num_pos_feats channels
        "mlp_dim": 2 * TINY_HIDDEN_SIZE,
        # SAM's vision default (1e-10) would make random embeddings ~0 and masks blind to the image.
        "initializer_range": 0.02,
    }
    prompt_encoder = {
        "hidden_size": TINY_HIDDEN_SIZE,
        "image_size": TINY_IMAGE_SIZE,
        "patch_size": TINY_PATCH_SIZE,
        "mask_input_channels": 8,
    }
    mask_decoder = {
        "hidden_size": TINY_HIDDEN_SIZE,
        "mlp_dim": 2 * TINY_HIDDEN_SIZE,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "iou_head_hidden_dim": TINY_HIDDEN_SIZE,
    }
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt_encoder, mask_decoder_config=mask_decoder)


def tiny_sam_processor() -> SamProcessor:
    """The processor for `tiny_sam_config`: resize the longest side to the canvas, pad to the canvas."""
    image_processor = SamImageProcessorPil(
        size={"longest_edge": TINY_IMAGE_SIZE},
        pad_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        mask_size={"longest_edge": TINY_IMAGE_SIZE // 4},
        mask_pad_size={"height": TINY_IMAGE_SIZE // 4, "width": TINY_IMAGE_SIZE // 4},
    )
    return SamProcessor(image_processor)


def sam_vit_base_config() -> SamConfig:
    """The architecture of facebook/sam-vit-base: ViT-B image encoder (768 hidden, 12 layers, 12 heads,
    MLP 3072, 16 px patches on a 1024 px canvas, 14 x 14-patch windows with global attention in blocks 2, 5, 8,
    11, 256 output channels), SAM's prompt encoder and two-layer mask decoder (256 wide)."""
    vision = {
        "hidden_size": 768,
        "output_channels": 256,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 1024,
        "patch_size": 16,
        "window_size": 14,
        "global_attn_indexes": [2, 5, 8, 11],
        "num_pos_feats": 128,
        "mlp_dim": 3072,
        # SAM's vision default (1e-10) draws near-zero weights: random embeddings would be ~0 (masks
        # blind to the image) and CPU arithmetic on subnormal floats is many times slower.
        "initializer_range": 0.02,
    }
    prompt_encoder = {"hidden_size": 256, "image_size": 1024, "patch_size": 16, "mask_input_channels": 16}
    mask_decoder = {
        "hidden_size": 256,
        "mlp_dim": 2048,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "iou_head_hidden_dim": 256,
    }
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt_encoder, mask_decoder_config=mask_decoder)


def sam_vit_base_processor() -> SamProcessor:
    """facebook/sam-vit-base's preprocessing: longest side 1024, padded to 1024 x 1024; masks 256."""
    image_processor = SamImageProcessorPil(
        size={"longest_edge": 1024},
        pad_size={"height": 1024, "width": 1024},
        mask_size={"longest_edge": 256},
        mask_pad_size={"height": 256, "width": 256},
    )
    return SamProcessor(image_processor)


# Model name (SegmentationConfig.model) -> (config builder, processor builder) of a random-weight preset.
RANDOM_PRESETS: dict[str, tuple[Callable[[], SamConfig], Callable[[], SamProcessor]]] = {
    TINY_MODEL: (tiny_sam_config, tiny_sam_processor),
    SAM_VIT_BASE_MODEL: (sam_vit_base_config, sam_vit_base_processor),
}


def _check_fixed_canvas(processor: SamProcessor) -> None:
    """Every image must be padded to one canvas, or batch composition would change the results."""
    image_processor = processor.image_processor
    pad_size = image_processor.pad_size
    longest_edge = image_processor.size["longest_edge"]
    if not image_processor.do_pad or pad_size is None:
        raise ValueError("the SAM image processor must pad (do_pad=True) so that batching is exact")
    if pad_size["height"] < longest_edge or pad_size["width"] < longest_edge:
        raise ValueError(f"SAM pad_size {dict(pad_size)} is smaller than the resized longest edge {longest_edge}")


def _load_transformers(config: SegmentationConfig) -> SegmentationModel:
    device = resolve_device(config.runtime.device)  # before any weights move: no silent CPU fallback
    dtype = resolve_dtype(config.runtime.dtype, device)
    if config.model in RANDOM_PRESETS:
        build_config, build_processor = RANDOM_PRESETS[config.model]
        with torch.random.fork_rng(devices=[]):  # seeded build that leaves the caller's RNG alone
            torch.manual_seed(config.seed)
            model = SamModel(build_config())
        processor = build_processor()
    else:
        model = SamModel.from_pretrained(config.model, revision=config.revision)
        processor = SamProcessor.from_pretrained(
            config.model, revision=config.revision, backend=IMAGE_PROCESSOR_BACKEND
        )
    _check_fixed_canvas(processor)
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    return SegmentationModel(model=model, processor=processor, device=device, dtype=dtype)




def load_segmentation_model(config: SegmentationConfig) -> SegmentationModel:
    """The model named by `config.backend` / `config.model`, on `config.runtime.device` in its dtype."""
    check_backend("segmentation", config.backend)
    return _load_transformers(config)
