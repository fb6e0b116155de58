"""The training config: one frozen dataclass tree, loaded from a YAML preset plus `--set` overrides.
A section's class lives beside the code it configures (`DataConfig` in trainers/data.py,
`OptimConfig` in trainers/optim.py, `EMAConfig` in trainers/ema.py); `TrainConfig` gathers them.

The stage (1: text-to-image pre-training, 2: multimodal instruction tuning) is a command-line
argument, not a config key: one preset serves both stages, and only values that depend on the
stage (the default learning rate) are resolved with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from trainers.data import DataConfig
from trainers.ema import EMAConfig
from trainers.optim import OptimConfig
from unimo_g.checkpoint_format import ModelSpec
from unimo_g.devices import check_device_name
from unimo_g.diffusion.schedule import NoiseScheduleConfig
from unimo_g.models.denoiser import DenoiserConfig
from unimo_g.models.encoder import EncoderConfig
from unimo_g.pipeline_config import EntityImageConfig

MIXED_PRECISION = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """One training run (either stage).

    batch_size: samples per micro-batch on each rank.
    max_steps: optimizer steps to train to (the command line's --max-steps overrides it).
    cond_dropout: probability of replacing a sample's condition by the empty prompt's encoding
      (classifier-free guidance at sampling).
    lambda_attn: weight of the stage-2 visual-enhancement loss L_attn (0: the ablation without
      it; the cross-attention maps are then not even captured). Stage 1 ignores it. The attention
      maps come from the denoiser's `capture_resolutions`.
    mixed_precision: "fp32" (none) or "bf16" (bfloat16 autocast of the denoiser and of the VAE
      encode; float32 master weights and optimizer). bf16 needs a CUDA device: on CPU it is refused rather than run slowly.
      (Not "no": a bare `no` in YAML or --set is the boolean false.)
    device: "cpu", "cuda" or "cuda:N". Under torchrun, "cuda" means the rank's local GPU.
    checkpoint_every: optimizer steps between checkpoints (a final one is always written).
    keep_last: checkpoints kept (older ones are deleted after a newer one is complete); 0 keeps all.
    log_every: optimizer steps between metrics records.
    sample_every: optimizer steps between sample images for the reporters (--report-to); 0: none.
      Needs the encoder and VAE (not a run on pre-computed features).
    sample_prompts: prompts of the sample images (`<img>PATH</img>` entities allowed).
    sample_steps / sample_guidance: DDIM steps and guidance of the samples (the paper samples
      with 50 and 5.0; fewer steps keep the pause short).
    """

    seed: int = 0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    noise: NoiseScheduleConfig = field(default_factory=NoiseScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    batch_size: int = 8
    max_steps: int = 1000
    cond_dropout: float = 0.1
    lambda_attn: float = 0.01
    mixed_precision: str = "fp32"
    device: str = "cuda"
    checkpoint_every: int = 1000
    keep_last: int = 0
    log_every: int = 10
    sample_every: int = 0
    sample_prompts: tuple[str, ...] = ("a photo of a dog on a beach", "a red car parked in front of a house")
    sample_steps: int = 25
    sample_guidance: float = 5.0

    def __post_init__(self):
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps!r}")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1], got {self.cond_dropout!r}")
        if self.lambda_attn < 0:
            raise ValueError(f"lambda_attn must be >= 0, got {self.lambda_attn!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {list(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        check_device_name(self.device)
        if self.mixed_precision == "bf16" and self.device == "cpu":
            raise ValueError("mixed_precision bf16 needs a CUDA device; use mixed_precision: fp32 on cpu")
        for name in ("checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be >= 0 (0: off), got {self.sample_every!r}")
        if self.sample_every and (not self.sample_prompts or self.sample_steps < 1):
            raise ValueError("sample_every needs sample_prompts and sample_steps >= 1")
        if self.keep_last < 0:
            raise ValueError(f"keep_last must be >= 0 (0: keep all), got {self.keep_last!r}")

    def model_spec(self, entity_image: Optional[EntityImageConfig] = None) -> ModelSpec:
        """What the generator needs to rebuild the trained model; `entity_image`: how the training
        data's entity images were made (the pipeline's default when not known)."""
        return ModelSpec(
            encoder=self.encoder, denoiser=self.denoiser, noise=self.noise, resolution=self.data.resolution,
            entity_image=entity_image or EntityImageConfig(),
        )


# Keys that may differ between a run and the run it resumes (they do not change what is computed).
RESUMABLE_CHANGES = ("max_steps", "checkpoint_every", "keep_last", "log_every", "sample_every", "sample_prompts",
                     "sample_steps", "sample_guidance")
