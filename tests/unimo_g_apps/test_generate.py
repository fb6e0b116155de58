"""Generation from a checkpoint written in the trainer's layout, built here with unimo_g alone."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image

from unimo_g_apps import generate as cli
from unimo_g.checkpoint_format import (
    CHECKPOINTS_DIR,
    DENOISER_DIR,
    ModelSpec,
    save_ema_weights,
    write_latest,
    write_model_spec,
)
from unimo_g.inference import (
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
    new = str(tmp_path / "new.png")
    assert cli.main(["--checkpoint", str(output), "--prompt", "a <img>cat.png</img>", "--out", new]) == 2
    assert "cat.png" in _error_line(capsys)
    assert cli.main(["--checkpoint", str(output), "--prompt", "a dog"]) == 2
    assert "--export-unet" in _error_line(capsys)
    assert cli.main(["--checkpoint", str(tmp_path / "nothing"), "--prompt", "a", "--out", new]) == 2
    assert "nothing" in _error_line(capsys)
    assert cli.main(["--checkpoint", str(output), "--prompt", "a", "--out", new, "--steps", "0"]) == 2
    assert "--steps" in _error_line(capsys)
    assert not Path(new).exists()


def _refused(capsys, argv: list[str], *expected: str) -> None:
    """`argv` is refused by the argument checks (before any model or image is loaded): exit code 2
    and one error line holding each of `expected`."""
    with pytest.raises(cli.UsageError):
        cli.parse_args(argv)
    assert cli.main(argv) == 2
    line = _error_line(capsys)
    assert all(part in line for part in expected), line


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_cli_never_writes_over_an_entity_image(output, tmp_path, monkeypatch, capsys, force):
    monkeypatch.chdir(tmp_path)  # entity paths are relative to the working directory
    (tmp_path / "photos").mkdir()
    cat = tmp_path / "photos" / "cat.png"
    Image.new("RGB", (40, 30), (90, 90, 90)).save(cat)
    (tmp_path / "link.png").symlink_to(cat)
    os.link(cat, tmp_path / "hardlink.png")
    photo = cat.read_bytes()
    prompt = "a <img>dog.png</img> and a <img>photos/cat.png</img> on a sofa"
    for out in ("photos/cat.png", "./photos/cat.png", "photos/../photos/cat.png", str(cat), "link.png",
                "hardlink.png"):
        _refused(capsys, ["--checkpoint", str(output), "--prompt", prompt, "--out", out, *force],
                 f"--out {out} is the entity image photos/cat.png", "another file")
    # the same file under another name, the other way round: the prompt names the link, --out the photo
    _refused(capsys, ["--checkpoint", str(output), "--prompt", "a <img>hardlink.png</img>", "--out", str(cat),
                      *force], "is the entity image hardlink.png")
    # an entity image that does not exist yet is still an input: refused before its absence is reported
    _refused(capsys, ["--checkpoint", str(output), "--prompt", prompt, "--out", "dog.png", *force],
             "is the entity image dog.png")
    assert cat.read_bytes() == photo and not (tmp_path / "dog.png").exists()


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_cli_never_writes_inside_the_checkpoint(output, tmp_path, monkeypatch, capsys, force):
    monkeypatch.chdir(tmp_path)
    checkpoint = output / CHECKPOINTS_DIR / "step-0000001"
    before = sorted(p.relative_to(output) for p in output.rglob("*"))
    (tmp_path / "run").symlink_to(output)
    for target, out in ((output, output / "image.png"), (output, checkpoint / "image.png"),
                        (checkpoint, checkpoint / "model.png"), (tmp_path / "run", output / "image.png"),
                        (output, tmp_path / "run" / "sub" / "image.png")):
        _refused(capsys, ["--checkpoint", str(target), "--prompt", "a dog", "--out", str(out), *force],
                 f"--out {out} is inside the checkpoint folder {target}")
    assert sorted(p.relative_to(output) for p in output.rglob("*")) == before


def test_cli_replaces_an_existing_file_only_with_force(output, entity, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(entity.parent)
    out = tmp_path / "old.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out)
    old = out.read_bytes()
    argv = ["--checkpoint", str(output), "--prompt", "a <img>dog.png</img> on grass", "--out", str(out),
            "--steps", str(STEPS), "--device", "cpu"]
    _refused(capsys, argv, f"--out {out} exists", "--force")
    assert out.read_bytes() == old
    assert cli.main([*argv, "--force"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.size == (32, 32)
    (tmp_path / "folder.png").mkdir()
    _refused(capsys, [*argv[:-6], "--out", str(tmp_path / "folder.png"), "--force"], "is not a file")
    _refused(capsys, ["--checkpoint", str(output), "--export", str(tmp_path / "export"), "--force"],
             "--export does not take --prompt, --out or --force")


def test_export_unet_loads_in_diffusers_alone(output, tmp_path, capsys):
    assert cli.main(["--checkpoint", str(output), "--export-unet", str(tmp_path / "unet")]) == 0
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    ema_model = load_generation_models(output, "cpu").denoiser.unet
    assert all(torch.equal(p, q) for p, q in zip(unet.state_dict().values(), ema_model.state_dict().values()))
    assert unet.config.cross_attention_dim == 32
