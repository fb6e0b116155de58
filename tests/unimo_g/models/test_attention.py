import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from unimo_g.diffusion.losses import attention_loss, attention_maps_per_entity
from unimo_g.models.attention import (
    CaptureAttnProcessor,
    cross_attention_resolutions,
    install_attention_capture,
    remove_attention_capture,
)
from unimo_g.models.denoiser import DENOISER_BUILDERS, DenoiserConfig, build_denoiser

TINY = DenoiserConfig(size="tiny", vae="tiny")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    timesteps = torch.tensor([100, 900])
    cond = torch.randn(2, 6, 16, generator=g)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    return latents, timesteps, cond, mask


def test_resolutions_of_the_sd15_layout():
    with torch.device("meta"):
        unet = DENOISER_BUILDERS["sd15"](768)
    resolutions = cross_attention_resolutions(unet)
    counts = {r: sum(1 for v in resolutions.values() if v == r) for r in set(resolutions.values())}
    assert counts == {64: 5, 32: 5, 16: 5, 8: 1}
    assert resolutions["up_blocks.1.attentions.2.transformer_blocks.0.attn2.processor"] == 16
    assert resolutions["mid_block.attentions.0.transformer_blocks.0.attn2.processor"] == 8


def test_capture_installs_only_on_chosen_cross_attention_layers():
    denoiser = build_denoiser(TINY, 16)
    store = install_attention_capture(denoiser.unet, [8])
    processors = denoiser.unet.attn_processors
    captured = {n for n, p in processors.items() if isinstance(p, CaptureAttnProcessor)}
    assert captured == set(store.layer_names)
    assert captured == {n for n, r in cross_attention_resolutions(denoiser.unet).items() if r == 8}
    assert all(isinstance(p, AttnProcessor2_0) for n, p in processors.items() if n not in captured)
    again = install_attention_capture(denoiser.unet, [16])  # replaces, never nests
    assert all(p.fallback.__class__ is AttnProcessor2_0 for p in denoiser.unet.attn_processors.values()
               if isinstance(p, CaptureAttnProcessor))
    assert set(again.layer_names).isdisjoint(store.layer_names)
    remove_attention_capture(denoiser.unet)
    assert all(isinstance(p, AttnProcessor2_0) for p in denoiser.unet.attn_processors.values())
    with pytest.raises(ValueError, match="resolution"):
        install_attention_capture(denoiser.unet, [32])


def test_capture_leaves_the_output_unchanged_and_keeps_masked_probabilities():
    denoiser = build_denoiser(TINY, 16).eval()
    latents, timesteps, cond, mask = _inputs()
    with torch.no_grad():
        reference = denoiser(latents, timesteps, cond, mask)
    store = install_attention_capture(denoiser.unet, [8, 16])
    with torch.no_grad():
        disabled = denoiser(latents, timesteps, cond, mask)
        assert store.maps() == []
        store.enabled = True
        enabled = denoiser(latents, timesteps, cond, mask)
    assert torch.equal(disabled, reference)
    torch.testing.assert_close(enabled, reference, atol=1e-6, rtol=1e-5)
    probs = store.maps()
    assert len(probs) == 7  # every cross-attention layer of the tiny UNet
    heads = denoiser.unet.config.attention_head_dim
    assert {tuple(p.shape) for p in probs} == {(2, heads, 64, 6), (2, heads, 16, 6)}
    for p in probs:
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
        assert p[0, :, :, 4:].abs().max() == 0  # padded tokens get no attention
    store.reset()
    assert store.maps() == []


def test_gradient_checkpointing_gives_the_same_attention_loss_gradients():
    latents, timesteps, cond, mask = _inputs()
    entity_tokens = torch.zeros(2, 1, 6, dtype=torch.bool)
    entity_tokens[:, 0, 1:3] = True
    masks = torch.zeros(2, 1, 8, 8)
    masks[:, :, 2:6, 1:5] = 1.0
    grads = []
    for checkpointing in (False, True):
        config = DenoiserConfig(size="tiny", vae="tiny", gradient_checkpointing=checkpointing)
        denoiser = build_denoiser(config, 16)
        store = install_attention_capture(denoiser.unet, [8])
        store.enabled = True
        eps = denoiser(latents, timesteps, cond, mask)
        maps = attention_maps_per_entity(store.maps(), entity_tokens, latent_hw=(8, 8))
        loss = eps.square().mean() + attention_loss(maps, masks, torch.ones(2, 1, dtype=torch.bool))
        assert denoiser.unet.is_gradient_checkpointing == checkpointing
        kept = store.maps()
        loss.backward()
        assert len(store.maps()) == len(store.layer_names)  # recomputation overwrote, did not add
        recomputed = [a is not b for a, b in zip(kept, store.maps())]
        assert all(recomputed) if checkpointing else not any(recomputed)
        grads.append({n: p.grad.clone() for n, p in denoiser.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-4, msg=name)
