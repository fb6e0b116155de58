"""Training losses: ε-MSE (stage 1) and the visual-enhancement attention loss (stage 2).

UNIMO-G's stage-2 objective is `L = L_mse + λ · L_attn`, with
`L_attn = mean_k |CA(z_t, v_k) − M_k|`: an L1 between the cross-attention map of entity k's visual
tokens and that entity's segmentation mask, resized to the map.

CA(z_t, v_k) here is, for every latent position, the attention probability summed over the
condition positions of entity k's visual tokens and averaged over heads: the fraction of that
position's attention mass that goes to the entity, in [0, 1]. A sum (not a mean over the entity's
tokens) is what can match a binary mask: an entity has many visual tokens (e.g. 576 for a
LLaVA-style encoder) among T condition tokens, so a per-token mean is about 1/T and could never
approach 1 inside the mask, while the summed mass can be 1 inside and 0 outside.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _generator_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback


def diffusion_loss(
    model_fn: ModelFn,
    latents: torch.Tensor,
    cond: torch.Tensor,
    cond_mask: torch.Tensor,
    scheduler: DDPMScheduler,
    generator: torch.Generator | None = None,
    timesteps: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The denoising MSE on `latents (B, C, h, w)` at uniformly drawn timesteps.

    Draws `timesteps (B,)` uniform in [0, num_train_timesteps) and Gaussian `noise` from `generator`
    unless given, noises the latents with `scheduler`, and regresses the model output on the noise
    (ε-prediction) or the velocity (v-prediction), in float32.
    Returns {"loss_mse": scalar, "timesteps": (B,), "noise": (B, C, h, w)}.
    """
    batch = latents.shape[0]
    gen_device = _generator_device(generator, latents.device)
    if timesteps is None:
        high = scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, high, (batch,), generator=generator, device=gen_device)
    if noise is None:
        noise = torch.randn(latents.shape, generator=generator, device=gen_device, dtype=latents.dtype)
    timesteps = timesteps.to(latents.device)
    noise = noise.to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)  # (B, C, h, w)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"unsupported prediction_type {prediction_type!r}")
    pred = model_fn(noisy, timesteps, cond, cond_mask)
    loss = F.mse_loss(pred.float(), target.float())
    return {"loss_mse": loss, "timesteps": timesteps, "noise": noise}


def map_size(tokens: int, latent_hw: tuple[int, int] | None) -> tuple[int, int]:
    """(h, w) of a layer's feature map with `tokens` = h·w positions, for UNet input latents `latent_hw`.

    The UNet halves both sides (rounding up) per level; without `latent_hw` the map must be square.
    """
    if latent_hw is None:
        side = round(tokens**0.5)
        if side * side != tokens:
            raise ValueError(f"{tokens} attention positions are not a square map; pass latent_hw")
        return side, side
    h, w = latent_hw
    while h * w > tokens:
        h, w = -(-h // 2), -(-w // 2)
    if h * w != tokens:
        raise ValueError(f"{tokens} attention positions do not match a downsampling of latents {latent_hw}")
    return h, w


def attention_maps_per_entity(
    probs: Sequence[torch.Tensor],
    entity_tokens: torch.Tensor,
    latent_hw: tuple[int, int] | None = None,
) -> list[torch.Tensor]:
    """CA(z_t, v_k) for each captured layer: a list of `(B, K, h, w)` float32 maps in [0, 1].

    probs: per layer `(B, heads, HW, T)` cross-attention probabilities (HW row-major).
    entity_tokens: `(B, K, T_e)` bool, True at the condition positions of entity k's visual tokens;
        T_e <= T (conditions padded at the end after the tokens were located).
    latent_hw: (h, w) of the UNet's input latents; None for square latents.
    """
    out = []
    for layer_probs in probs:
        batch, _, tokens, length = layer_probs.shape
        if entity_tokens.shape[0] != batch or entity_tokens.shape[-1] > length:
            raise ValueError(
                f"entity_tokens {tuple(entity_tokens.shape)} do not fit attention probs {tuple(layer_probs.shape)}"
            )
        selector = F.pad(entity_tokens, (0, length - entity_tokens.shape[-1]), value=False).float()  # (B, K, T)
        mean_heads = layer_probs.float().mean(dim=1)  # (B, HW, T)
        maps = torch.einsum("bnt,bkt->bkn", mean_heads, selector)  # (B, K, HW)
        h, w = map_size(tokens, latent_hw)
        out.append(maps.reshape(batch, selector.shape[1], h, w))
    return out


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`masks (B, K, H, W)` in [0, 1] resized to `size`: area averaging when shrinking, bilinear otherwise."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.float()
    shrink = masks.shape[-2] >= size[0] and masks.shape[-1] >= size[1]
    if shrink:
        return F.interpolate(masks.float(), size=size, mode="area")
    return F.interpolate(masks.float(), size=size, mode="bilinear", align_corners=False)


def attention_loss(maps: Sequence[torch.Tensor], masks: torch.Tensor, entity_valid: torch.Tensor) -> torch.Tensor:
    """L_attn: mean over layers and valid (b, k) of mean_{h,w} |CA_k − resize(M_k)|.

    maps: per layer `(B, K, h, w)` from `attention_maps_per_entity`.
    masks: `(B, K, H, W)` entity masks in [0, 1] on the latent/image frame of the target image.
    entity_valid: `(B, K)` bool; padding entities, dropped conditions and text-only samples are False.
    With no valid entity the loss is 0 and still connected to the maps (backward works, grads are 0).
    """
    if not maps:
        raise ValueError("attention_loss needs at least one captured attention map")
    valid = entity_valid.to(device=maps[0].device, dtype=torch.float32)  # (B, K)
    count = valid.sum()
    per_layer = []
    for layer_maps in maps:
        target = resize_masks(masks.to(layer_maps.device), tuple(layer_maps.shape[-2:]))  # (B, K, h, w)
        error = (layer_maps.float() - target).abs().mean(dim=(-2, -1))  # (B, K)
        per_layer.append((error * valid).sum() / count.clamp(min=1.0))
    return torch.stack(per_layer).mean()


def total_loss(mse: torch.Tensor, attn: torch.Tensor | None, lambda_attn: float) -> torch.Tensor:
    """`mse + lambda_attn · attn`; exactly `mse` when `lambda_attn` is 0 (then `attn` may be None)."""
    if lambda_attn < 0:
        raise ValueError(f"lambda_attn must be >= 0, got {lambda_attn}")
    if lambda_attn == 0:
        return mse
    if attn is None:
        raise ValueError(f"lambda_attn is {lambda_attn} but no attention loss was computed")
    return mse + lambda_attn * attn
