"""Images from multimodal prompts with a trained checkpoint: prompt parsing, model loading, DDIM + CFG.

A prompt is text with entity images inline, `a <img>photos/dog.png</img> on a beach`: each
`<img>PATH</img>` becomes `PromptPart(entity=k)` and its image the k-th entity image (k in order
of appearance; the same path twice is one entity). The unconditional branch of classifier-free
guidance is the encoding of the empty prompt (`encode_unconditional`), exactly as training's
condition dropout uses it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from unimo_g.checkpoint_format import (
    ModelSpec,
    build_vae,
    load_trained_denoiser,
    read_model_spec,
    resolve_checkpoint,
)
from unimo_g.diffusion.sampler import ddim_sample, decode_latents
from unimo_g.export_format import fold_projection, is_export, read_export, read_export_spec, write_export
from unimo_g.images.decoding import ImageRejected, decode_image
from unimo_g.images.training_geometry import open_image
from unimo_g.models.denoiser import Denoiser
from unimo_g.models.encoder import MultimodalEncoder, build_encoder
from unimo_g.models.vae import vae_scale_factor
from unimo_g.pipeline_config import DecodeConfig, EntityImageConfig
from unimo_g.records import PromptPart

IMAGE_TAG = re.compile(r"<img>(.*?)</img>", re.DOTALL)
DEFAULT_MAX_PIXELS = 64_000_000  # entity images declaring more pixels are refused before decoding
WHITE = 255  # the background of the pipeline's entity segments
ENTITY_RESAMPLE = Image.Resampling.LANCZOS  # the filter the pipeline resizes entity segments with


class PromptError(ValueError):
    """A prompt that cannot be used (bad markup, missing or unreadable entity image); names the problem."""


# ---------------------------------------------------------------------------------------------
# Prompts


def parse_prompt(text: str) -> tuple[tuple[PromptPart, ...], list[str]]:
    """`(prompt parts, entity image paths)` of a prompt with inline `<img>PATH</img>` entities.

    Paths are returned as written (stripped); entity k of the parts is `paths[k]`.
    """
    parts: list[PromptPart] = []
    paths: list[str] = []
    cursor = 0
    for match in IMAGE_TAG.finditer(text):
        if match.start() > cursor:
            parts.append(PromptPart(text=text[cursor : match.start()]))
        path = match.group(1).strip()
        if not path or "<img>" in path:
            raise PromptError(f"bad entity image tag {match.group(0)!r}: expected <img>PATH</img>")
        if path not in paths:
            paths.append(path)
        parts.append(PromptPart(entity=paths.index(path)))
        cursor = match.end()
    if cursor < len(text):
        parts.append(PromptPart(text=text[cursor:]))
    leftover = "".join(p.text for p in parts if p.text is not None)
    if "<img>" in leftover or "</img>" in leftover:
        raise PromptError(f"unbalanced <img> tag in prompt {text!r}")
    if not paths and not leftover.strip():
        raise PromptError("the prompt is empty")
    return tuple(parts), paths


def prepare_entity_image(
    image: Image.Image, config: EntityImageConfig, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """`image` (RGB) as the training data's entity images were made, so that the encoder sees what
    it saw in training: centred on a white square of side max(W, H), resized to `config.size`
    (Lanczos), encoded as `config.format` and decoded again (the trainer decodes the stored bytes).
    The pipeline's segments are square already; a user's image may not be, and the vision tower's
    centre crop would cut a non-square one."""
    image = image.convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side), (WHITE,) * 3)
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    if side != config.size:
        square = square.resize((config.size, config.size), resample=ENTITY_RESAMPLE)
    buffer = io.BytesIO()
    if config.format == "WEBP":
        square.save(buffer, format="WEBP", quality=config.webp_quality)
    else:
        square.save(buffer, format="PNG", compress_level=config.png_compress_level)
    return open_image(buffer.getvalue(), max_pixels)


def load_entity_image(
    path: str | Path, config: Optional[EntityImageConfig] = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """An entity image file as RGB (transparency on white, EXIF orientation applied, pixel count
    checked on the header first), prepared as the training data's entity images were
    (`prepare_entity_image` with `config`, the checkpoint's `ModelSpec.entity_image`; None: as
    read). Raises `PromptError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PromptError(f"entity image not found: {path}") from None
    except OSError as err:
        raise PromptError(f"cannot read entity image {path}: {err.strerror or err}") from None
    limits = DecodeConfig(max_pixels=max_pixels, min_side=1, max_aspect_ratio=float("inf"))
    try:
        image = Image.fromarray(decode_image(data, limits).pixels)
    except ImageRejected as err:
        raise PromptError(f"entity image {path} is unusable: {err}") from None
    return image if config is None else prepare_entity_image(image, config, max_pixels)


# ---------------------------------------------------------------------------------------------
# Conditions


@torch.no_grad()
def encode_unconditional(encoder: MultimodalEncoder) -> tuple[torch.Tensor, torch.Tensor]:
    """The empty prompt's encoding: `hidden (1, T_u, D)` float32 and `mask (1, T_u)` bool, on the
    encoder's device.

    The empty prompt is what the tokenizer makes of "" (LLaMA-style tokenizers: the BOS token);
    a tokenizer that adds nothing (Qwen2) gets its pad token, so that the condition is never empty.
    """
    tokenizer = encoder.processor.tokenizer
    input_ids = tokenizer([""], return_tensors="pt")["input_ids"]  # (1, T_u)
    if input_ids.shape[1] == 0:
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer adds no token to an empty prompt and has no pad token")
        input_ids = torch.tensor([[tokenizer.pad_token_id]])
    input_ids = input_ids[:, : encoder.config.max_length].to(encoder.device)
    attention_mask = torch.ones_like(input_ids)
    states = encoder.vlm.model(
        input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False
    ).hidden_states
    hidden = states[encoder.config.layer].float()  # (1, T_u, D)
    return hidden, attention_mask.bool()


# ---------------------------------------------------------------------------------------------
# Models


@dataclass
class GenerationModels:
    """A trained checkpoint ready to sample: frozen encoder and VAE, the denoiser (eval mode), the
    empty-prompt encoding, and the spec they were built from. `weights` is "ema" or "raw"."""

    spec: ModelSpec
    encoder: MultimodalEncoder
    vae: torch.nn.Module
    denoiser: Denoiser
    uncond: tuple[torch.Tensor, torch.Tensor]
    weights: str
    device: torch.device


def load_generation_models(
    checkpoint: str | Path, device: str | torch.device, use_ema: bool = True
) -> GenerationModels:
    """Rebuild a model on `device` from a checkpoint directory, a training output or an export
    folder (`unimo_g.export_format`; it holds one set of weights, so `use_ema` does not apply)."""
    device = torch.device(device)
    if is_export(checkpoint):
        exported = read_export(checkpoint)
        spec, denoiser, vae, weights, where = (exported.spec, exported.denoiser, exported.vae, exported.weights,
                                               Path(checkpoint))
    else:
        where = resolve_checkpoint(checkpoint)
        spec = read_model_spec(where)
        vae = build_vae(spec.denoiser)
        denoiser, weights = load_trained_denoiser(where, use_ema)
    encoder = build_encoder(spec.encoder, device)
    if denoiser.encoder_width != encoder.hidden_size:
        raise ValueError(
            f"{where}: the denoiser expects {denoiser.encoder_width}-wide conditions but the encoder gives "
            f"{encoder.hidden_size}"
        )
    denoiser = denoiser.to(device)
    return GenerationModels(spec, encoder, vae.to(device), denoiser, encode_unconditional(encoder), weights, device)


def read_spec(path: str | Path) -> ModelSpec:
    """The `ModelSpec` of a checkpoint, training output or export folder."""
    return read_export_spec(path) if is_export(path) else read_model_spec(resolve_checkpoint(path))


@torch.no_grad()
def generate(
    models: GenerationModels,
    prompt: Sequence[PromptPart],
    entity_images: Sequence[Image.Image],
    steps: int = 50,
    guidance: float = 5.0,
    seed: int = 0,
    resolution: Optional[int] = None,
) -> np.ndarray:
    """One image `(R, R, 3)` uint8 for `prompt` (DDIM, classifier-free guidance against the empty
    prompt). The same seed gives the same image. R defaults to the training resolution."""
    return generate_batch(models, [prompt], [entity_images], [seed], steps, guidance, resolution)[0]


@torch.no_grad()
def generate_batch(
    models: GenerationModels,
    prompts: Sequence[Sequence[PromptPart]],
    entity_images: Sequence[Sequence[Image.Image]],
    seeds: Sequence[int],
    steps: int = 50,
    guidance: float = 5.0,
    resolution: Optional[int] = None,
) -> np.ndarray:
    """Images `(B, R, R, 3)` uint8, one per prompt, sampled together. Sample b's initial noise comes
    from `seeds[b]` alone, so it is the image `generate` makes with that seed (up to the float
    rounding of a batched forward)."""
    if not len(prompts) == len(entity_images) == len(seeds) or not prompts:
        raise ValueError(f"need as many prompts, entity-image lists and seeds, got {len(prompts)}, "
                         f"{len(entity_images)}, {len(seeds)}")
    resolution = resolution or models.spec.resolution
    factor = vae_scale_factor(models.vae)
    if resolution % factor:
        raise ValueError(f"resolution {resolution} is not a multiple of the VAE's downscale {factor}")
    encoded = models.encoder([tuple(p) for p in prompts], [list(images) for images in entity_images])
    channels = models.denoiser.unet.config.in_channels
    shape = (1, channels, resolution // factor, resolution // factor)
    noise = torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for seed in seeds])
    latents = ddim_sample(
        models.denoiser,
        encoded.hidden,
        encoded.attention_mask,
        *models.uncond,
        latent_shape=tuple(noise.shape),
        steps=steps,
        guidance=guidance,
        scheduler_config=models.spec.noise,
        noise=noise,
    )
    return decode_latents(models.vae, latents)  # (B, R, R, 3)


def export_unet(checkpoint: str | Path, out_dir: str | Path, use_ema: bool = True) -> tuple[Path, str]:
    """Write the trained UNet alone as a diffusers model folder, its condition projection folded into
    `encoder_hid_proj` (`unimo_g.export_format.fold_projection`). Returns `(out_dir, "ema" | "raw")`."""
    denoiser, weights = load_trained_denoiser(resolve_checkpoint(checkpoint), use_ema)
    fold_projection(denoiser)[0].save_pretrained(Path(out_dir), safe_serialization=True)
    return Path(out_dir), weights


def export_model(
    checkpoint: str | Path, out_dir: str | Path, use_ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[Path, str]:
    """Write a checkpoint as a folder diffusers loads alone (`unimo_g.export_format`: pipeline folder with
    UNet, VAE, scheduler, the empty prompt's conditions and a model card). The encoder runs once on
    `device`, for the empty prompt. Returns `(out_dir, "ema" | "raw")`."""
    directory = resolve_checkpoint(checkpoint)
    spec = read_model_spec(directory)
    denoiser, weights = load_trained_denoiser(directory, use_ema)
    encoder = build_encoder(spec.encoder, torch.device(device))
    write_export(out_dir, spec, denoiser, build_vae(spec.denoiser), weights, encode_unconditional(encoder))
    return Path(out_dir), weights
