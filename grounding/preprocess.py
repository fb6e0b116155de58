"""Grounding DINO's image preprocessing as torch ops on the model's device.

Equal to `model.image_processor(images, size=model.resize, do_pad=True, pad_size=canvas)` (the PIL
backend of `GroundingDinoImageProcessor`): the same resized size (the published shortest edge 800 /
longest edge 1333), Pillow's bilinear resize reproduced byte for byte, the processor's rescale and
mean/std, zero padding to the image's canvas (`image_canvas`) and the same pixel mask (see
`unimo_g.images.model_batches`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from transformers.image_transforms import get_size_with_aspect_ratio
from transformers.image_utils import get_image_size_for_max_height_width

from grounding.models import GroundingModel, canvas_for
from unimo_g.images.model_batches import batch_images, processor_value_table


def resized_size(height: int, width: int, resize: Mapping[str, int]) -> tuple[int, int]:
    """`(h, w)` the processor resizes an `(height, width)` image to, for its `size` argument `resize`
    (`shortest_edge`/`longest_edge`, `max_height`/`max_width` or `height`/`width`), with the
    processor's own size helpers and branch order."""
    shortest, longest = resize.get("shortest_edge"), resize.get("longest_edge")
    if shortest and longest:
        return tuple(get_size_with_aspect_ratio((height, width), shortest, longest))
    max_height, max_width = resize.get("max_height"), resize.get("max_width")
    if max_height and max_width:
        return tuple(get_image_size_for_max_height_width((height, width), max_height, max_width))
    fixed_height, fixed_width = resize.get("height"), resize.get("width")
    if fixed_height and fixed_width:
        return (fixed_height, fixed_width)
    raise ValueError(f"unsupported resize {dict(resize)!r}")


def image_canvas(model: GroundingModel, image: np.ndarray) -> tuple[int, int]:
    """The `(height, width)` canvas an `(H, W, 3)` image is padded to: the smallest of `model.canvases`
    that holds its resized shape. It depends on the image's own shape only."""
    return canvas_for(model.canvases, resized_size(int(image.shape[0]), int(image.shape[1]), model.resize))


def preprocess_images(
    model: GroundingModel, images: Sequence[np.ndarray], canvas: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """`pixel_values` `(B, 3, H_c, W_c)` in `model.dtype` and `pixel_mask` `(B, H_c, W_c)` int64, both
    on `model.device`, where `(H_c, W_c) = canvas` holds every image's resized shape. `images[i]`:
    `(H, W, 3)` uint8 RGB; each is resized to `resized_size(H, W, model.resize)` in the top-left
    corner of the canvas."""
    sizes = [resized_size(int(image.shape[0]), int(image.shape[1]), model.resize) for image in images]
    table = processor_value_table(model.image_processor)
    return batch_images(images, sizes, canvas, table, model.device, model.dtype)
