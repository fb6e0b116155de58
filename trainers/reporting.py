"""Training logs people read: TensorBoard and Weights & Biases beside the JSONL log.

`--report-to tensorboard` writes event files to OUTPUT/tensorboard/ (`tensorboard --logdir
OUTPUT/tensorboard`); `--report-to wandb` logs to a W&B run in OUTPUT (offline or online as the
WANDB_MODE environment variable says). Both get every metrics record (losses, L_attn, learning
rate, gradient norm, throughput, the stage-2 mix) and the sample images made every
`sample_every` steps. Only rank 0 reports. Each needs its package: `pip install "unimo-g[tensorboard]"`
or `pip install wandb`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

REPORTERS = ("tensorboard", "wandb")
TENSORBOARD_DIR = "tensorboard"
NOT_SCALARS = ("step",)  # record keys that are no curve


class ReporterUnavailable(RuntimeError):
    """A reporter whose package is not installed; the message says what to install."""


def parse_report_to(values: Sequence[str]) -> list[str]:
    """Reporter names from `--report-to` values (repeatable, comma-separated); ValueError names a bad one."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in REPORTERS]
    if unknown:
        raise ValueError(f"--report-to: unknown reporter(s) {unknown}; choose from {list(REPORTERS)}")
    return list(dict.fromkeys(names))


INSTALL = {"tensorboard": 'pip install "unimo-g[tensorboard]"', "wandb": "pip install wandb"}


def check_available(names: Sequence[str]) -> None:
    """Raise `ReporterUnavailable` for the first reporter of `names` whose package is missing."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ReporterUnavailable(f"--report-to {name} needs {name}: {INSTALL[name]}")


class TensorBoardReporter:
    def __init__(self, output: Path):
        check_available(["tensorboard"])
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(output / TENSORBOARD_DIR))

    def write(self, step: int, record: dict) -> None:
        for key, value in record.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.flush()

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        for tag, pixels in images.items():  # (H, W, 3) uint8
            self.writer.add_image(f"samples/{tag}", pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbReporter:
    def __init__(self, output: Path, config: dict, stage: int):
        check_available(["wandb"])
        import wandb

        self.wandb = wandb
        self.run = wandb.init(dir=str(output), config=config, job_type=f"stage{stage}", name=output.name,
                              reinit="finish_previous")

    def write(self, step: int, record: dict) -> None:
        values = {f"train/{k}": v for k, v in record.items() if k not in NOT_SCALARS}
        self.run.log(values, step=step)

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        self.run.log({f"samples/{tag}": self.wandb.Image(pixels) for tag, pixels in images.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


class Reporters:
    """Every chosen reporter behind one call each (none: the calls do nothing)."""

    def __init__(self, reporters: Sequence = ()):
        self.reporters = list(reporters)

    def __bool__(self) -> bool:
        return bool(self.reporters)

    def write(self, step: int, record: dict) -> None:
        for reporter in self.reporters:
            reporter.write(step, record)

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        for reporter in self.reporters:
            reporter.images(step, images)

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.close()


def build_reporters(names: Sequence[str], output: Path, config: dict, stage: int, is_main: bool) -> Reporters:
    """The reporters `names` on rank 0 (none elsewhere). Raises `ReporterUnavailable`."""
    if not is_main:
        return Reporters()
    made: list = []
    try:
        for name in names:
            made.append(TensorBoardReporter(output) if name == "tensorboard" else WandbReporter(output, config, stage))
    except ReporterUnavailable:
        Reporters(made).close()
        raise
    return Reporters(made)


def sample_tags(prompts: Sequence[str]) -> list[str]:
    """Image tags for sample prompts: their index and first words."""
    return [f"{k}_{'_'.join(prompt.split()[:4])}"[:60] for k, prompt in enumerate(prompts)]


def sample_images(state, prompts: Sequence[str], steps: int, guidance: float, seed: int) -> dict[str, np.ndarray]:
    """Images `(R, R, 3)` uint8 of `prompts` (`unimo_g.inference.parse_prompt` syntax) from the
    denoiser's current (not EMA) weights, by tag. Touches no RNG the training draws from, and
    leaves the denoiser in the mode it found it."""
    from unimo_g.inference import GenerationModels, generate_batch, load_entity_image, parse_prompt

    spec = state.config.model_spec(state.entity_image)
    models = GenerationModels(spec, state.encoder, state.vae, state.denoiser, state.uncond, "raw", state.dist.device)
    parsed = [parse_prompt(prompt) for prompt in prompts]
    entity_images = [[load_entity_image(path, spec.entity_image) for path in paths] for _, paths in parsed]
    training = state.denoiser.training
    capturing = state.store is not None and state.store.enabled
    state.denoiser.eval()
    if state.store is not None:
        state.store.enabled = False
    try:
        pixels = generate_batch(models, [prompt for prompt, _ in parsed], entity_images,
                                [seed + k for k in range(len(prompts))], steps, guidance)
    finally:
        state.denoiser.train(training)
        if state.store is not None:
            state.store.enabled = capturing
            state.store.reset()
    return dict(zip(sample_tags(prompts), pixels))
