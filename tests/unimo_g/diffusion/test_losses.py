import pytest
import torch

from unimo_g.diffusion.losses import (
    attention_loss,
    attention_maps_per_entity,
    diffusion_loss,
    map_size,
    total_loss,
)
from unimo_g.diffusion.schedule import NoiseScheduleConfig, make_train_scheduler
from unimo_g.models.attention import install_attention_capture
from unimo_g.models.denoiser import DenoiserConfig, build_denoiser

TINY = DenoiserConfig(size="tiny", vae="tiny")


def _zero_model(noisy, timesteps, cond, cond_mask):
    return torch.zeros_like(noisy)


def test_diffusion_loss_matches_the_formula_and_is_seeded():
    scheduler = make_train_scheduler(NoiseScheduleConfig())
    latents = torch.randn(3, 4, 4, 4)
    cond, mask = torch.randn(3, 2, 8), torch.ones(3, 2, dtype=torch.bool)
    seen = {}

    def recording_model(noisy, timesteps, c, m):
        seen["noisy"] = noisy
        return torch.zeros_like(noisy)

    out = diffusion_loss(recording_model, latents, cond, mask, scheduler, torch.Generator().manual_seed(0))
    t, noise = out["timesteps"], out["noise"]
    assert t.shape == (3,) and ((t >= 0) & (t < 1000)).all()
    torch.testing.assert_close(out["loss_mse"], noise.square().mean())
    abar = scheduler.alphas_cumprod[t].view(3, 1, 1, 1)
    torch.testing.assert_close(seen["noisy"], abar.sqrt() * latents + (1 - abar).sqrt() * noise)
    again = diffusion_loss(_zero_model, latents, cond, mask, scheduler, torch.Generator().manual_seed(0))
    assert torch.equal(again["timesteps"], t) and torch.equal(again["noise"], noise)


def test_v_prediction_target():
    scheduler = make_train_scheduler(NoiseScheduleConfig(prediction_type="v_prediction"))
    latents = torch.randn(2, 4, 4, 4)
    t, noise = torch.tensor([10, 900]), torch.randn(2, 4, 4, 4)
    out = diffusion_loss(_zero_model, latents, None, None, scheduler, timesteps=t, noise=noise)
    abar = scheduler.alphas_cumprod[t].view(2, 1, 1, 1)
    velocity = abar.sqrt() * noise - (1 - abar).sqrt() * latents
    torch.testing.assert_close(out["loss_mse"], velocity.square().mean())


def _hand_built_probs():
    # layer 1: 2 heads, a 2x2 map, 3 condition tokens; entity 0 = tokens 0 and 1
    head0 = [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.6, 0.4, 0.0], [0.0, 0.0, 1.0]]  # sums 0.8 0.2 1.0 0.0
    head1 = [[0.2, 0.2, 0.6], [0.0, 0.2, 0.8], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]]  # sums 0.4 0.2 0.6 0.2
    layer1 = torch.tensor([[head0, head1]])  # (1, 2, 4, 3)
    layer2 = torch.tensor([[[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]]])  # (1, 2, 1, 3): sums 1.0, 0.0
    tokens = torch.tensor([[[True, True, False], [False, False, True]]])  # (1, K=2, 3)
    return [layer1, layer2], tokens


def test_attention_maps_per_entity_sum_entity_tokens_and_average_heads():
    probs, tokens = _hand_built_probs()
    maps = attention_maps_per_entity(probs, tokens, latent_hw=(2, 2))
    assert [tuple(m.shape) for m in maps] == [(1, 2, 2, 2), (1, 2, 1, 1)]
    torch.testing.assert_close(maps[0][0, 0], torch.tensor([[0.6, 0.2], [0.8, 0.1]]))
    torch.testing.assert_close(maps[1][0, 0], torch.tensor([[0.5]]))
    torch.testing.assert_close(maps[0][0, 1], torch.tensor([[0.4, 0.8], [0.2, 0.9]]))
    # entity tokens located before the condition was padded at the end still line up
    short = attention_maps_per_entity(probs, tokens[..., :2], latent_hw=(2, 2))
    torch.testing.assert_close(short[0][0, 0], maps[0][0, 0])


def test_attention_loss_matches_the_hand_computed_value():
    probs, tokens = _hand_built_probs()
    maps = attention_maps_per_entity(probs, tokens, latent_hw=(2, 2))
    mask = torch.zeros(1, 2, 4, 4)
    mask[0, 0, :2, :2] = 1.0  # top-left block full -> 1.0
    mask[0, 0, 0, 2] = 1.0  # top-right block one of four -> 0.25
    mask[0, 0, 2:, :2] = 1.0  # bottom-left block full -> 1.0
    mask[0, 1] = 1.0  # entity 1 is padding: must not count
    valid = torch.tensor([[True, False]])
    # layer 1: |0.6-1| + |0.2-0.25| + |0.8-1| + |0.1-0| = 0.75 over 4 cells -> 0.1875
    # layer 2: the 1x1 mask is the mean 9/16 = 0.5625, |0.5-0.5625| = 0.0625; mean of layers = 0.125
    torch.testing.assert_close(attention_loss(maps, mask, valid), torch.tensor(0.125))
    both = attention_loss(maps, mask, torch.tensor([[True, True]]))
    assert both.item() > 0.125


def test_attention_loss_without_valid_entities_is_zero_and_backpropagates():
    probs, tokens = _hand_built_probs()
    leaf = probs[0].clone().requires_grad_(True)
    maps = attention_maps_per_entity([leaf], tokens, latent_hw=(2, 2))
    loss = attention_loss(maps, torch.ones(1, 2, 8, 8), torch.zeros(1, 2, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() == 0
    with pytest.raises(ValueError):
        attention_loss([], torch.ones(1, 2, 8, 8), torch.ones(1, 2, dtype=torch.bool))


def test_map_size():
    assert map_size(64, None) == (8, 8)
    assert map_size(24, (8, 12)) == (4, 6) and map_size(6, (8, 12)) == (2, 3)
    assert map_size(30, (9, 11)) == (5, 6) and map_size(9, (9, 11)) == (3, 3)  # odd sides round up
    with pytest.raises(ValueError):
        map_size(12, None)
    with pytest.raises(ValueError):
        map_size(12, (8, 12))


def _stage2_step(denoiser, store, lambda_attn):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    cond = torch.randn(2, 6, 16, generator=g)
    mask = torch.ones(2, 6, dtype=torch.bool)
    entity_tokens = torch.zeros(2, 2, 6, dtype=torch.bool)
    entity_tokens[:, 0, 1:3] = True
    entity_tokens[0, 1, 3:5] = True
    masks = torch.zeros(2, 2, 32, 32)
    masks[:, 0, 4:20, 8:28] = 1.0
    masks[0, 1, 16:, :16] = 1.0
    valid = torch.tensor([[True, True], [True, False]])
    scheduler = make_train_scheduler(NoiseScheduleConfig())
    out = diffusion_loss(denoiser, latents, cond, mask, scheduler, timesteps=torch.tensor([300, 600]),
                         noise=torch.randn(latents.shape, generator=g))
    attn = None
    if store is not None:
        maps = attention_maps_per_entity(store.maps(), entity_tokens, latent_hw=(8, 8))
        attn = attention_loss(maps, masks, valid)
    denoiser.zero_grad()
    total_loss(out["loss_mse"], attn, lambda_attn).backward()
    return {n: p.grad.clone() for n, p in denoiser.named_parameters() if p.grad is not None}


def _capturing(config=TINY):
    denoiser = build_denoiser(config, 16)
    store = install_attention_capture(denoiser.unet, [8])
    store.enabled = True
    return denoiser, store


def test_lambda_zero_leaves_the_mse_gradient_unchanged():
    plain = build_denoiser(TINY, 16)  # default attention everywhere, no capture
    reference = _stage2_step(plain, None, 0.0)
    denoiser, store = _capturing()
    with_capture = _stage2_step(denoiser, store, 0.0)
    assert with_capture.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(with_capture[name], reference[name], atol=1e-6, rtol=1e-4, msg=name)


def test_attention_loss_gradient_reaches_the_unet():
    denoiser, store = _capturing()
    mse_only = _stage2_step(denoiser, store, 0.0)
    weighted = _stage2_step(denoiser, store, 1.0)
    captured = store.layer_names[0].removesuffix(".processor")
    to_k = f"unet.{captured}.to_k.weight"
    assert not torch.allclose(weighted[to_k], mse_only[to_k])
    assert not torch.allclose(weighted["unet.conv_in.weight"], mse_only["unet.conv_in.weight"])
    with pytest.raises(ValueError):
        total_loss(torch.tensor(1.0), None, 0.5)
