"""Beam `ModelHandler`s of the feature job: the frozen VAE and the frozen encoder, run through
`RunInference` (batching, one model per worker process, inference metrics).

The pure batch functions `latent_moments` and `caption_states` hold the work; both are
batch-invariant (every image is R x R; prompts are right-padded, so a prompt's real tokens never
see padding), so a row does not depend on the batch it lands in.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Optional, Sequence

import torch
from apache_beam.ml.inference.base import ModelHandler

from pipelines.features.stages import STAGE, FeatureItem
from unimo_g.checkpoint_format import build_vae
from unimo_g.devices import resolve_device, resolve_dtype
from unimo_g.features import FeatureSpec
from unimo_g.inference import encode_unconditional
from unimo_g.models.encoder import EncoderConfig, MultimodalEncoder, build_encoder
from unimo_g.models.vae import encode_moments
from unimo_g.records import PromptPart, Reject


def latent_moments(vae, pixel_values: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image of `pixel_values` (B, 3, R, R) in [-1, 1]: its scaled posterior `(mean, std)`,
    each (C, h, w) float32 on the CPU, in storage of its own (a view would pickle the batch)."""
    mean, std = encode_moments(vae, pixel_values.to(vae.device))  # (B, C, h, w) each
    mean, std = mean.cpu(), std.cpu()
    return [(mean[b].clone(), std[b].clone()) for b in range(mean.shape[0])]


def stage1_prompt(caption: str) -> tuple[PromptPart, ...]:
    """The stage-1 prompt of a caption: the caption alone, no entity images."""
    return (PromptPart(text=caption),)


def can_encode(encoder: MultimodalEncoder, caption: str) -> bool:
    """Whether `caption` leaves any text once the encoder drops control tokens (else it refuses it)."""
    text, _ = encoder.render(stage1_prompt(caption), 0)
    return bool(text.strip())


def caption_states(encoder: MultimodalEncoder, captions: Sequence[str]) -> list[torch.Tensor]:
    """The hidden states of each caption's stage-1 prompt, (T_b, D) float32 on the CPU, real tokens
    only (the first T_b = attention_mask[b].sum() positions: padding is on the right)."""
    encoded = encoder([stage1_prompt(c) for c in captions], [[] for _ in captions])
    hidden = encoded.hidden.cpu()  # (B, T, D)
    lengths = encoded.attention_mask.sum(1).tolist()  # (B,)
    return [hidden[b, : int(n)].clone() for b, n in enumerate(lengths)]


def unconditional_states(encoder: MultimodalEncoder) -> torch.Tensor:
    """The empty prompt's hidden states (T_u, D) float32 on the CPU, as training's condition dropout
    and sampling's guidance use them (`encode_unconditional`)."""
    hidden, mask = encode_unconditional(encoder)  # (1, T_u, D), (1, T_u)
    return hidden[0, : int(mask[0].sum())].cpu().clone()


def _fixed_batches(batch_size: int) -> dict:
    return {"min_batch_size": batch_size, "max_batch_size": batch_size}


class VaeMomentsHandler(ModelHandler[FeatureItem, FeatureItem, Any]):
    """FeatureItem with `pixel_values` -> FeatureItem with `latent_mean` / `latent_std` (C, h, w)
    (and no pixels); items without pixels (the unconditional one) pass unchanged. Raises when the
    latents do not have `latent_shape` (a layout mismatch is a bug)."""

    def __init__(self, spec: FeatureSpec, device: str, dtype: str, batch_size: int, latent_shape: tuple[int, ...]):
        self._spec = spec
        self._device = device
        self._dtype = dtype
        self._batch_size = batch_size
        self._latent_shape = tuple(latent_shape)

    def load_model(self):
        device = resolve_device(self._device)  # a GPU that is not there raises, never falls back
        dtype = resolve_dtype(self._dtype, device)
        vae = build_vae(self._spec.denoiser_config()).to(device)
        return vae if dtype == torch.float32 else vae.to(dtype=dtype)  # diffusers warns on any dtype cast

    def run_inference(
        self, batch: Sequence[FeatureItem], model, inference_args: Optional[dict] = None
    ) -> Iterable[FeatureItem]:
        images = [i for i, item in enumerate(batch) if item.pixel_values is not None]
        out = list(batch)
        if not images:
            return out
        moments = latent_moments(model, torch.stack([batch[i].pixel_values for i in images]))  # (B, 3, R, R)
        shape = tuple(moments[0][0].shape)
        if shape != self._latent_shape:
            raise ValueError(f"the VAE made latents of shape {shape}, the feature layout says {self._latent_shape}")
        for i, (mean, std) in zip(images, moments):
            out[i] = replace(batch[i], pixel_values=None, latent_mean=mean, latent_std=std)
        return out

    def get_num_bytes(self, batch: Sequence[FeatureItem]) -> int:
        return sum(item.pixel_values.nbytes for item in batch if item.pixel_values is not None)

    def batch_elements_kwargs(self) -> dict:
        return _fixed_batches(self._batch_size)

    def get_metrics_namespace(self) -> str:
        return "unimo_g.features.vae"


class EncoderHandler(ModelHandler[FeatureItem, FeatureItem, Any]):
    """FeatureItem with a caption -> FeatureItem with `hidden` (T, D), or with `reject` when the
    encoder cannot take its caption; the unconditional item gets the empty prompt's states."""

    def __init__(self, config: EncoderConfig, device: str, batch_size: int):
        self._config = config
        self._device = device
        self._batch_size = batch_size

    def load_model(self):
        return build_encoder(self._config, resolve_device(self._device))

    def run_inference(
        self, batch: Sequence[FeatureItem], model, inference_args: Optional[dict] = None
    ) -> Iterable[FeatureItem]:
        out: list[Optional[FeatureItem]] = [None] * len(batch)
        todo = []
        for i, item in enumerate(batch):
            if item.unconditional:
                out[i] = replace(item, hidden=unconditional_states(model))
            elif can_encode(model, item.caption):
                todo.append(i)
            else:
                reject = Reject(id=item.id, source=item.source, stage=STAGE, reason="empty_prompt",
                                detail="no text is left once the encoder drops its control tokens")
                out[i] = replace(item, reject=reject)
        if todo:
            for i, hidden in zip(todo, caption_states(model, [batch[i].caption for i in todo])):
                out[i] = replace(batch[i], hidden=hidden)
        return out

    def get_num_bytes(self, batch: Sequence[FeatureItem]) -> int:
        return sum(len(item.caption or "") for item in batch)

    def batch_elements_kwargs(self) -> dict:
        return _fixed_batches(self._batch_size)

    def get_metrics_namespace(self) -> str:
        return "unimo_g.features.encoder"
