import numpy as np
import pytest
import torch

from unimo_g.diffusion.sampler import ddim_sample, decode_latents
from unimo_g.models.denoiser import DenoiserConfig, build_denoiser
from unimo_g.models.vae import load_vae, vae_scale_factor

STEPS = 4


@pytest.fixture(scope="module")
def denoiser():
    return build_denoiser(DenoiserConfig(size="tiny", vae="tiny"), 16).eval()


def _conds():
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(2, 5, 16, generator=g)
    cond_mask = torch.ones(2, 5, dtype=torch.bool)
    cond_mask[1, 3:] = False
    uncond = torch.randn(1, 7, 16, generator=g)  # longer than cond: both get padded to 7
    uncond_mask = torch.zeros(1, 7, dtype=torch.bool)
    uncond_mask[0, :2] = True
    return cond, cond_mask, uncond, uncond_mask


def _sample(denoiser, seed, guidance=5.0, unconditional=True):
    cond, cond_mask, uncond, uncond_mask = _conds()
    if not unconditional:
        uncond = uncond_mask = None
    return ddim_sample(denoiser, cond, cond_mask, uncond, uncond_mask, (2, 4, 8, 8), steps=STEPS,
                       guidance=guidance, generator=torch.Generator().manual_seed(seed))


def test_shape_and_determinism(denoiser):
    a = _sample(denoiser, 0)
    assert a.shape == (2, 4, 8, 8) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, _sample(denoiser, 0))
    assert not torch.allclose(a, _sample(denoiser, 1))


def test_guidance_one_equals_the_conditional_only_path(denoiser):
    guided = _sample(denoiser, 0, guidance=1.0)
    conditional = _sample(denoiser, 0, unconditional=False)
    torch.testing.assert_close(guided, conditional, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_sample(denoiser, 0, guidance=5.0), conditional, atol=1e-3)


def test_sampler_argument_checks(denoiser):
    cond, cond_mask, uncond, uncond_mask = _conds()
    with pytest.raises(ValueError, match="batch"):
        ddim_sample(denoiser, cond, cond_mask, uncond, uncond_mask, (3, 4, 8, 8), steps=STEPS)
    with pytest.raises(ValueError, match="together"):
        ddim_sample(denoiser, cond, cond_mask, uncond, None, (2, 4, 8, 8), steps=STEPS)


def test_decode_latents_gives_uint8_images():
    vae = load_vae("tiny")
    images = decode_latents(vae, torch.randn(2, 4, 8, 8))
    side = 8 * vae_scale_factor(vae)
    assert isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape == (2, side, side, 3)
    assert images.max() > images.min()
