"""Capturing cross-attention probabilities of a diffusers UNet for the visual-enhancement loss.

`install_attention_capture(unet, resolutions)` swaps the processor of the cross-attention layers
(`attn2`) at the chosen feature-map resolutions for a `CaptureAttnProcessor`. While its
`AttentionStore` is disabled the processor calls the layer's previous processor (scaled-dot-product
attention), so sampling and stage-1 training cost nothing extra. While enabled it computes the same
attention explicitly and keeps the probabilities `(B, heads, HW, T)` with their autograd graph, so an
attention loss back-propagates into the UNet; the layer's output stays the same.

Resolutions are side lengths of a block's square feature map when the UNet runs at its configured
`sample_size` (SD-1.5 at 64×64 latents: 64, 32, 16, 8). Inputs of another size capture the same layers.
Full probability maps are large at the highest resolution: capture the lower ones.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

import torch
from diffusers import UNet2DConditionModel

_LAYER_NAME = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.|^mid_block\.")


class AttentionStore:
    """Cross-attention probabilities of the latest UNet forward, one tensor per captured layer.

    `probs[name]` is `(B, heads, HW, T)` (float32), HW the layer's flattened feature map (row-major),
    T the condition length. Each forward overwrites a layer's entry, so a recomputation under gradient
    checkpointing does not duplicate it. Do not toggle `enabled` between a forward and its backward when
    gradient checkpointing is on (the recomputation must take the same path).
    """

    def __init__(self, layer_names: Iterable[str] = (), enabled: bool = False) -> None:
        self.layer_names: tuple[str, ...] = tuple(layer_names)
        self.enabled = enabled
        self.probs: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        """Drop the kept probabilities (and the graphs they hold)."""
        self.probs = {}

    def maps(self) -> list[torch.Tensor]:
        """The kept probabilities in layer order: a list of `(B, heads, HW, T)`."""
        return [self.probs[name] for name in self.layer_names if name in self.probs]


class CaptureAttnProcessor:
    """Cross-attention that records its probabilities into `store` while the store is enabled.

    Same math as diffusers' `AttnProcessor2_0` (head split, additive mask bias from
    `encoder_attention_mask`, output projection); the softmax runs in float32.
    """

    def __init__(self, store: AttentionStore, name: str, fallback: Callable[..., torch.Tensor]) -> None:
        self.store = store
        self.name = name
        self.fallback = fallback  # the layer's previous processor, used while the store is disabled

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if not self.store.enabled or encoder_hidden_states is None:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, cond_len, _ = encoder_hidden_states.shape
        if attention_mask is not None:
            # (B, 1, T) bias -> (B, heads, 1, T)
            attention_mask = attn.prepare_attention_mask(attention_mask, cond_len, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)  # (B, HW, inner)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)  # (B, T, inner)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # (B, heads, HW, d)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # (B, heads, T, d)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        scores = torch.matmul(query, key.transpose(-1, -2)).float() * attn.scale  # (B, heads, HW, T)
        if attention_mask is not None:
            scores = scores + attention_mask.float()
        probs = scores.softmax(dim=-1)  # (B, heads, HW, T), float32
        self.store.probs[self.name] = probs
        hidden_states = torch.matmul(probs.to(value.dtype), value)  # (B, heads, HW, d)

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def layer_resolution(unet: UNet2DConditionModel, name: str) -> int:
    """Side length of the feature map that processor `name` sees at the UNet's `sample_size`."""
    size = unet.config.sample_size
    if not isinstance(size, int):
        raise ValueError(f"attention capture needs an integer unet sample_size, got {size!r}")
    levels = len(unet.config.block_out_channels)
    match = _LAYER_NAME.match(name)
    if match is None:
        raise ValueError(f"cannot tell the block of attention layer {name!r}")
    if match.group(1) == "down_blocks":
        level = int(match.group(2))
    elif match.group(1) == "up_blocks":
        level = levels - 1 - int(match.group(2))
    else:
        level = levels - 1
    for _ in range(level):
        size = -(-size // 2)  # stride-2 convs with padding 1 round up
    return size


def cross_attention_resolutions(unet: UNet2DConditionModel) -> dict[str, int]:
    """Every cross-attention processor name of `unet` -> the side length of its feature map."""
    return {
        name: layer_resolution(unet, name)
        for name in unet.attn_processors
        if name.endswith("attn2.processor")
    }


def install_attention_capture(unet: UNet2DConditionModel, resolutions: Iterable[int]) -> AttentionStore:
    """Record the cross-attention probabilities of the layers at `resolutions`; return their store.

    `resolutions`: side lengths at the UNet's `sample_size` (see `cross_attention_resolutions`). Every
    other layer keeps its processor. Raises when a resolution has no cross-attention layer. The store
    starts disabled.
    """
    wanted = set(resolutions)
    if not wanted:
        raise ValueError("install_attention_capture needs at least one resolution")
    available = cross_attention_resolutions(unet)
    missing = wanted - set(available.values())
    if missing:
        raise ValueError(
            f"no cross-attention layer at resolution(s) {sorted(missing)}; "
            f"this unet has {sorted(set(available.values()))}"
        )
    processors = dict(unet.attn_processors)
    names = [name for name, res in available.items() if res in wanted]
    store = AttentionStore(names)
    for name in names:
        previous = processors[name]
        if isinstance(previous, CaptureAttnProcessor):
            previous = previous.fallback
        processors[name] = CaptureAttnProcessor(store, name, previous)
    unet.set_attn_processor(dict(processors))  # set_attn_processor pops from the dict it is given
    return store


def remove_attention_capture(unet: UNet2DConditionModel) -> None:
    """Put back the processors that `install_attention_capture` replaced."""
    processors = {
        name: proc.fallback if isinstance(proc, CaptureAttnProcessor) else proc
        for name, proc in unet.attn_processors.items()
    }
    unet.set_attn_processor(processors)
