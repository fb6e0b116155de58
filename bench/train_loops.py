"""The measured loops of the training benchmark: data loader alone, the real trainer, its frozen
parts alone, and a bare UNet training loop.

The trainer and plain loops synchronise the device only around the timed region, as training does
not synchronise per step: a step's GPU work may overlap the next step's loading, as in training.
Per-step times (`step_times_s`, taken on the host) are exact on a CPU and launch-side on a GPU.
The frozen parts are synchronised around each call, so their times are their own.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from bench.train_flops import count_flops
from trainers import train
from trainers.config import TrainConfig
from trainers.data import Batch, SampleBatch, make_loader
from trainers.optim import build_optimizer
from trainers.step import TrainState, autocast, train_step
from unimo_g.models.denoiser import DENOISER_BUILDERS
from unimo_g.models.vae import encode_images


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def release(device: torch.device) -> None:
    """Collect the previous loop's models and return their memory to the device."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _peak_gib(device: torch.device) -> Optional[float]:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def time_loader(stream, batch_size: int, batches: int) -> dict:
    """`make_loader` over epoch 0 of `stream` for `batches` batches, nothing else: seconds to the
    first batch (worker start-up included) and samples/s over the rest (all batches if only one)."""
    stream.set_epoch(0)
    start = time.perf_counter()
    iterator = iter(make_loader(stream, batch_size))
    next(iterator)
    first = time.perf_counter()
    for _ in range(batches - 1):
        next(iterator)
    end = time.perf_counter()
    del iterator
    steady = (batches - 1) * batch_size / (end - first) if batches > 1 else batch_size / (end - start)
    return {
        "batches": batches,
        "startup_s": first - start,
        "samples_per_s": steady,
        "samples_per_s_with_startup": batches * batch_size / (end - start),
        "workers": stream.config.num_workers,
    }


def time_trainer(state: TrainState, feed: train.BatchFeed, steps: int, warmup: int) -> tuple[dict, list[Batch]]:
    """`warmup` untimed steps (the first under the FLOP counter), then `steps` timed steps as
    `trainers.train.train_loop` runs them (next micro-batches, then `train_step`). Returns the
    timings and the timed steps' micro-batches."""
    accum = state.config.optim.grad_accum
    device = state.dist.device
    flops = None
    for step in range(warmup):
        batches = [next(feed) for _ in range(accum)]
        if step == 0:
            flops, _ = count_flops(train_step, state, batches, step)
        else:
            train_step(state, batches, step)
    _sync(device)
    _reset_peak(device)
    kept, data_s, times = [], 0.0, []
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        before = time.perf_counter()
        batches = [next(feed) for _ in range(accum)]
        data_s += time.perf_counter() - before
        result = train_step(state, batches, step)
        kept += batches
        times.append(time.perf_counter() - before)
    _sync(device)
    total = time.perf_counter() - start
    images = sum(len(batch.ids) for batch in kept)
    return {
        "steps": steps,
        "images": images,
        "step_s": total / steps,
        "images_per_s": images / total,
        "median_step_s": statistics.median(times),
        "step_times_s": times,
        "data_wait_share": data_s / total,
        "flops_per_step": flops,
        "last_loss": float(result.losses[0]),
        "peak_gib": _peak_gib(device),
    }, kept


def time_frozen(state: TrainState, batches: Sequence[SampleBatch]) -> dict:
    """Seconds per micro-batch of the frozen encoder (processor + forward) and of the VAE encode,
    each timed alone on `batches` (after one untimed call of each on the first batch, under the FLOP
    counter), and of one EMA update; mean condition length T and entity images per sample."""
    device = state.dist.device
    generator = torch.Generator().manual_seed(0)
    first = batches[0]
    encoder_flops, _ = count_flops(state.encoder, first.prompts, first.entity_images)
    with autocast(state.config, device):  # as the step encodes
        vae_flops, _ = count_flops(encode_images, state.vae, first.pixel_values.to(device), generator)
    encoder_s = vae_s = 0.0
    tokens, entities = [], []
    for batch in batches:
        _sync(device)
        start = time.perf_counter()
        encoded = state.encoder(batch.prompts, batch.entity_images)
        _sync(device)
        middle = time.perf_counter()
        with autocast(state.config, device):
            encode_images(state.vae, batch.pixel_values.to(device), generator)
        _sync(device)
        encoder_s += middle - start
        vae_s += time.perf_counter() - middle
        tokens.append(max(encoded.hidden.shape[1], state.uncond[0].shape[1]))  # drop_conditions pads to this
        entities += [len(images) for images in batch.entity_images]
    ema_s = None
    if state.ema is not None:
        updates = min(len(batches), 3)
        _sync(device)
        start = time.perf_counter()
        for _ in range(updates):
            state.ema.update(state.denoiser)
        _sync(device)
        ema_s = (time.perf_counter() - start) / updates
    count = len(batches)
    size = len(first.ids)
    return {
        "encoder_s": encoder_s / count,
        "vae_s": vae_s / count,
        "ema_s": ema_s,
        "encoder_flops_per_sample": encoder_flops / size,
        "vae_flops_per_image": vae_flops / size,
        "cond_tokens": sum(tokens) / count,
        "entity_images_per_sample": sum(entities) / len(entities),
    }


def plain_unet(config: TrainConfig, cross_dim: int, device: torch.device) -> torch.nn.Module:
    """The trainer's UNet layout (random weights from the denoiser seed) in train mode on `device`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.denoiser.seed)
        unet = DENOISER_BUILDERS[config.denoiser.size](cross_dim)
    if config.denoiser.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return unet.to(device).train()


def time_plain(
    config: TrainConfig,
    cross_dim: int,
    device: torch.device,
    latent_shape: Sequence[int],
    cond_tokens: int,
    steps: int,
    warmup: int,
) -> dict:
    """A bare UNet training loop: forward + ε-MSE + backward + AdamW (the trainer's settings and
    autocast) on fixed random noisy latents `(B, C, h, w)`, timesteps, noise and conditions
    `(B, cond_tokens, cross_dim)` with an all-True mask (the trainer always passes one, and a mask
    can change the attention kernel). The first warm-up step runs under the FLOP counter."""
    unet = plain_unet(config, cross_dim, device)
    optimizer = build_optimizer(unet.parameters(), config.optim, 1)
    generator = torch.Generator().manual_seed(0)
    batch = latent_shape[0]
    noisy = torch.randn(tuple(latent_shape), generator=generator).to(device)
    noise = torch.randn(tuple(latent_shape), generator=generator).to(device)
    timesteps = torch.randint(0, config.noise.num_train_timesteps, (batch,), generator=generator).to(device)
    cond = torch.randn(batch, cond_tokens, cross_dim, generator=generator).to(device)
    mask = torch.ones(batch, cond_tokens, dtype=torch.bool, device=device)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(config, device):
            pred = unet(noisy, timesteps, encoder_hidden_states=cond, encoder_attention_mask=mask).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        optimizer.step()
        return loss.detach()

    flops, _ = count_flops(step)
    for _ in range(warmup - 1):
        step()
    _sync(device)
    _reset_peak(device)
    times = []
    start = time.perf_counter()
    for _ in range(steps):
        before = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - before)
    _sync(device)
    total = time.perf_counter() - start
    result = {
        "steps": steps,
        "images": steps * batch,
        "step_s": total / steps,
        "images_per_s": steps * batch / total,
        "median_step_s": statistics.median(times),
        "step_times_s": times,
        "flops_per_step": flops,
        "cond_tokens": cond_tokens,
        "last_loss": float(loss),
        "peak_gib": _peak_gib(device),
    }
    return result
