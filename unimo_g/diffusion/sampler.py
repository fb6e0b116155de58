"""DDIM sampling with classifier-free guidance, and decoding latents to images.

UNIMO-G samples with 50 DDIM steps and guidance 5.0. The conditional and unconditional branches run
as one batched forward: both conditions are padded at the end to one length, with masks.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from unimo_g.diffusion.conditioning import match_lengths
from unimo_g.diffusion.schedule import NoiseScheduleConfig, make_sampler_scheduler

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def ddim_sample(
    model_fn: ModelFn,
    cond: torch.Tensor,
    cond_mask: torch.Tensor,
    uncond: torch.Tensor | None,
    uncond_mask: torch.Tensor | None,
    latent_shape: tuple[int, ...],
    steps: int = 50,
    guidance: float = 5.0,
    scheduler_config: NoiseScheduleConfig = NoiseScheduleConfig(),
    generator: torch.Generator | None = None,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Latents `latent_shape` = (B, C, h, w) sampled for `cond (B, T, D)`, `cond_mask (B, T)` bool.

    `uncond (1 or B, T_u, D)` / `uncond_mask`: the empty-prompt encoding; the model output is
    `eps_u + guidance · (eps_c − eps_u)`. With `uncond=None` only the conditional branch runs (no
    guidance). The initial noise (and DDIM noise when eta > 0) comes from `generator`, so a seeded
    generator gives the same latents. `noise` (`latent_shape`) replaces that initial draw, e.g. one
    seeded draw per sample of a batch, so that a sample does not depend on its batch. Returns
    float32 latents on `cond`'s device.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if latent_shape[0] != cond.shape[0]:
        raise ValueError(f"latent batch {latent_shape[0]} != condition batch {cond.shape[0]}")
    if (uncond is None) != (uncond_mask is None):
        raise ValueError("pass uncond and uncond_mask together")
    device = cond.device
    scheduler = make_sampler_scheduler(scheduler_config)
    scheduler.set_timesteps(steps, device=device)
    if noise is not None and tuple(noise.shape) != tuple(latent_shape):
        raise ValueError(f"noise {tuple(noise.shape)} != latent_shape {tuple(latent_shape)}")
    gen_device = generator.device if generator is not None else device
    if noise is None:
        noise = torch.randn(latent_shape, generator=generator, device=gen_device)
    latents = noise.to(device)
    latents = latents * scheduler.init_noise_sigma
    guided = uncond is not None
    if guided:
        cond, cond_mask, uncond, uncond_mask = match_lengths(cond, cond_mask, uncond, uncond_mask)
        both = torch.cat([cond, uncond])  # (2B, T, D)
        both_mask = torch.cat([cond_mask, uncond_mask])  # (2B, T)
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(latents, t)
        if guided:
            model_in = torch.cat([model_in, model_in])  # (2B, C, h, w)
            timesteps = t.expand(model_in.shape[0]).to(device)
            eps_c, eps_u = model_fn(model_in, timesteps, both, both_mask).float().chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        else:
            timesteps = t.expand(model_in.shape[0]).to(device)
            eps = model_fn(model_in, timesteps, cond, cond_mask).float()
        latents = scheduler.step(eps, t, latents, eta=eta, generator=generator).prev_sample
    return latents


@torch.no_grad()
def decode_latents(vae: Any, latents: torch.Tensor) -> np.ndarray:
    """uint8 RGB images `(B, H, W, 3)` from scaled latents `(B, C, h, w)` (diffusers `AutoencoderKL`)."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    latents = latents / vae.config.scaling_factor + shift
    images = vae.decode(latents.to(device=vae.device, dtype=vae.dtype)).sample  # (B, 3, H, W) in [-1, 1]
    images = ((images.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()
