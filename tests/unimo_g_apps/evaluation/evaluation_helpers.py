"""Shared pieces of the evaluation tests: a tiny random-weight checkpoint, photos, the flags that
make evaluation fast (tiny metric models, 2 DDIM steps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unimo_g.checkpoint_format import CHECKPOINTS_DIR, DENOISER_DIR, ModelSpec, write_latest, write_model_spec
from unimo_g.models.denoiser import DenoiserConfig, build_denoiser, save_denoiser
from unimo_g.models.encoder import EncoderConfig

SPEC = ModelSpec(encoder=EncoderConfig(family="llava"), denoiser=DenoiserConfig(size="tiny", vae="tiny"),
                 resolution=32)
TINY = ["--set", "metrics.dino=tiny", "--set", "metrics.clip=tiny", "--set", "images_per_prompt=2",
        "--set", "steps=2", "--set", "batch_size=3"]


def write_tiny_model(root: Path) -> Path:
    """A training output with one checkpoint of the tiny random-weight model (32 px)."""
    checkpoint = root / CHECKPOINTS_DIR / "step-0000001"
    save_denoiser(build_denoiser(SPEC.denoiser, 32), checkpoint / DENOISER_DIR, SPEC.denoiser)
    write_model_spec(checkpoint, SPEC)
    write_latest(root, checkpoint.name)
    return root


def photo_pixels(colour, size=(40, 30)) -> np.ndarray:
    """(H, W, 3) uint8: a plain colour with a block of its complement (some structure)."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:] = colour
    pixels[5:20, 8:30] = (255 - np.array(colour)).astype(np.uint8)
    return pixels


def write_photo(path: Path, colour, size=(40, 30), **save) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo_pixels(colour, size)).save(path, **save)
