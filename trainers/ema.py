"""Exponential moving average of a module's trainable parameters.

The average is a plain dict of float32 tensors keyed by parameter name (no copy of the module:
attention-capture processors and DDP wrappers stay out of it), on the parameters' device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


@dataclass(frozen=True)
class EMAConfig:
    """Exponential moving average of the denoiser's weights (what the generator uses by default).

    decay: the EMA decay; with `warmup`, update n uses min(decay, (1 + n) / (10 + n)) so that
    short runs and early checkpoints are not dominated by the initial weights.
    """

    enabled: bool = True
    decay: float = 0.9999
    warmup: bool = True

    def __post_init__(self):
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"ema.decay must be in [0, 1), got {self.decay!r}")


class EMA:
    """`shadow[name] <- d * shadow[name] + (1 - d) * param`, after every optimizer step.

    With `warmup`, update n (0-based) uses d = min(decay, (1 + n) / (10 + n)).
    """

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: param.detach().float().clone() for name, param in module.named_parameters() if param.requires_grad
        }

    def decay_at(self, updates: int) -> float:
        return min(self.decay, (1 + updates) / (10 + updates)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        weight = 1.0 - self.decay_at(self.updates)
        for name, param in module.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(param.detach().float(), weight)
        self.updates += 1

    def load(self, shadow: dict[str, torch.Tensor], updates: int, device: Optional[torch.device] = None) -> None:
        """Replace the average by saved tensors (same names as this one's)."""
        if set(shadow) != set(self.shadow):
            missing, extra = sorted(set(self.shadow) - set(shadow)), sorted(set(shadow) - set(self.shadow))
            raise ValueError(f"EMA weights do not match the model: missing {missing[:3]}, unexpected {extra[:3]}")
        for name, tensor in shadow.items():
            self.shadow[name] = tensor.to(device=device or self.shadow[name].device, dtype=torch.float32).clone()
        self.updates = updates
