"""Atomic training checkpoints and exact resume (layout: `unimo_g.checkpoint_format`).

A checkpoint is written into a temporary directory inside `OUTPUT/checkpoints/`, its files and
folders fsynced, and renamed to `step-XXXXXXX`; then the `latest` pointer file is replaced
atomically (and fsynced, with its directory). A crash at any point, power loss included, leaves
the previous checkpoint and pointer intact. Only rank 0 writes; every rank's RNG
states are gathered into it, and on resume each rank takes back its own.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml

from trainers.config import RESUMABLE_CHANGES, TrainConfig
from trainers.distributed import DistInfo, all_gather_objects, barrier
from trainers.step import TrainState
from unimo_g.checkpoint_format import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    DENOISER_DIR,
    FORMAT_VERSION,
    TRAINER_STATE,
    TRAINING_STATE,
    CheckpointError,
    checkpoint_name,
    fsync_directory,
    fsync_tree,
    load_ema_weights,
    read_denoiser_state_dict,
    read_latest,
    save_ema_weights,
    write_latest,
    write_model_spec,
)
from unimo_g.config_tools import to_dict
from unimo_g.models.denoiser import save_denoiser

# ---------------------------------------------------------------------------------------------
# RNG states (every value loads under torch.load(weights_only=True): tensors, numbers, tuples)


def capture_rng_state(device: torch.device) -> dict:
    """This process's Python, NumPy, torch (and CUDA, on a CUDA device) RNG states."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    numpy = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
             "cached_gaussian": float(cached)}  # a NumPy array would need weights_only allow-listing
    return {
        "python": random.getstate(),
        "numpy": numpy,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


# ---------------------------------------------------------------------------------------------
# Saving


def config_text(config: TrainConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_checkpoint(output: str | Path, step: int, state: TrainState, data_state: dict) -> Optional[Path]:
    """Write the checkpoint of optimizer step `step` (steps done) on rank 0; every rank must call
    it (RNG states are gathered). Returns its directory on rank 0, None elsewhere."""
    rng_states = all_gather_objects(state.dist, capture_rng_state(state.dist.device))
    directory = None
    if state.dist.is_main:
        directory = _write_checkpoint(Path(output), step, state, data_state, rng_states)
    barrier(state.dist)
    return directory


def _write_checkpoint(output: Path, step: int, state: TrainState, data_state: dict, rng_states: list) -> Path:
    root = output / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    temporary = root / f".tmp-{name}"
    shutil.rmtree(temporary, ignore_errors=True)  # left by a crash
    temporary.mkdir()

    save_denoiser(state.denoiser, temporary / DENOISER_DIR, state.config.denoiser)
    if state.ema is not None:
        save_ema_weights(temporary, state.ema.shadow, state.ema.updates)
    torch.save(
        {"optimizer": state.optimizer.state_dict(), "lr_scheduler": state.lr_scheduler.state_dict(), "rng": rng_states},
        temporary / TRAINING_STATE,
    )
    trainer_state = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "stage": state.stage,
        "world_size": state.dist.world_size,
        "data": data_state,
    }
    (temporary / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
    (temporary / CONFIG_FILE).write_text(config_text(state.config), encoding="utf-8")
    write_model_spec(temporary, state.config.model_spec(state.entity_image))  # last: its presence marks a complete checkpoint

    fsync_tree(temporary)  # every file on the disk before the rename and the pointer make it the latest
    final = root / name
    if final.exists():  # the same step written again (a resumed run that crashed before moving on)
        stale = root / f".stale-{name}"
        shutil.rmtree(stale, ignore_errors=True)
        final.rename(stale)
        temporary.rename(final)
        shutil.rmtree(stale)
    else:
        temporary.rename(final)
    fsync_directory(root)
    write_latest(output, name)
    return final


def prune_checkpoints(output: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints (never the one `latest` names); 0 keeps all."""
    if keep_last <= 0:
        return []
    root = Path(output) / CHECKPOINTS_DIR
    latest = read_latest(output)
    names = sorted(p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir())
    removed = [p for p in names[:-keep_last] if latest is None or p.resolve() != latest.resolve()]
    for path in removed:
        shutil.rmtree(path)
    return removed


# ---------------------------------------------------------------------------------------------
# Resuming


def read_trainer_state(directory: str | Path) -> dict:
    path = Path(directory) / TRAINER_STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read the trainer state: {err}") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format_version')!r} is not supported")
    return state


def check_resumable(directory: Path, config: TrainConfig, stage: int, dist: DistInfo) -> dict:
    """The checkpoint's trainer state, after checking that this run continues it exactly: same
    stage, world size and config (except `RESUMABLE_CHANGES`). Raises `CheckpointError` naming
    what differs."""
    state = read_trainer_state(directory)
    if state["stage"] != stage:
        raise CheckpointError(f"{directory} is a stage-{state['stage']} checkpoint; this run is stage {stage}")
    if state["world_size"] != dist.world_size:
        raise CheckpointError(
            f"{directory} was written by {state['world_size']} process(es); resuming exactly needs as many, "
            f"this run has {dist.world_size}"
        )
    saved = yaml.safe_load((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    changed = sorted(_flat_differences(saved, to_dict(config)) - set(RESUMABLE_CHANGES))
    if changed:
        raise CheckpointError(f"{directory}: the config changed since the checkpoint ({', '.join(changed)})")
    return state


def _flat_differences(a: dict, b: dict, prefix: str = "") -> set[str]:
    keys = set(a) | set(b)
    out = set()
    for key in keys:
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out |= _flat_differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.add(f"{prefix}{key}")
    return out


def load_checkpoint(directory: str | Path, state: TrainState) -> dict:
    """Put a checkpoint's weights, EMA, optimizer, LR schedule and this rank's RNG states into
    `state` (call before wrapping the denoiser in DDP). Returns the trainer state (step, data
    position, ...)."""
    directory = Path(directory)
    trainer_state = read_trainer_state(directory)
    state.denoiser.load_state_dict(read_denoiser_state_dict(directory))
    if state.ema is not None:
        ema = load_ema_weights(directory)
        if ema is None:
            raise CheckpointError(f"{directory} has no EMA weights but ema.enabled is true")
        state.ema.load(*ema, device=state.dist.device)
    training = torch.load(directory / TRAINING_STATE, map_location="cpu", weights_only=True)
    state.optimizer.load_state_dict(training["optimizer"])
    state.lr_scheduler.load_state_dict(training["lr_scheduler"])
    restore_rng_state(training["rng"][state.dist.rank], state.dist.device)
    return trainer_state
