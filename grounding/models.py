"""Loading Grounding DINO through transformers, and the loaded-model record.

`GroundingConfig.model` is a hub id, a local directory, or a random-weight preset built offline
(`tiny`, or `random-grounding-dino-tiny` with the published model's dimensions; see `grounding.tiny`).
Loading never trusts remote code. Devices follow `unimo_g.devices`: an absent GPU raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from unimo_g.config_tools import check_backend
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

    `resize` is the image processor's own `size` argument (the published preprocessing, never
    lowered); `canvases` are the `(height, width)` padding canvases, smallest area first: each image
    is padded to the first one that holds its resized shape (`canvas_for`), so that its input does not
    depend on the other images of its batch.
    """

    model: Any  # GroundingDinoForObjectDetection, in eval mode on `device`
    image_processor: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    resize: dict
    canvases: tuple[tuple[int, int], ...]
    name: str
    revision: Optional[str] = None


def canvas_for(canvases: Sequence[tuple[int, int]], resized: tuple[int, int]) -> tuple[int, int]:
    """The first canvas of `canvases` (smallest first) that holds a resized `(h, w)` image."""
    for canvas in canvases:
        if resized[0] <= canvas[0] and resized[1] <= canvas[1]:
            return canvas
    raise ValueError(f"no canvas of {list(canvases)} holds a resized image of {resized}")


def canvas_buckets(size: Any, aspects: Sequence[float]) -> tuple[dict, tuple[tuple[int, int], ...]]:
    """The processor's resize argument, unchanged, and the padding canvases for it, smallest area first.

    `size` is the processor's `size` (`shortest_edge`/`longest_edge`, `max_height`/`max_width` or
    `height`/`width`). For a shortest/longest-edge resize, a landscape image reaches at most
    `(shortest, longest)` and a portrait one `(longest, shortest)`: the canvases are
    `(shortest, min(longest, ceil(shortest * a)))` for each aspect `a` and `(shortest, longest)`, and
    their transposes. The other resizes have one largest shape, which is the one canvas.
    """
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    shortest, longest = get("shortest_edge"), get("longest_edge")
    max_h, max_w, height, width = get("max_height"), get("max_width"), get("height"), get("width")
    if shortest and longest:
        sides = {min(longest, math.ceil(shortest * aspect - 1e-9)) for aspect in aspects} | {longest}
        landscape = {(shortest, side) for side in sides if side >= shortest}
        canvases = landscape | {(w, h) for h, w in landscape}
        ordered = tuple(sorted(canvases, key=lambda c: (c[0] * c[1], c[0])))
        return {"shortest_edge": shortest, "longest_edge": longest}, ordered
    if max_h and max_w:
        return {"max_height": max_h, "max_width": max_w}, ((max_h, max_w),)
    if height and width:
        return {"height": height, "width": width}, ((height, width),)
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


def load_grounding_model(config: GroundingConfig) -> GroundingModel:
    """Load the model named by `config` on `config.runtime.device` in `config.runtime.dtype`, in eval mode.

    Raises RuntimeError when the device is a GPU that is not there (no CPU fallback), ValueError
    for an unknown backend or a tokenizer whose delimiter ids do not match the model.
    """
    check_backend("grounding", config.backend)
    device = resolve_device(config.runtime.device)
    dtype = resolve_dtype(config.runtime.dtype, device)
    model, image_processor, tokenizer = _load_transformers(config, device, dtype)
    model = model.to(device=device, dtype=dtype).eval()
    _check_model(model, tokenizer, config, config.model)
    resize, canvases = canvas_buckets(image_processor.size, config.canvas_aspects)
    return GroundingModel(
        model=model, image_processor=image_processor, tokenizer=tokenizer, device=device, dtype=dtype,
        resize=resize, canvases=canvases, name=config.model, revision=config.revision,
    )
