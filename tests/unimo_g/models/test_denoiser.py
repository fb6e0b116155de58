import pytest
import torch
from diffusers import UNet2DConditionModel

from unimo_g.diffusion.losses import diffusion_loss
from unimo_g.diffusion.schedule import NoiseScheduleConfig, make_train_scheduler
from unimo_g.models.denoiser import (
    DENOISER_BUILDERS,
    ConditionProjection,
    Denoiser,
    DenoiserConfig,
    build_denoiser,
    load_denoiser,
    load_sd15_unet_weights,
    save_denoiser,
)

TINY = DenoiserConfig(size="tiny", vae="tiny", capture_resolutions=(8, 16))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(batch=2, hw=8, length=5, width=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, hw, hw, generator=g)
    timesteps = torch.randint(0, 1000, (batch,), generator=g)
    cond = torch.randn(batch, length, width, generator=g)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 3:] = False
    return latents, timesteps, cond, mask


def test_sd15_builder_has_the_sd15_layout_and_size():
    with torch.device("meta"):
        unet = DENOISER_BUILDERS["sd15"](768)
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964  # published SD-1.5 UNet size
    assert tuple(unet.config.block_out_channels) == (320, 640, 1280, 1280)
    assert unet.config.layers_per_block == 2 and unet.config.sample_size == 64
    assert unet.config.in_channels == 4 and unet.config.out_channels == 4
    with torch.device("meta"):
        wide = DENOISER_BUILDERS["sd15"](1024)
    assert wide.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.in_features == 1024


def test_tiny_denoiser_forward_shapes_with_and_without_projection():
    latents, timesteps, cond, mask = _inputs()
    same = build_denoiser(TINY, encoder_width=16)
    projected = build_denoiser(DenoiserConfig(size="tiny", vae="tiny", cross_attention_dim=24), encoder_width=16)
    assert isinstance(same.projection.proj, torch.nn.Identity)
    assert projected.unet.config.cross_attention_dim == 24
    bigger = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        assert same(latents, timesteps, cond, mask).shape == latents.shape
        assert projected(latents, timesteps, cond, mask).shape == latents.shape
        assert same(bigger, timesteps, cond, mask).shape == bigger.shape


def test_build_is_deterministic_for_a_seed_and_keeps_global_rng():
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    a = build_denoiser(TINY, 16)
    assert torch.equal(torch.rand(1), expected_draw)
    b = build_denoiser(TINY, 16)
    c = build_denoiser(DenoiserConfig(size="tiny", vae="tiny", seed=1), 16)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.unet.conv_in.weight, c.unet.conv_in.weight)


def test_padded_condition_positions_do_not_change_the_output():
    denoiser = build_denoiser(TINY, 16).eval()
    latents, timesteps, cond, mask = _inputs()
    other = cond.clone()
    other[0, 3:] = 100.0  # masked out for sample 0
    with torch.no_grad():
        out = denoiser(latents, timesteps, cond, mask)
        out_other = denoiser(latents, timesteps, other, mask)
        out_unmasked = denoiser(latents, timesteps, other, torch.ones_like(mask))
    torch.testing.assert_close(out, out_other, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(out[0], out_unmasked[0], atol=1e-3)


def test_condition_width_mismatch_raises():
    denoiser = build_denoiser(TINY, 16)
    latents, timesteps, cond, mask = _inputs(width=12)
    with pytest.raises(ValueError, match="do not match"):
        denoiser(latents, timesteps, cond, mask)
    with pytest.raises(ValueError, match="projection width"):
        Denoiser(ConditionProjection(16, 12), DENOISER_BUILDERS["tiny"](16))


def test_config_validation():
    with pytest.raises(ValueError, match="size"):
        DenoiserConfig(size="huge")
    with pytest.raises(ValueError, match="capture_resolutions"):
        DenoiserConfig(capture_resolutions=(16, 16))
    with pytest.raises(ValueError, match="cross_attention_dim"):
        DenoiserConfig(cross_attention_dim=0)


def test_tiny_denoiser_overfits_one_batch():
    denoiser = build_denoiser(TINY, 16)
    g = torch.Generator().manual_seed(0)
    latents, _, cond, mask = _inputs(seed=1)
    scheduler = make_train_scheduler(NoiseScheduleConfig())
    fixed_t = torch.tensor([250, 750])
    fixed_noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(2))

    def fixed_mse():
        with torch.no_grad():
            out = diffusion_loss(denoiser, latents, cond, mask, scheduler, timesteps=fixed_t, noise=fixed_noise)
        return out["loss_mse"].item()

    start = fixed_mse()
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=1e-3, weight_decay=0.0)
    for _ in range(80):
        loss = diffusion_loss(denoiser, latents, cond, mask, scheduler, generator=g)["loss_mse"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_mse() < 0.5 * start


def _attn2_kv_keys(unet):
    return sorted(
        k for k in unet.state_dict() if ".attn2.to_k." in k or ".attn2.to_v." in k
    )


def test_load_sd15_unet_weights_skips_only_cross_attention_kv_when_widths_differ(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        source = DENOISER_BUILDERS["tiny"](16)
    source.save_pretrained(tmp_path / "pipe" / "unet")  # a diffusers pipeline folder
    target = DENOISER_BUILDERS["tiny"](24)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    skipped = load_sd15_unet_weights(target, tmp_path / "pipe")
    assert skipped == _attn2_kv_keys(target) and len(skipped) == 14  # 7 cross-attention layers
    src, tgt = source.state_dict(), target.state_dict()
    for key in tgt:
        if key in skipped:
            assert torch.equal(tgt[key], before[key]), key
        else:
            assert torch.equal(tgt[key], src[key]), key


def test_init_from_with_projection_loads_every_weight(tmp_path):
    source = DENOISER_BUILDERS["tiny"](16)
    source.save_pretrained(tmp_path / "unet")
    assert load_sd15_unet_weights(DENOISER_BUILDERS["tiny"](16), tmp_path / "unet") == []
    config = DenoiserConfig(size="tiny", vae="tiny", init_from=str(tmp_path), cross_attention_dim=16)
    denoiser = build_denoiser(config, encoder_width=12)
    assert isinstance(denoiser.projection.proj, torch.nn.Sequential)
    for key, value in source.state_dict().items():
        assert torch.equal(denoiser.unet.state_dict()[key], value), key


def test_load_refuses_a_checkpoint_of_another_layout(tmp_path):
    DENOISER_BUILDERS["tiny"](16).save_pretrained(tmp_path / "unet")
    other = UNet2DConditionModel(
        sample_size=16,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=2,
        norm_num_groups=8,
        attention_head_dim=2,
        cross_attention_dim=16,
    )
    with pytest.raises(ValueError, match="layout"):
        load_sd15_unet_weights(other, tmp_path)
    with pytest.raises(FileNotFoundError):
        load_sd15_unet_weights(other, tmp_path / "nothing")


@pytest.mark.parametrize("cross_attention_dim", [None, 24])
def test_save_load_round_trip(tmp_path, cross_attention_dim):
    config = DenoiserConfig(size="tiny", vae="tiny", cross_attention_dim=cross_attention_dim)
    denoiser = build_denoiser(config, 16).eval()
    save_denoiser(denoiser, tmp_path / "ckpt", config)
    loaded = load_denoiser(tmp_path / "ckpt")
    latents, timesteps, cond, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(latents, timesteps, cond, mask), denoiser(latents, timesteps, cond, mask))
    plain = UNet2DConditionModel.from_pretrained(tmp_path / "ckpt" / "unet")  # diffusers alone
    for key, value in denoiser.unet.state_dict().items():
        assert torch.equal(plain.state_dict()[key], value), key
