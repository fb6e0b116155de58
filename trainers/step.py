"""One training step: a micro-batch's losses, and an optimizer step over grad_accum micro-batches.

Stage 1 regresses the noise (ε-MSE) for the caption alone. Stage 2 adds λ · L_attn, the L1
between each substituted entity's cross-attention map and its mask (captured only when λ > 0).
A sample's condition is replaced by the empty prompt's encoding with probability `cond_dropout`;
a dropped sample has no entities left, so it leaves the attention loss.

A `FeatureBatch` of pre-computed features (`trainers.feature_data`, stage 1) holds the VAE
posterior and the caption's encoder states instead of the pixels and prompts of a `SampleBatch`
(`trainers.data`); `step_inputs` dispatches on the batch's type. The step draws its
latents from the posterior with the same generator at the same point, so it computes what the
step on the images and captions those features came from computes. Then neither the encoder
nor the VAE is needed (`TrainState.encoder` and `.vae` are None).

Every random draw of a step (VAE posterior sample, condition dropout, timesteps, noise) comes
from a generator seeded by (seed, rank, step, micro-batch): a resumed run draws exactly what an
uninterrupted one draws, and ranks draw differently.
"""

from __future__ import annotations

import functools
import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from diffusers import AutoencoderKL, DDPMScheduler
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from trainers.config import TrainConfig
from trainers.data import Batch, SampleBatch
from trainers.distributed import DistInfo
from trainers.ema import EMA
from trainers.feature_data import FeatureBatch
from unimo_g.diffusion.conditioning import drop_conditions
from unimo_g.diffusion.losses import attention_loss, attention_maps_per_entity, diffusion_loss, total_loss
from unimo_g.models.attention import AttentionStore
from unimo_g.models.denoiser import Denoiser
from unimo_g.models.encoder import EncodedPrompt, MultimodalEncoder
from unimo_g.models.vae import encode_images, sample_latents
from unimo_g.pipeline_config import EntityImageConfig

LOSS_KEYS = ("loss", "loss_mse", "loss_attn")
# Per-sample counts behind the stage-2 mix in the log: samples, text-only samples (no entity
# image in the prompt), entity images, samples whose attention loss was active.
MIX_KEYS = ("samples", "text_only", "entity_images", "attn_active")


@dataclass
class TrainState:
    """What a step needs. `model` is what forward and backward go through (the denoiser, or its
    DDP wrapper); `denoiser` is the unwrapped module (saving, EMA). `store` is set when the
    attention loss is on (stage 2, lambda_attn > 0). `uncond` is the empty prompt's encoding,
    `(1, T_u, D)` and `(1, T_u)`. `encoder` and `vae` are None when training from pre-computed
    features."""

    config: TrainConfig
    stage: int
    dist: DistInfo
    encoder: Optional[MultimodalEncoder]
    vae: Optional[AutoencoderKL]
    denoiser: Denoiser
    model: nn.Module
    store: Optional[AttentionStore]
    noise_scheduler: DDPMScheduler
    uncond: tuple[torch.Tensor, torch.Tensor]
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: Optional[EMA]
    entity_image: EntityImageConfig = field(default_factory=EntityImageConfig)  # how the data's entity images were made


@dataclass
class StepResult:
    """`losses`: (3,) tensor of LOSS_KEYS averaged over the micro-batches (on the device, not
    synchronised); `lr`: the learning rate this step used; `grad_norm`: the gradient norm before
    clipping; `mix`: (4,) float tensor of MIX_KEYS summed over the micro-batches (on the CPU)."""

    losses: torch.Tensor
    lr: float
    grad_norm: torch.Tensor
    mix: torch.Tensor


def step_seed(seed: int, rank: int, step: int, micro: int) -> int:
    """A 64-bit seed for micro-batch `micro` of optimizer step `step` (0-based) on `rank`."""
    digest = hashlib.sha256(repr(("step", seed, rank, step, micro)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def autocast(config: TrainConfig, device: torch.device):
    """bf16 autocast of the denoiser on CUDA when configured (the config refuses bf16 on CPU)."""
    if config.mixed_precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class StepInputs:
    """What a step takes of a micro-batch: `latents` (B, C, h, w) float32 drawn from the VAE
    posterior, `hidden` (B, T, D) and `hidden_mask` (B, T) bool, its conditions, all on the device;
    `prompt` the encoder's output (None for pre-computed features: they hold no entity tokens);
    `entity_valid` (B, K) bool on the CPU, the data's entity images (K = 0 for features), and
    `entity_masks` (B, K, R, R) their masks in the target image's frame (None for features)."""

    latents: torch.Tensor
    hidden: torch.Tensor
    hidden_mask: torch.Tensor
    entity_valid: torch.Tensor
    prompt: Optional[EncodedPrompt] = None
    entity_masks: Optional[torch.Tensor] = None


@functools.singledispatch
def step_inputs(batch: Batch, state: TrainState, generator: torch.Generator) -> StepInputs:
    """The `StepInputs` of `batch`: a `SampleBatch` through the VAE and the encoder, a
    `FeatureBatch` from its stored posterior and encoder states. The posterior draw comes first
    either way, so both draw the same from `generator`."""
    raise TypeError(f"not a training batch: {type(batch).__name__}")


@step_inputs.register(SampleBatch)
def _sample_inputs(batch: SampleBatch, state: TrainState, generator: torch.Generator) -> StepInputs:
    device = state.dist.device
    with autocast(state.config, device):  # bf16 runs encode in bf16 too (fp32 convs would cost more than the UNet)
        latents = encode_images(state.vae, batch.pixel_values.to(device), generator)  # (B, C, h, w) float32
    encoded = state.encoder(batch.prompts, batch.entity_images)
    return StepInputs(latents, encoded.hidden, encoded.attention_mask, batch.entity_valid, encoded, batch.entity_masks)


@step_inputs.register(FeatureBatch)
def _feature_inputs(batch: FeatureBatch, state: TrainState, generator: torch.Generator) -> StepInputs:
    device = state.dist.device
    latents = sample_latents(batch.latent_mean.to(device), batch.latent_std.to(device), generator)  # (B, C, h, w)
    no_entities = torch.zeros(len(batch.ids), 0, dtype=torch.bool)  # (B, 0): caption-only conditions
    return StepInputs(latents, batch.hidden.to(device), batch.hidden_mask.to(device), no_entities)


def compute_losses(state: TrainState, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Scalar losses of one micro-batch (a `SampleBatch` or a `FeatureBatch`): LOSS_KEYS, of which
    "loss" carries the graph; "loss_attn" is 0 when the attention loss is off or has no entity.
    "mix" holds the micro-batch's MIX_KEYS counts, (4,) float on the CPU."""
    device = state.dist.device
    inputs = step_inputs(batch, state, generator)
    latents = inputs.latents.contiguous()  # the VAE may return channels-last: one layout, the same numerics, for both
    cond, cond_mask, dropped = drop_conditions(
        inputs.hidden, inputs.hidden_mask, *state.uncond, state.config.cond_dropout, generator
    )  # (B, T', D), (B, T'), (B,)
    # features hold caption-only conditions: no entity tokens, no attention loss
    encoded = inputs.prompt
    attend = state.store is not None and encoded is not None and encoded.entity_tokens.shape[1] > 0
    if state.store is not None:
        state.store.reset()
        state.store.enabled = attend
    with autocast(state.config, device):
        mse = diffusion_loss(state.model, latents, cond, cond_mask, state.noise_scheduler, generator)["loss_mse"]
    attn = None
    images = inputs.entity_valid  # (B, K)
    active = torch.zeros(images.shape[0], dtype=torch.bool)
    if attend:
        data_valid = images.to(device)  # (B, K)
        if data_valid.shape != encoded.entity_valid.shape:
            raise ValueError(f"entity_valid {tuple(data_valid.shape)} != encoder's {tuple(encoded.entity_valid.shape)}")
        valid = encoded.entity_valid & data_valid & ~dropped[:, None]  # (B, K)
        maps = attention_maps_per_entity(state.store.maps(), encoded.entity_tokens, tuple(latents.shape[-2:]))
        attn = attention_loss(maps, inputs.entity_masks.to(device), valid)
        active = valid.any(-1).cpu()
        state.store.reset()  # the loss holds the graph; the store need not
    loss = total_loss(mse, attn, state.config.lambda_attn if attn is not None else 0.0)
    zero = torch.zeros((), device=mse.device)
    mix = torch.tensor(
        [images.shape[0], int((~images.any(-1)).sum()), int(images.sum()), int(active.sum())], dtype=torch.float32
    )
    return {"loss": loss, "loss_mse": mse.detach(), "loss_attn": attn.detach() if attn is not None else zero,
            "mix": mix}


def train_step(state: TrainState, batches: Sequence[Batch], step: int) -> StepResult:
    """One optimizer step (0-based index `step`) over `batches`, the grad_accum micro-batches:
    accumulate, clip, AdamW, advance the LR schedule, update the EMA."""
    state.optimizer.zero_grad(set_to_none=True)
    ddp = isinstance(state.model, DistributedDataParallel)
    totals, mix = [], torch.zeros(len(MIX_KEYS))
    for micro, batch in enumerate(batches):
        generator = torch.Generator().manual_seed(step_seed(state.config.seed, state.dist.rank, step, micro))
        last = micro == len(batches) - 1
        with nullcontext() if last or not ddp else state.model.no_sync():  # all-reduce once per step
            losses = compute_losses(state, batch, generator)
            (losses["loss"] / len(batches)).backward()
        totals.append(torch.stack([losses[key].detach().float() for key in LOSS_KEYS]))
        mix += losses["mix"]
    clip = state.config.optim.grad_clip
    grad_norm = torch.nn.utils.clip_grad_norm_(state.denoiser.parameters(), clip if clip > 0 else float("inf"))
    lr = state.optimizer.param_groups[0]["lr"]
    state.optimizer.step()
    state.lr_scheduler.step()
    if state.ema is not None:
        state.ema.update(state.denoiser)
    return StepResult(losses=torch.stack(totals).mean(0), lr=lr, grad_norm=grad_norm.detach(), mix=mix)
