"""Noise schedules: one config for the training (DDPM) and sampling (DDIM) schedulers of diffusers.

Defaults are Stable Diffusion 1.x's: 1000 steps, scaled-linear betas 0.00085..0.012, ε-prediction,
DDIM with "leading" spacing, steps_offset 1 and the final alpha not forced to one.
"""

from __future__ import annotations

import dataclasses

from diffusers import DDIMScheduler, DDPMScheduler

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


@dataclasses.dataclass(frozen=True)
class NoiseScheduleConfig:
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 1
    set_alpha_to_one: bool = False

    def __post_init__(self) -> None:
        if self.num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {self.num_train_timesteps}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got {self.timestep_spacing!r}")
        if self.steps_offset < 0:
            raise ValueError(f"steps_offset must be >= 0, got {self.steps_offset}")


def _betas(config: NoiseScheduleConfig) -> dict:
    return {
        "num_train_timesteps": config.num_train_timesteps,
        "beta_start": config.beta_start,
        "beta_end": config.beta_end,
        "beta_schedule": config.beta_schedule,
        "prediction_type": config.prediction_type,
        "clip_sample": False,  # latents are not bounded to [-1, 1]
    }


def make_train_scheduler(config: NoiseScheduleConfig) -> DDPMScheduler:
    """The forward-noising schedule used by the training loss (`add_noise`, `get_velocity`)."""
    return DDPMScheduler(**_betas(config))


def make_sampler_scheduler(config: NoiseScheduleConfig) -> DDIMScheduler:
    """A DDIM sampler over the same betas as `make_train_scheduler`."""
    return DDIMScheduler(
        **_betas(config),
        set_alpha_to_one=config.set_alpha_to_one,
        steps_offset=config.steps_offset,
        timestep_spacing=config.timestep_spacing,
    )
