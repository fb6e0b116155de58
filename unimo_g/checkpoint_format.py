"""The on-disk layout of a training run and its checkpoints, and reading their model part.

The trainer writes, and the generator reads without any trainer code:

    OUTPUT/
      metrics.jsonl                one JSON record per logged step
      checkpoints/
        latest                     text: the name of the newest complete checkpoint, e.g. "step-0000100"
        step-0000100/              complete or absent: written under a temporary name, then renamed
          model.json               ModelSpec: encoder, denoiser and noise configs, image resolution,
                                   how the data's entity images were made
          denoiser/                `save_denoiser`: unet/ (diffusers folder), projection.safetensors, denoiser.json
                                   (an export for diffusers alone: `unimo_g.export_format`)
          ema.safetensors          EMA of the denoiser's parameters (state-dict names), when EMA is on
          trainer_state.json       step, stage, data-stream position, world size (trainer only)
          training_state.pt        optimizer, LR scheduler, RNG states (trainer only; weights_only loadable)
          config.yaml              the full training config (trainer only)

A model rebuilds from `model.json` alone: a tiny encoder or VAE from its seed, a real one from its
hub id or local folder (the same ones the run trained with), and the denoiser from `denoiser/`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from unimo_g.config_tools import ConfigError, from_dict, to_dict
from unimo_g.diffusion.schedule import NoiseScheduleConfig
from unimo_g.models.denoiser import PROJECTION_WEIGHTS, Denoiser, DenoiserConfig, load_denoiser, read_unet_state_dict
from unimo_g.models.encoder import EncoderConfig
from unimo_g.models.vae import load_vae
from unimo_g.pipeline_config import EntityImageConfig

FORMAT_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"
CHECKPOINT_PREFIX = "step-"
MODEL_SPEC = "model.json"
DENOISER_DIR = "denoiser"
EMA_WEIGHTS = "ema.safetensors"
TRAINER_STATE = "trainer_state.json"
TRAINING_STATE = "training_state.pt"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"


class CheckpointError(ValueError):
    """A path that is not a readable checkpoint (or training output); the message names it."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the trained model: the frozen encoder and VAE, the denoiser's
    config, the noise schedule it was trained on, the side R of the training images, and how the
    training data's entity images were made (squared on white, size, format: the pipeline's
    `entity_image` config, which generation applies to a user's entity images)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    noise: NoiseScheduleConfig = field(default_factory=NoiseScheduleConfig)
    resolution: int = 256
    entity_image: EntityImageConfig = field(default_factory=EntityImageConfig)

    def __post_init__(self):
        if self.resolution < 8:
            raise ValueError(f"resolution must be >= 8, got {self.resolution!r}")


def checkpoint_name(step: int) -> str:
    """`step-0000100` for step 100 (names sort by step)."""
    return f"{CHECKPOINT_PREFIX}{step:07d}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename (readers never see half a file),
    durably: the file's bytes, then the directory entry of the rename, reach the disk."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)


def fsync_directory(path: str | Path) -> None:
    """Flush a directory's entries (new, renamed or removed names) to the disk."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(root: str | Path) -> None:
    """Flush every file under `root`, then every directory (deepest first) and `root` itself, so
    that a checkpoint's bytes are on the disk before a pointer names it (a crash after the rename
    could otherwise leave a named checkpoint with empty or partial files)."""
    directories = []
    for folder, _, files in os.walk(root):
        directories.append(folder)
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                os.fsync(handle.fileno())
    for folder in reversed(directories):
        fsync_directory(folder)


def write_model_spec(directory: str | Path, spec: ModelSpec) -> None:
    payload = {"format_version": FORMAT_VERSION, **to_dict(spec)}
    (Path(directory) / MODEL_SPEC).write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")


def read_model_spec(directory: str | Path) -> ModelSpec:
    """The `ModelSpec` of a checkpoint directory; a missing file, newer format or bad value raises
    `CheckpointError` naming the file."""
    path = Path(directory) / MODEL_SPEC
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read the model spec: {err}") from None
    version = data.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version!r} is not supported (this code reads {FORMAT_VERSION})"
        )
    try:
        return from_dict(ModelSpec, data)
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None


def read_latest(output: str | Path) -> Optional[Path]:
    """The checkpoint that `OUTPUT/checkpoints/latest` names, or None when there is none."""
    pointer = Path(output) / CHECKPOINTS_DIR / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    directory = pointer.parent / name
    if not name or not (directory / MODEL_SPEC).is_file():
        raise CheckpointError(f"{pointer} names {name!r}, which is not a complete checkpoint")
    return directory


def write_latest(output: str | Path, name: str) -> None:
    write_text_atomic(Path(output) / CHECKPOINTS_DIR / LATEST, name + "\n")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory given itself or as a training output directory (its latest checkpoint)."""
    path = Path(path)
    if (path / MODEL_SPEC).is_file():
        return path
    if path.is_dir():
        latest = read_latest(path)
        if latest is not None:
            return latest
        raise CheckpointError(f"{path} is neither a checkpoint (no {MODEL_SPEC}) nor a training output with one")
    raise CheckpointError(f"no such checkpoint: {path}")


# ---------------------------------------------------------------------------------------------
# Weights


def save_ema_weights(directory: str | Path, weights: dict[str, torch.Tensor], updates: int) -> None:
    """EMA tensors (denoiser state-dict names) and the number of updates behind them."""
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in weights.items()}
    save_file(tensors, Path(directory) / EMA_WEIGHTS, metadata={"updates": str(updates)})


def load_ema_weights(directory: str | Path) -> Optional[tuple[dict[str, torch.Tensor], int]]:
    """`(EMA tensors, updates)` of a checkpoint, or None when it has no EMA."""
    path = Path(directory) / EMA_WEIGHTS
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        updates = int((handle.metadata() or {}).get("updates", 0))
    return load_file(path), updates


def read_denoiser_state_dict(directory: str | Path) -> dict[str, torch.Tensor]:
    """The raw (not EMA) denoiser state dict of a checkpoint, with `Denoiser.state_dict()` names."""
    folder = Path(directory) / DENOISER_DIR
    state = {f"unet.{k}": v for k, v in read_unet_state_dict(folder / "unet").items()}
    state.update({f"projection.{k}": v for k, v in load_file(folder / PROJECTION_WEIGHTS).items()})
    return state


def denoiser_weights(directory: str | Path, use_ema: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """The denoiser state dict of a checkpoint and which weights it is ("ema" or "raw"):
    the raw weights with the EMA parameters on top when `use_ema` and the checkpoint has them."""
    state = read_denoiser_state_dict(directory)
    ema = load_ema_weights(directory) if use_ema else None
    if ema is None:
        return state, "raw"
    unknown = sorted(set(ema[0]) - set(state))
    if unknown:
        raise CheckpointError(f"{directory}: EMA weights {unknown[:3]} are not denoiser parameters")
    state.update(ema[0])
    return state, "ema"


def load_trained_denoiser(directory: str | Path, use_ema: bool = True) -> tuple[Denoiser, str]:
    """The checkpoint's denoiser (CPU, eval mode) with its EMA weights when `use_ema` and present,
    and which weights were loaded ("ema" or "raw")."""
    denoiser = load_denoiser(Path(directory) / DENOISER_DIR)
    state, kind = denoiser_weights(directory, use_ema)
    denoiser.load_state_dict(state)
    return denoiser, kind


def build_vae(config: DenoiserConfig):
    """The frozen VAE of a denoiser config (a tiny one from `config.seed`), as trainer and generator use it."""
    return load_vae(config.vae, subfolder=config.vae_subfolder, seed=config.seed)
