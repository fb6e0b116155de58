"""AdamW over the denoiser's trainable parameters, with linear warm-up to a constant learning rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import torch
from torch.optim.lr_scheduler import LambdaLR

STAGE_LR = {1: 5e-5, 2: 1e-5}  # learning rate when optim.lr is not set


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up to a constant learning rate.

    lr: peak learning rate; None takes the stage's default (`STAGE_LR`: 5e-5 stage 1, 1e-5 stage 2).
    warmup_steps: optimizer steps of linear warm-up from lr / warmup_steps to lr.
    grad_clip: maximum global gradient norm; 0 turns clipping off.
    grad_accum: micro-batches per optimizer step (effective batch = batch_size * grad_accum * world size).
    """

    lr: Optional[float] = None
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    grad_clip: float = 1.0
    grad_accum: int = 1

    def __post_init__(self):
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0 or null, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"optim.betas must be in [0, 1), got {list(self.betas)}")
        if self.eps <= 0:
            raise ValueError(f"optim.eps must be > 0, got {self.eps!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.grad_clip < 0:
            raise ValueError(f"optim.grad_clip must be >= 0 (0: off), got {self.grad_clip!r}")
        if self.grad_accum < 1:
            raise ValueError(f"optim.grad_accum must be >= 1, got {self.grad_accum!r}")

    def lr_for(self, stage: int) -> float:
        """The peak learning rate of `stage`: `lr` when set, else the stage's default."""
        return self.lr if self.lr is not None else STAGE_LR[stage]


def build_optimizer(params: Iterable[torch.nn.Parameter], config: OptimConfig, stage: int) -> torch.optim.AdamW:
    """AdamW at the stage's peak learning rate (`config.lr_for(stage)`); weight decay on every
    parameter. On CUDA the fused kernel updates every parameter in a few launches (the default runs
    per-tensor kernels); elsewhere torch's default implementation runs."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("the denoiser has no trainable parameters")
    return torch.optim.AdamW(
        trainable,
        lr=config.lr_for(stage),
        betas=tuple(config.betas),
        eps=config.eps,
        weight_decay=config.weight_decay,
        fused=True if all(p.is_cuda for p in trainable) else None,
    )


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Learning-rate multiplier of optimizer step `step` (0-based): (step + 1) / warmup_steps, then 1."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def build_lr_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int) -> LambdaLR:
    """Linear warm-up over `warmup_steps` optimizer steps, constant afterwards. Its state dict holds
    only numbers (the schedule is rebuilt from the config), so checkpoints load with weights_only."""
    return LambdaLR(optimizer, lambda step: warmup_factor(step, warmup_steps))
