import pytest
import torch

from unimo_g.models.vae import VAE_BUILDERS, encode_images, load_vae, vae_scale_factor


def test_sd15_vae_layout_size():
    with torch.device("meta"):
        vae = VAE_BUILDERS["sd15"]()
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863  # published SD VAE size
    assert vae_scale_factor(vae) == 8 and vae.config.latent_channels == 4


def test_tiny_vae_is_frozen_deterministic_and_encodes_to_scaled_latents(tmp_path):
    a, b, c = load_vae("tiny", seed=0), load_vae("tiny", seed=0), load_vae("tiny", seed=1)
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    assert torch.equal(a.encoder.conv_in.weight, b.encoder.conv_in.weight)
    assert not torch.equal(a.encoder.conv_in.weight, c.encoder.conv_in.weight)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    latents = encode_images(a, images, generator=torch.Generator().manual_seed(0))
    assert latents.shape == (2, 4, 32 // vae_scale_factor(a), 32 // vae_scale_factor(a))
    mean = a.encode(images).latent_dist.mean * a.config.scaling_factor
    assert not torch.equal(latents, mean)  # a posterior sample, not its mean
    a.save_pretrained(tmp_path / "pipe" / "vae")
    loaded = load_vae(str(tmp_path / "pipe"), subfolder="vae")
    assert torch.equal(loaded.decoder.conv_out.weight, a.decoder.conv_out.weight)


def test_unknown_vae_path_raises(tmp_path):
    with pytest.raises(OSError):
        load_vae(str(tmp_path / "missing"))
