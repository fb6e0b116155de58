"""AdamW over the denoiser's trainable parameters, with linear warm-up to a constant learning rate."""

from __future__ import annotations

from typing import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from trainers.config import OptimConfig


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
