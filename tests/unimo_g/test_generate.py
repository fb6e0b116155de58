"""Generation from a checkpoint written in the trainer's layout, built here with unimo_g alone."""

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image

from unimo_g import generate as cli
from unimo_g.checkpoint_format import (
    CHECKPOINTS_DIR,
    DENOISER_DIR,
    ModelSpec,
    save_ema_weights,
    write_latest,
    write_model_spec,
)
from unimo_g.generation import (
    PromptError,
    encode_unconditional,
    generate,
    load_entity_image,
    load_generation_models,
    parse_prompt,
)
from unimo_g.models.denoiser import DenoiserConfig, build_denoiser, save_denoiser
from unimo_g.models.encoder import EncoderConfig, build_encoder
from unimo_g.records import PromptPart

SPEC = ModelSpec(encoder=EncoderConfig(family="llava"), denoiser=DenoiserConfig(size="tiny", vae="tiny"),
                 resolution=32)
STEPS = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(training output with one checkpoint, its raw parameters, its EMA parameters, which differ)."""
    root = tmp_path_factory.mktemp("run")
    checkpoint = root / CHECKPOINTS_DIR / "step-0000001"
    denoiser = build_denoiser(SPEC.denoiser, 32)
    save_denoiser(denoiser, checkpoint / DENOISER_DIR, SPEC.denoiser)
    raw = {name: param.detach().clone() for name, param in denoiser.named_parameters()}
    ema = {name: param + 0.01 for name, param in raw.items()}
    save_ema_weights(checkpoint, ema, updates=1)
    write_model_spec(checkpoint, SPEC)
    write_latest(root, checkpoint.name)
    return root, raw, ema


@pytest.fixture(scope="module")
def output(run) -> Path:
    return run[0]


@pytest.fixture(scope="module")
def entity(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "dog.png"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(path)
    return path


def text(s):
    return PromptPart(text=s)


def test_parse_prompt():
    assert parse_prompt("a dog on a beach") == ((text("a dog on a beach"),), [])
    parts, paths = parse_prompt("a <img> dog.png </img> and <img>cat.png</img> with <img>dog.png</img>")
    assert paths == ["dog.png", "cat.png"]
    assert parts == (text("a "), PromptPart(entity=0), text(" and "), PromptPart(entity=1), text(" with "),
                     PromptPart(entity=0))
    assert parse_prompt("<img>x.png</img>") == ((PromptPart(entity=0),), ["x.png"])
    for bad, match in (("a <img>x.png on grass", "unbalanced"), ("a </img>", "unbalanced"),
                       ("a <img></img>", "bad entity image tag"), ("  ", "empty")):
        with pytest.raises(PromptError, match=match):
            parse_prompt(bad)


def test_load_entity_image(tmp_path):
    with pytest.raises(PromptError, match="not found: .*missing.png"):
        load_entity_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(PromptError, match="bad.png is unusable"):
        load_entity_image(tmp_path / "bad.png")
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    clear = load_entity_image(tmp_path / "clear.png")
    assert clear.mode == "RGB" and clear.getpixel((0, 0)) == (255, 255, 255)  # transparency on white
    Image.new("RGB", (50, 50)).save(tmp_path / "big.png")
    with pytest.raises(PromptError, match="too_many_pixels"):
        load_entity_image(tmp_path / "big.png", max_pixels=2499)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_unconditional_encoding_is_the_empty_prompt(family):
    encoder = build_encoder(EncoderConfig(family=family), "cpu")
    hidden, mask = encode_unconditional(encoder)
    assert hidden.shape == (1, 1, encoder.hidden_size) and mask.tolist() == [[True]]
    assert hidden.dtype == torch.float32 and torch.isfinite(hidden).all()
    if family == "llava":  # BOS only: a causal LM's first state of any prompt
        prompted = encoder([(text("a dog"),)], [[]]).hidden
        torch.testing.assert_close(hidden[0, 0], prompted[0, 0])


def _same_parameters(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> bool:
    parameters = dict(module.named_parameters())
    return parameters.keys() == expected.keys() and all(torch.equal(parameters[n], expected[n]) for n in expected)


def test_generate_is_seeded_and_uses_the_ema_weights(run, entity):
    output, raw_weights, ema_weights = run
    models = load_generation_models(output, "cpu")
    assert models.weights == "ema" and not models.denoiser.training
    assert _same_parameters(models.denoiser, ema_weights)
    prompt, paths = parse_prompt(f"a <img>{entity}</img> on grass")
    images = [load_entity_image(p) for p in paths]
    a = generate(models, prompt, images, steps=STEPS, seed=0)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, generate(models, prompt, images, steps=STEPS, seed=0))
    assert not np.array_equal(a, generate(models, prompt, images, steps=STEPS, seed=1))
    raw = load_generation_models(output, "cpu", use_ema=False)
    assert raw.weights == "raw" and _same_parameters(raw.denoiser, raw_weights)
    assert not np.array_equal(a, generate(raw, prompt, images, steps=STEPS, seed=0))
    with pytest.raises(ValueError, match="multiple"):
        generate(models, prompt, images, steps=STEPS, resolution=30)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_cli_writes_a_png_and_refuses_bad_input(output, entity, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(entity.parent)  # entity paths are relative to the working directory
    out = tmp_path / "image.png"
    assert cli.main(["--checkpoint", str(output), "--prompt", "a <img>dog.png</img> on grass", "--out", str(out),
                     "--steps", str(STEPS), "--device", "cpu"]) == 0
    with Image.open(out) as image:
        assert image.size == (32, 32)
    capsys.readouterr()
    assert cli.main(["--checkpoint", str(output), "--prompt", "a <img>cat.png</img>", "--out", str(out)]) == 2
    assert "cat.png" in _error_line(capsys)
    assert cli.main(["--checkpoint", str(output), "--prompt", "a dog"]) == 2
    assert "--export-unet" in _error_line(capsys)
    assert cli.main(["--checkpoint", str(tmp_path / "nothing"), "--prompt", "a", "--out", str(out)]) == 2
    assert "nothing" in _error_line(capsys)
    assert cli.main(["--checkpoint", str(output), "--prompt", "a", "--out", str(out), "--steps", "0"]) == 2
    assert "--steps" in _error_line(capsys)


def test_export_unet_loads_in_diffusers_alone(output, tmp_path, capsys):
    assert cli.main(["--checkpoint", str(output), "--export-unet", str(tmp_path / "unet")]) == 0
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    ema_model = load_generation_models(output, "cpu").denoiser.unet
    assert all(torch.equal(p, q) for p, q in zip(unet.state_dict().values(), ema_model.state_dict().values()))
    assert unet.config.cross_attention_dim == 32
