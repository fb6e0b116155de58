"""Model FLOPs of the training step's parts, counted with `torch.utils.flop_counter.FlopCounterMode`.

FlopCounterMode counts matrix products, convolutions and attention kernels (2 FLOPs per
multiply-add), forward and backward; elementwise work and normalisation are not counted: the usual
"model FLOPs" that MFU is defined on. On the meta device shapes alone are enough (no weights, no
compute), which counts full-size models on any machine: the UNet and VAE directly, and LLaVA-1.5-7B
layer by layer (its forward reads tensor values, which meta tensors do not have).

`build_random_llava` builds the LLaVA-1.5-7B layout with random weights (the same compute as the
released weights, which cannot be downloaded here), on a GPU for timing or on the meta device for
counting.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from trainers.data import SampleBatch
from unimo_g.devices import resolve_dtype
from unimo_g.models.denoiser import DENOISER_BUILDERS
from unimo_g.models.encoder import EncoderConfig, LlavaEncoder, MultimodalEncoder
from unimo_g.models.vae import VAE_BUILDERS, encode_images, vae_scale_factor

# LLaVA-1.5-7B: CLIP ViT-L/14 at 336 px (576 visual tokens) -> 2-layer GELU projector -> LLaMA-7B.
LLAVA_7B_VISION = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
}
LLAVA_7B_TEXT = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32064,
    "max_position_embeddings": 4096,
}


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# torch's table lacks the CPU flash-attention kernels that scaled_dot_product_attention takes on a CPU;
# the formulas are those of the CUDA kernels, so CPU and GPU counts agree.
EXTRA_FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


def count_flops(fn: Callable, *args, **kwargs) -> tuple[int, object]:
    """(FLOPs counted while `fn(*args, **kwargs)` ran, its return value)."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter:
        value = fn(*args, **kwargs)
    return int(counter.get_total_flops()), value


def build_random_llava(
    config: EncoderConfig, device: torch.device, vision: Optional[dict] = None, text: Optional[dict] = None
) -> MultimodalEncoder:
    """A LLaVA encoder of the LLaVA-1.5-7B layout (`vision` / `text` replace config values) with
    random weights from `config.seed`, built on `device` in `config.dtype`. Its tokenizer is the
    offline tiny one: captions become more, shorter tokens than with LLaMA's; visual tokens are exact."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from unimo_g.models.tiny_vlm import build_tokenizer

    vision = {**LLAVA_7B_VISION, **(vision or {})}
    text = {**LLAVA_7B_TEXT, **(text or {})}
    tokenizer = build_tokenizer(["[PAD]", "[UNK]", "<s>", "<image>"], bos_token="<s>")
    side = vision["image_size"]
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=tokenizer,
        patch_size=vision["patch_size"],
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
    )
    special = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": None}
    llava = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(**text, **special),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    dtype = resolve_dtype(config.dtype, device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.device(device):
        torch.manual_seed(config.seed)
        model = LlavaForConditionalGeneration._from_config(llava, dtype=dtype).eval()
    return LlavaEncoder(model, processor, config)


def full_encoder_flops(batches: Sequence[SampleBatch], max_length: int) -> dict:
    """FLOPs per sample the LLaVA-1.5-7B encoder spends on `batches` (`trainers.data.collate`
    batches; only their `prompts` and `entity_images` are read), counted on the meta device: the
    vision tower + projector once per entity image, and the language model on each batch's prompts
    grouped by their number of entity images, each group padded to its longest prompt, as
    `MultimodalEncoder.forward` runs it (`per_sample_unpadded`: each prompt alone). The language
    model counts as its number of layers times one decoder layer (its embedding lookup and final
    norm are not matrix products).
    `padded_tokens_per_sample`: the condition length the UNet then sees (at most `max_length`)."""
    encoder = build_random_llava(EncoderConfig(model="random-full", dtype="bf16"), torch.device("meta"))
    model, lm = encoder.vlm.model, encoder.vlm.model.language_model
    side = encoder.processor.image_processor.crop_size["height"]
    with torch.no_grad():
        pixels = torch.zeros(1, 3, side, side, device="meta", dtype=encoder.dtype)
        per_image, _ = count_flops(model.get_image_features, pixel_values=pixels)
    layer_flops: dict[tuple[int, int], int] = {}

    def lm_flops(batch: int, length: int) -> int:
        if (batch, length) not in layer_flops:
            hidden = torch.zeros(batch, length, lm.config.hidden_size, device="meta", dtype=encoder.dtype)
            positions = torch.arange(length, device="meta")[None]
            with torch.no_grad():
                rotary = lm.rotary_emb(hidden, positions)
                layer_flops[batch, length], _ = count_flops(
                    lm.layers[0], hidden, attention_mask=None, position_embeddings=rotary, position_ids=positions
                )
        return len(lm.layers) * layer_flops[batch, length]

    padded = unpadded = images = samples = tokens = cond_tokens = 0
    for batch in batches:
        texts, pools = [], []
        for prompt, pool in zip(batch.prompts, batch.entity_images, strict=True):
            text, order = encoder.render(prompt, len(pool))
            texts.append(text)
            pools.append([pool[k].convert("RGB") for k in order])
        call = {"text": texts, "padding": "longest", "return_tensors": "pt"}
        if any(pools):
            call["images"] = pools
        mask = encoder.processor(**call)["attention_mask"]  # (B, L)
        lengths = [int(n) for n in mask.sum(1)]
        groups: dict[int, list[int]] = {}  # entity images shown -> lengths of those prompts
        for pool, length in zip(pools, lengths):
            groups.setdefault(len(pool), []).append(length)
        # prompts are not truncated before the forward
        padded += sum(lm_flops(len(group), max(group)) for group in groups.values())
        unpadded += sum(lm_flops(1, n) for n in lengths)
        images += sum(len(pool) for pool in pools)
        samples += len(texts)
        tokens += sum(lengths)
        cond_tokens += len(texts) * min(max(lengths), max_length)
    vision = images * per_image
    return {
        "per_sample_padded": (padded + vision) / samples,
        "per_sample_unpadded": (unpadded + vision) / samples,
        "vision_per_image": per_image,
        "tokens_per_sample": tokens / samples,
        "padded_tokens_per_sample": cond_tokens / samples,
        "images_per_sample": images / samples,
    }


def unet_train_flops(size: str, cross_dim: int, latent_shape: Sequence[int], cond_tokens: int) -> int:
    """FLOPs of one UNet forward + backward of `DENOISER_BUILDERS[size]` on latents `(B, C, h, w)` with
    `cond_tokens` condition tokens of width `cross_dim`, counted on the meta device."""
    with torch.device("meta"):
        unet = DENOISER_BUILDERS[size](cross_dim)
        latents = torch.zeros(tuple(latent_shape))
        cond = torch.zeros(latent_shape[0], cond_tokens, cross_dim)
        mask = torch.ones(latent_shape[0], cond_tokens, dtype=torch.bool)
        timesteps = torch.zeros(latent_shape[0], dtype=torch.long)

    def step() -> None:
        pred = unet(latents, timesteps, encoder_hidden_states=cond, encoder_attention_mask=mask).sample
        F.mse_loss(pred.float(), latents).backward()

    return count_flops(step)[0]


def vae_encode_flops(vae_name: str, resolution: int) -> tuple[int, tuple[int, ...]]:
    """(FLOPs of `encode_images` on one R x R image with the `VAE_BUILDERS[vae_name]` layout, counted on
    the meta device; the latent shape `(1, C, h, w)`)."""
    with torch.device("meta"):
        vae = VAE_BUILDERS[vae_name]().requires_grad_(False)
    side = resolution // vae_scale_factor(vae)
    pixels = torch.zeros(1, 3, resolution, resolution, device="meta")
    flops, _ = count_flops(encode_images, vae, pixels, torch.Generator().manual_seed(0))
    return flops, (1, vae.config.latent_channels, side, side)
