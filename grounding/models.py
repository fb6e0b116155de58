"""Loading Grounding DINO: a registry of backends and the loaded-model record.

`GroundingConfig.model` is a hub id, a local directory, or a random-weight preset built offline
(`tiny`, or `random-grounding-dino-tiny` with the published model's dimensions; see `grounding.tiny`).
Loading never trusts remote code. Devices follow `unimo_g.devices`: an absent GPU raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from unimo_g.devices import resolve_device, resolve_dtype
from unimo_g.pipeline_config import GroundingConfig

TINY = "tiny"
# Names of the random-weight presets of `grounding.tiny.RANDOM_PRESETS` (kept here so that loading
# a hub model does not import the preset builders).
RANDOM_MODELS = (TINY, "random-grounding-dino-tiny")
IMAGE_PROCESSOR_BACKEND = "pil"  # see _load_transformers
_DELIMITER_TOKENS = ("[CLS]", "[SEP]", ".", "?")  # must map to model.model.special_tokens, in order


@dataclass
class GroundingModel:
    """A loaded grounding model, ready for `detect.ground_batch`.

    `resize` is the image processor's `size` argument; `canvas` is the fixed `(height, width)`
    every resized image is padded to, so that an image's result does not depend on its batch.
    """

    model: Any  # GroundingDinoForObjectDetection, in eval mode on `device`
    image_processor: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    resize: dict
    canvas: tuple[int, int]
    name: str
    revision: Optional[str] = None


def fixed_canvas(size: Any, pad_size: Optional[int]) -> tuple[dict, tuple[int, int]]:
    """The resize argument and the fixed `(height, width)` padding canvas for an image processor.

    `size` is the processor's `size` (`shortest_edge`/`longest_edge`, `max_height`/`max_width` or
    `height`/`width`). With `pad_size`, the canvas is `pad_size` square and the resize limits are
    lowered to fit inside it; without, the canvas is the largest resized shape the processor can
    produce (`longest_edge` square for the usual shortest/longest-edge resize).
    """
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    shortest, longest = get("shortest_edge"), get("longest_edge")
    max_h, max_w, height, width = get("max_height"), get("max_width"), get("height"), get("width")
    if shortest and longest:
        if pad_size is None:
            return {"shortest_edge": shortest, "longest_edge": longest}, (longest, longest)
        limits = {"shortest_edge": min(shortest, pad_size), "longest_edge": min(longest, pad_size)}
        return limits, (pad_size, pad_size)
    if max_h and max_w:
        if pad_size is None:
            return {"max_height": max_h, "max_width": max_w}, (max_h, max_w)
        return {"max_height": min(max_h, pad_size), "max_width": min(max_w, pad_size)}, (pad_size, pad_size)
    if height and width:
        if pad_size is None:
            return {"height": height, "width": width}, (height, width)
        if max(height, width) > pad_size:
            raise ValueError(
                f"grounding.pad_size={pad_size} is smaller than the processor's fixed size {height}x{width}"
            )
        return {"height": height, "width": width}, (pad_size, pad_size)
    raise ValueError(f"unsupported image processor size {size!r}")


def _check_model(model: Any, tokenizer: Any, config: GroundingConfig, name: str) -> None:
    expected = [int(i) for i in model.model.special_tokens.tolist()]
    ids = tokenizer.convert_tokens_to_ids(list(_DELIMITER_TOKENS))
    if ids != expected:
        raise ValueError(f"{name}: tokenizer ids of {_DELIMITER_TOKENS} are {ids}, the model expects {expected}")
    if config.max_text_len > model.config.max_text_len:
        raise ValueError(
            f"grounding.max_text_len={config.max_text_len} exceeds the model's max_text_len={model.config.max_text_len}"
        )


def _load_transformers(config: GroundingConfig, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any, Any]:
    """(model, image_processor, tokenizer) from a random-weight preset, a hub id or a local directory."""
    if config.model in RANDOM_MODELS:
        from grounding.tiny import RANDOM_PRESETS

        return RANDOM_PRESETS[config.model](config.seed)
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    # The Pillow-backed processor, the published preprocessing: with torchvision installed, transformers
    # would otherwise pick its torchvision one, whose resize differs.
    processor = AutoProcessor.from_pretrained(
        config.model, revision=config.revision, trust_remote_code=False, backend=IMAGE_PROCESSOR_BACKEND
    )
    model = GroundingDinoForObjectDetection.from_pretrained(
        config.model, revision=config.revision, dtype=dtype, trust_remote_code=False
    )
    return model, processor.image_processor, processor.tokenizer


GROUNDING_BACKENDS: dict[str, Callable[[GroundingConfig, torch.device, torch.dtype], tuple[Any, Any, Any]]] = {
    "transformers": _load_transformers,
}


def load_grounding_model(config: GroundingConfig) -> GroundingModel:
    """Load the model named by `config` on `config.runtime.device` in `config.runtime.dtype`, in eval mode.

    Raises RuntimeError when the device is a GPU that is not there (no CPU fallback), ValueError
    for an unknown backend or a tokenizer whose delimiter ids do not match the model.
    """
    if config.backend not in GROUNDING_BACKENDS:
        raise ValueError(f"grounding.backend {config.backend!r} is not one of {sorted(GROUNDING_BACKENDS)}")
    device = resolve_device(config.runtime.device)
    dtype = resolve_dtype(config.runtime.dtype, device)
    model, image_processor, tokenizer = GROUNDING_BACKENDS[config.backend](config, device, dtype)
    model = model.to(device=device, dtype=dtype).eval()
    _check_model(model, tokenizer, config, config.model)
    resize, canvas = fixed_canvas(image_processor.size, config.pad_size)
    return GroundingModel(
        model=model, image_processor=image_processor, tokenizer=tokenizer, device=device, dtype=dtype,
        resize=resize, canvas=canvas, name=config.model, revision=config.revision,
    )
