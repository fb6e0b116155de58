"""SAM's image pre- and post-processing as torch ops on the model's device.

`preprocess_images` equals `SamImageProcessor` (PIL backend): longest side resized to
`size["longest_edge"]` (Pillow's bilinear resize reproduced byte for byte, see
`unimo_g.images.model_batches`), rescaled and normalised with the processor's values, zero-padded to its
`pad_size`. `mask_logits_at_original_size` is `SamImageProcessor.post_process_masks` before the
threshold, written out so that only the thresholded boolean mask leaves the device.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from segmentation.models import SegmentationModel
from unimo_g.images.model_batches import batch_images, processor_value_table


def resized_size(height: int, width: int, longest_edge: int) -> tuple[int, int]:
    """`(h, w)` SAM's processor resizes an `(height, width)` image to: the longest side to
    `longest_edge`, the other scaled alike and rounded half up (`_get_preprocess_shape`)."""
    scale = longest_edge * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def canvas_of(model: SegmentationModel) -> tuple[int, int]:
    """The processor's fixed padding canvas `(height, width)`."""
    pad_size = model.processor.image_processor.pad_size
    return int(pad_size["height"]), int(pad_size["width"])


def preprocess_images(
    model: SegmentationModel, images: Sequence[np.ndarray]
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """`pixel_values` `(B, 3, H_c, W_c)` in `model.dtype` on `model.device` (`(H_c, W_c)` the
    processor's `pad_size`) and each image's resized `(h, w)` (the processor's `reshaped_input_sizes`).
    `images[i]`: `(H, W, 3)` uint8 RGB; image i fills the top-left `(h_i, w_i)` of its canvas."""
    image_processor = model.processor.image_processor
    longest_edge = int(image_processor.size["longest_edge"])
    sizes = [resized_size(int(image.shape[0]), int(image.shape[1]), longest_edge) for image in images]
    table = processor_value_table(image_processor)
    pixels, _ = batch_images(images, sizes, canvas_of(model), table, model.device, model.dtype)
    return pixels, sizes


def mask_logits_at_original_size(
    low_res: torch.Tensor,
    canvas: tuple[int, int],
    resized_size: tuple[int, int],
    original_size: tuple[int, int],
) -> torch.Tensor:
    """SAM's low-resolution mask logits `(N, 1, h', w')` -> `(N, 1, H, W)` logits in pixels of the
    original image `original_size = (H, W)`, on `low_res.device`.

    The steps of `post_process_masks`: bilinear upsampling (align_corners=False) to the padded
    canvas, crop to the resized image `resized_size`, bilinear resize to the original size.
    """
    upsampled = F.interpolate(low_res, canvas, mode="bilinear", align_corners=False)  # (N, 1, H_c, W_c)
    cropped = upsampled[..., : resized_size[0], : resized_size[1]]  # (N, 1, h, w)
    return F.interpolate(cropped, original_size, mode="bilinear", align_corners=False)  # (N, 1, H, W)
