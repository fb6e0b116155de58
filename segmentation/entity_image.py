"""Entity images: the SAM mask applied to the image on white, cropped to the box, squared, resized.

This is UNIMO-G's visual prompt element ("the segment on a white background"). Boxes are xyxy in
pixels of the EXIF-transposed original image; `pixels` (H, W, 3) uint8 RGB and `mask` (H, W) bool
are in the same frame.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
from PIL import Image

from unimo_g.pipeline_config import EntityImageConfig

WHITE = 255
# Lanczos: sharp for downscaling, and the usual choice for upscaling small entities as well.
RESAMPLE = Image.Resampling.LANCZOS


def _span(low: float, high: float, length: int) -> tuple[int, int]:
    """Integer pixel range [start, stop) covering [low, high), clamped to [0, length), at least 1 px."""
    start = min(max(math.floor(low), 0), length - 1)
    stop = max(min(math.ceil(high), length), start + 1)
    return start, stop


def crop_geometry(
    box: Sequence[float], image_size: tuple[int, int], margin: float
) -> tuple[tuple[int, int, int, int], int, tuple[int, int]]:
    """Where to crop and how to square an entity.

    `box`: xyxy pixels; `image_size`: (width, height) as PIL's `Image.size`; `margin`: extra
    context on every side, as a fraction of the box's longer side. Returns
    - crop box (x0, y0, x1, y1) ints: the box plus margin, rounded outwards, clamped to the image,
      and at least 1 px wide and high (degenerate boxes are expanded, boxes outside are moved in);
    - side: the square's side, max(crop width, crop height);
    - offset (dx, dy): where the crop is pasted in the square so that it is centred.
    """
    width, height = image_size
    if width < 1 or height < 1:
        raise ValueError(f"image_size must be at least 1x1, got {image_size!r}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"box must be finite, got {box!r}")
    pad = margin * max(x2 - x1, y2 - y1, 0.0)
    cx0, cx1 = _span(x1 - pad, x2 + pad, width)
    cy0, cy1 = _span(y1 - pad, y2 + pad, height)
    crop_w, crop_h = cx1 - cx0, cy1 - cy0
    side = max(crop_w, crop_h)
    offset = ((side - crop_w) // 2, (side - crop_h) // 2)
    return (cx0, cy0, cx1, cy1), side, offset


def encode_image(image: Image.Image, config: EntityImageConfig) -> bytes:
    """`image` encoded as `config.format` (WEBP at `config.webp_quality`, PNG at `config.png_compress_level`)."""
    buffer = io.BytesIO()
    if config.format == "WEBP":
        image.save(buffer, format="WEBP", quality=config.webp_quality)
    else:
        image.save(buffer, format="PNG", compress_level=config.png_compress_level)
    return buffer.getvalue()


def entity_image(
    pixels: np.ndarray, mask: np.ndarray, box: Sequence[float], config: EntityImageConfig
) -> bytes:
    """The entity segment as encoded bytes: `config.size` x `config.size` RGB, white off the mask.

    `pixels` (H, W, 3) uint8; `mask` (H, W) bool; `box` xyxy pixels. The crop is the box plus
    `config.margin` (see `crop_geometry`), padded with white to a centred square, then resized.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be (H, W, 3) uint8, got {pixels.shape} {pixels.dtype}")
    if mask.shape != pixels.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {pixels.shape[:2]}")
    height, width = mask.shape
    (x0, y0, x1, y1), side, (dx, dy) = crop_geometry(box, (width, height), config.margin)
    crop = np.where(mask[y0:y1, x0:x1, None], pixels[y0:y1, x0:x1], np.uint8(WHITE))  # (h, w, 3)
    square = np.full((side, side, 3), WHITE, dtype=np.uint8)
    square[dy : dy + crop.shape[0], dx : dx + crop.shape[1]] = crop
    image = Image.fromarray(square)  # (side, side, 3) uint8 -> RGB
    if side != config.size:
        image = image.resize((config.size, config.size), resample=RESAMPLE)
    return encode_image(image, config)
