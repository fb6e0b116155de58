"""Training-image geometry shared by the trainer and the feature pre-computation job.

Both must turn a shard's image into exactly the same (3, R, R) tensor: the shorter side resized
to R (bicubic, antialiased when shrinking), then a centered R x R crop. Entity masks follow the
same geometry and filter, so a mask stays aligned with its image.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from unimo_g.images.decoding import decode_image
from unimo_g.pipeline_config import DecodeConfig

DEFAULT_RESOLUTION = 256  # side R of training images when a config does not name one
RESAMPLE = Image.Resampling.BICUBIC  # for the target image and its entity masks alike


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode image bytes as the pipeline does (`unimo_g.images.decoding.decode_image`: pixel count checked
    on the header first, EXIF orientation applied, RGB with transparency on white), so that boxes
    and masks of the shard share its frame. Raises `ImageRejected`."""
    limits = DecodeConfig(max_pixels=max_pixels, min_side=1, max_aspect_ratio=float("inf"))
    return Image.fromarray(decode_image(data, limits).pixels)


def resize_crop_box(width: int, height: int, resolution: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Resized size (w, h) with the shorter side = `resolution`, and the centered crop box
    (left, top, right, bottom) in the resized image's pixels."""
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    return size, (left, top, left + resolution, top + resolution)


def _resize_crop(image: Image.Image, resolution: int) -> Image.Image:
    size, box = resize_crop_box(image.width, image.height, resolution)
    return image.resize(size, RESAMPLE).crop(box)  # PIL's resampling filters antialias when shrinking


def transform_image(image: Image.Image, resolution: int) -> torch.Tensor:
    """(3, R, R) float32 in [-1, 1] from an RGB image (shorter side to R, center crop)."""
    array = np.asarray(_resize_crop(image, resolution), dtype=np.float32)  # (R, R, 3)
    return torch.from_numpy(array / 127.5 - 1.0).permute(2, 0, 1).contiguous()


def transform_mask(mask: np.ndarray, resolution: int) -> torch.Tensor:
    """(R, R) float32 in [0, 1] from an (H, W) mask, with the geometry and filter of `transform_image`."""
    image = Image.fromarray(mask.astype(np.float32))  # mode "F"
    array = np.asarray(_resize_crop(image, resolution), dtype=np.float32)
    return torch.from_numpy(np.clip(array, 0.0, 1.0))
