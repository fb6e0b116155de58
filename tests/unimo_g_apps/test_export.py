"""The export: a folder diffusers loads alone that reproduces the trainer's denoiser, with a
non-identity condition projection."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file

from unimo_g_apps import generate as cli
from unimo_g.checkpoint_format import (
    CHECKPOINTS_DIR,
    DENOISER_DIR,
    ModelSpec,
    save_ema_weights,
    write_latest,
    write_model_spec,
)
from unimo_g.diffusion.schedule import make_train_scheduler
from unimo_g.inference import encode_unconditional, generate, load_generation_models, parse_prompt
from unimo_g.models.denoiser import DenoiserConfig, build_denoiser, save_denoiser
from unimo_g.models.encoder import EncoderConfig, build_encoder
from unimo_g.records import PromptPart

# the tiny LLaVA is 32 wide; the UNet's cross-attention 24: a real projection to fold
SPEC = ModelSpec(encoder=EncoderConfig(family="llava"),
                 denoiser=DenoiserConfig(size="tiny", vae="tiny", cross_attention_dim=24), resolution=32)
STEPS = 2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder():
    return build_encoder(SPEC.encoder, "cpu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A training output whose EMA weights differ from the raw ones, with a LayerNorm that is not
    the identity (so that folding its affine part matters)."""
    root = tmp_path_factory.mktemp("run")
    directory = root / CHECKPOINTS_DIR / "step-0000001"
    denoiser = build_denoiser(SPEC.denoiser, 32)
    norm, linear = denoiser.projection.proj
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        norm.weight.copy_(1 + 0.5 * torch.randn(32, generator=generator))
        norm.bias.copy_(0.3 * torch.randn(32, generator=generator))
        linear.bias.copy_(0.2 * torch.randn(24, generator=generator))
    save_denoiser(denoiser, directory / DENOISER_DIR, SPEC.denoiser)
    ema = {name: param.detach() * 0.9 for name, param in denoiser.named_parameters()}
    save_ema_weights(directory, ema, updates=3)
    write_model_spec(directory, SPEC)
    write_latest(root, directory.name)
    return root


@pytest.fixture(scope="module")
def export(checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model"
    assert cli.main(["--checkpoint", str(checkpoint), "--export", str(out), "--device", "cpu"]) == 0
    return out


def test_diffusers_alone_reproduces_the_trainers_denoiser(checkpoint, export, encoder):
    trained = load_generation_models(checkpoint, "cpu").denoiser  # EMA weights, as exported
    unet = UNet2DConditionModel.from_pretrained(export / "unet")  # diffusers only from here
    assert unet.config.encoder_hid_dim == 32 and unet.config.encoder_hid_dim_type == "text_proj"
    eps = json.loads((export / "unimo_g.json").read_text())["condition"]["layer_norm_eps"]
    prompts = [(PromptPart(text="a red cube and a blue ball on a table"),), (PromptPart(text="a dog"),)]
    encoded = encoder(prompts, [[], []])  # two lengths: padding, and its mask
    hidden, mask = encoded.hidden, encoded.attention_mask  # (2, T, 32), (2, T)
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 8, 8, generator=generator)
    timesteps = torch.tensor([10, 700])
    with torch.no_grad():
        expected = trained(latents, timesteps, hidden, mask)
        conditions = torch.nn.functional.layer_norm(hidden, (32,), eps=eps)
        got = unet(latents, timesteps, encoder_hidden_states=conditions, encoder_attention_mask=mask).sample
        # the projection matters: the UNet without its encoder_hid_proj's bias is another model
        unet.encoder_hid_proj.bias.zero_()
        other = unet(latents, timesteps, encoder_hidden_states=conditions, encoder_attention_mask=mask).sample
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(other, expected, atol=1e-3)


def test_the_pipeline_folder_samples_like_the_generator(export, encoder):
    index = json.loads((export / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["text_encoder"] == [None, None]
    pipe = StableDiffusionPipeline.from_pretrained(export, text_encoder=None, tokenizer=None, safety_checker=None,
                                                   feature_extractor=None, image_encoder=None)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert torch.equal(pipe.scheduler.betas, make_train_scheduler(SPEC.noise).betas)  # the training schedule
    card = (export / "README.md").read_text()
    assert "family `llava`" in card and "layer\n  `-2`" in card and "<image>" in card and "`tiny`" in card

    prompt, _ = parse_prompt("a red cube on a table")
    hidden = encoder([prompt], [[]]).hidden  # (1, T, 32)
    eps = json.loads((export / "unimo_g.json").read_text())["condition"]["layer_norm_eps"]
    embeds = torch.nn.functional.layer_norm(hidden, (32,), eps=eps)
    negative = load_file(export / "negative_prompt_embeds.safetensors")["negative_prompt_embeds"]
    assert negative.shape == (1, 1, 32)
    torch.testing.assert_close(negative, torch.nn.functional.layer_norm(encode_unconditional(encoder)[0], (32,),
                                                                         eps=eps))
    images = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative.expand(1, embeds.shape[1], -1),
                  num_inference_steps=STEPS, guidance_scale=5.0, height=32, width=32, output_type="np",
                  generator=torch.Generator().manual_seed(3)).images  # (1, 32, 32, 3) in [0, 1]
    ours = generate(load_generation_models(export, "cpu"), prompt, [], steps=STEPS, guidance=5.0, seed=3)
    assert np.abs(images[0] * 255 - ours.astype(np.float32)).max() <= 1.5


def test_generate_samples_from_an_export_as_from_its_checkpoint(checkpoint, export, tmp_path, capsys):
    from_export = load_generation_models(export, "cpu")
    assert from_export.weights == "ema" and from_export.spec == SPEC
    prompt, _ = parse_prompt("a blue ball")
    a = generate(from_export, prompt, [], steps=STEPS, seed=0)
    b = generate(load_generation_models(checkpoint, "cpu"), prompt, [], steps=STEPS, seed=0)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    out = tmp_path / "x.png"
    assert cli.main(["--checkpoint", str(export), "--prompt", "a blue ball", "--out", str(out), "--steps", "1",
                     "--device", "cpu"]) == 0
    assert out.is_file() and "ema weights" in capsys.readouterr().out
    assert cli.main(["--checkpoint", str(export), "--export", str(tmp_path / "again")]) == 2
    assert "an export already" in capsys.readouterr().err
    assert cli.main(["--checkpoint", str(checkpoint), "--export", str(tmp_path / "a"), "--export-unet",
                     str(tmp_path / "b")]) == 2


def test_export_unet_alone_folds_the_projection(checkpoint, tmp_path):
    assert cli.main(["--checkpoint", str(checkpoint), "--export-unet", str(tmp_path / "unet"), "--raw-weights"]) == 0
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    assert unet.encoder_hid_proj.weight.shape == (24, 32)
    assert not (tmp_path / "unet" / "projection.safetensors").exists()
