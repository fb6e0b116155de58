"""The frozen image autoencoder (diffusers `AutoencoderKL`): builders, loading and encoding.

`VAE_BUILDERS` maps a size name to a function `() -> AutoencoderKL` with random weights. Real runs
point `load_vae` at a local folder or hub id (e.g. `stabilityai/sd-vae-ft-mse`, or a Stable Diffusion
folder with `subfolder="vae"`); those load with `from_pretrained`, no remote code.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import AutoencoderKL
from diffusers.utils.torch_utils import randn_tensor

SD_SCALING_FACTOR = 0.18215  # latent scale of the SD-1.x autoencoder


def vae_tiny() -> AutoencoderKL:
    """A few-thousand-parameter autoencoder, 4x downscale, 4 latent channels (tests, offline smoke runs)."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=SD_SCALING_FACTOR,
    )


def vae_sd15() -> AutoencoderKL:
    """The SD-1.x autoencoder layout (8x downscale, 4 latent channels, ~84M parameters), random init."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=SD_SCALING_FACTOR,
    )


VAE_BUILDERS: dict[str, Callable[[], AutoencoderKL]] = {"tiny": vae_tiny, "sd15": vae_sd15}


def load_vae(name_or_path: str, subfolder: str | None = None, seed: int = 0) -> AutoencoderKL:
    """A VAE in eval mode with gradients off: a builder name (random weights from `seed`) or a pretrained one.

    `name_or_path`: a key of `VAE_BUILDERS`, or a local folder / hub id readable by
    `AutoencoderKL.from_pretrained` (`subfolder`, e.g. "vae", for a full Stable Diffusion folder).
    """
    if name_or_path in VAE_BUILDERS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae = VAE_BUILDERS[name_or_path]()
    else:
        vae = AutoencoderKL.from_pretrained(name_or_path, subfolder=subfolder)
    vae.requires_grad_(False)
    return vae.eval()


def vae_scale_factor(vae: AutoencoderKL) -> int:
    """Pixels per latent cell along each axis (8 for SD)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def encode_moments(vae: AutoencoderKL, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior of `images` `(B, 3, H, W)` in [-1, 1] in scaled latent units: `(mean, std)`, each
    `(B, C, H/f, W/f)` float32, so that `mean + std * eps` is a scaled latent (shift and scaling applied)."""
    dist = vae.encode(images.to(dtype=vae.dtype)).latent_dist
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    scale = vae.config.scaling_factor
    return ((dist.mean - shift) * scale).float(), (dist.std * scale).float()


def sample_latents(mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A draw `mean + std * eps` from a posterior of `encode_moments`, eps from `generator` (as
    diffusers' `DiagonalGaussianDistribution.sample` draws it), so that pre-computed moments give
    the same latents as encoding on the fly with the same generator."""
    eps = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + std * eps


def encode_images(vae: AutoencoderKL, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scaled latents `(B, C, H/f, W/f)` of `images` `(B, 3, H, W)` in [-1, 1] (a sample of the posterior)."""
    return sample_latents(*encode_moments(vae, images), generator)
