"""Condition batches: padding to a common length and dropout to the unconditional prompt (for CFG).

A condition is `cond (B, T, D)` with `cond_mask (B, T)` bool (True = a real token). Padding appends
positions at the end (zeros, mask False), so token positions of the original sequence stay valid
whatever side the encoder padded on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_condition(cond: torch.Tensor, cond_mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`cond (B, T, D)`, `cond_mask (B, T)` padded at the end to `length` >= T."""
    extra = length - cond.shape[1]
    if extra < 0:
        raise ValueError(f"cannot pad a condition of length {cond.shape[1]} to {length}")
    if extra == 0:
        return cond, cond_mask
    return F.pad(cond, (0, 0, 0, extra)), F.pad(cond_mask, (0, extra), value=False)


def expand_uncond(uncond: torch.Tensor, uncond_mask: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The unconditional encoding `(1 or B, T_u, D)` / `(1 or B, T_u)` broadcast to `batch` rows."""
    if uncond.shape[0] not in (1, batch) or uncond_mask.shape != uncond.shape[:2]:
        raise ValueError(
            f"uncond {tuple(uncond.shape)} / mask {tuple(uncond_mask.shape)} do not fit a batch of {batch}"
        )
    return uncond.expand(batch, -1, -1), uncond_mask.expand(batch, -1)


def match_lengths(
    cond: torch.Tensor, cond_mask: torch.Tensor, uncond: torch.Tensor, uncond_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both conditions padded at the end to the longer length; uncond broadcast to cond's batch."""
    uncond, uncond_mask = expand_uncond(uncond, uncond_mask, cond.shape[0])
    length = max(cond.shape[1], uncond.shape[1])
    cond, cond_mask = pad_condition(cond, cond_mask, length)
    uncond, uncond_mask = pad_condition(uncond, uncond_mask, length)
    return cond, cond_mask, uncond.to(cond.dtype), uncond_mask


def drop_conditions(
    cond: torch.Tensor,
    cond_mask: torch.Tensor,
    uncond: torch.Tensor,
    uncond_mask: torch.Tensor,
    prob: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace each sample's condition by the unconditional (empty-prompt) one with probability `prob`.

    Returns `(cond (B, T', D), cond_mask (B, T'), dropped (B,) bool)`, T' = max(T, T_u). Samples that
    were dropped have no entities any more: mask them out of the attention loss with `dropped`.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"condition dropout probability must be in [0, 1], got {prob}")
    cond, cond_mask, uncond, uncond_mask = match_lengths(cond, cond_mask, uncond, uncond_mask)
    gen_device = generator.device if generator is not None else cond.device
    dropped = (torch.rand(cond.shape[0], generator=generator, device=gen_device) < prob).to(cond.device)  # (B,)
    cond = torch.where(dropped[:, None, None], uncond, cond)
    cond_mask = torch.where(dropped[:, None], uncond_mask, cond_mask)
    return cond, cond_mask, dropped
