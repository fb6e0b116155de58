"""Image batches for vision models as torch ops on the model's device, byte-exact with the
PIL-backed image processors of transformers (Grounding DINO, SAM).

A processor resizes each `(H, W, 3)` uint8 RGB image with Pillow's bilinear filter (antialiased when
shrinking; 8-bit fixed-point arithmetic, two separable passes each rounded to uint8), rescales by
`rescale_factor` in float64, casts to float32, normalises by mean/std in float32, and pads to a canvas
with zeros at the bottom and right. Here:

- the resize is Pillow's algorithm reproduced in int32 torch ops (`resize_bilinear_uint8`): the same
  coefficients, rounding and pass order (Pillow 12.3's; the tests compare against the installed
  Pillow), so the resized bytes are identical on any device. On the CPU device Pillow itself does
  the resize (it is faster there, and the bytes are the same);
- rescale + normalise is a lookup in a `(3, 256)` table computed with the processor's own numpy
  operations (`value_table`), so the float values are identical too;
- each image is resized alone and written into a preallocated zero canvas: an image's pixels do not
  depend on the other images of its batch.

On a GPU the CPU only uploads uint8 bytes; resizing, normalising and padding run on the device.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

# Pillow's fixed-point precision of 8-bit resampling coefficients (libImaging/Resample.c).
PRECISION_BITS = 22
# Pillow resizes an image taller than this many times its width vertically first when it shrinks
# the height (Image.resize); the order changes the rounding of the intermediate image.
TALL_RATIO = 100
NUM_LEVELS = 256  # uint8 pixel values
NUM_CHANNELS = 3
BILINEAR = int(Image.Resampling.BILINEAR)


@functools.lru_cache(maxsize=4096)
def bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's bilinear resampling coefficients from `in_size` to `out_size` pixels along one axis.

    Returns `index` `(out_size, K)` int64, the input pixels each output pixel reads, and `weight`
    `(out_size, K)` int32, their weights in fixed point (sum ~ 2**PRECISION_BITS); unused taps have
    weight 0 and a valid index. Mirrors `precompute_coeffs` + `normalize_coeffs_8bpc` in float64,
    including the sequential sum of the weights. Read-only arrays (cached).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be >= 1, got {in_size} -> {out_size}")
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear filter's support is 1
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale  # (out,)
    inv_filterscale = 1.0 / filterscale
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)  # C casts truncate
    count = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    weights = np.zeros((out_size, ksize), dtype=np.float64)
    total = np.zeros(out_size, dtype=np.float64)
    for x in range(ksize):  # left to right, as Pillow sums them
        distance = np.abs(((x + xmin) - center + 0.5) * inv_filterscale)
        weights[:, x] = np.where((x < count) & (distance < 1.0), 1.0 - distance, 0.0)
        total += weights[:, x]
    nonzero = total != 0.0
    weights[nonzero] /= total[nonzero, None]
    fixed = np.trunc(0.5 + weights * (1 << PRECISION_BITS)).astype(np.int32)  # weights are >= 0
    index = np.minimum(xmin[:, None] + np.arange(ksize)[None, :], in_size - 1)
    used = int(np.nonzero(fixed.any(axis=0))[0].max()) + 1  # drop trailing all-zero taps
    index, fixed = index[:, :used].copy(), fixed[:, :used].copy()
    index.flags.writeable = fixed.flags.writeable = False
    return index, fixed


def _resample_rows(pixels: torch.Tensor, out_size: int) -> torch.Tensor:
    """One Pillow pass along dim 0: `(N, M, C)` int32 in 0..255 -> `(out_size, M, C)` int32 in 0..255."""
    index, weight = bilinear_taps(pixels.shape[0], out_size)
    index = torch.tensor(index, device=pixels.device)  # copies the read-only cached arrays
    weight = torch.tensor(weight, device=pixels.device)
    acc = torch.full((out_size,) + tuple(pixels.shape[1:]), 1 << (PRECISION_BITS - 1), dtype=torch.int32,
                     device=pixels.device)  # rounding offset, as Pillow starts its sums
    for tap in range(index.shape[1]):
        acc += pixels.index_select(0, index[:, tap]) * weight[:, tap, None, None]
    return (acc >> PRECISION_BITS).clamp_(0, NUM_LEVELS - 1)


def _horizontal(pixels: torch.Tensor, width: int) -> torch.Tensor:
    if pixels.shape[1] == width:
        return pixels
    return _resample_rows(pixels.transpose(0, 1).contiguous(), width).transpose(0, 1).contiguous()


def _vertical(pixels: torch.Tensor, height: int) -> torch.Tensor:
    return pixels if pixels.shape[0] == height else _resample_rows(pixels, height)


def resize_bilinear_uint8(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`(H, W, C)` uint8 -> `(h, w, C)` uint8 with `size = (h, w)`, on `pixels.device`, equal byte for
    byte to `PIL.Image.resize((w, h), Image.BILINEAR)` (antialiased when shrinking)."""
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"target size must be >= 1 pixel per side, got {size}")
    in_height, in_width = pixels.shape[:2]
    work = pixels.to(torch.int32)
    if in_height > in_width * TALL_RATIO and height < in_height:
        work = _horizontal(_vertical(work, height), width)
    else:
        work = _vertical(_horizontal(work, width), height)
    return work.to(torch.uint8)


def resize_with_pil(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`(H, W, 3)` uint8 -> `(h, w, 3)` uint8 with Pillow's bilinear filter, as the processors resize."""
    height, width = size
    return np.asarray(Image.fromarray(image).resize((width, height), BILINEAR))


def value_table(
    rescale_factor: Optional[float], mean: Optional[Sequence[float]], std: Optional[Sequence[float]]
) -> np.ndarray:
    """`(3, 256)` float32: the processor's output value for each channel and uint8 input value.

    Rescale (if `rescale_factor`) as transformers does it: float64 product cast to float32; then
    normalise (if `mean`) in float32: `(value - mean) / std`. A lookup in this table equals running
    those numpy operations on the resized image.
    """
    values = np.arange(NUM_LEVELS, dtype=np.uint8)
    if rescale_factor is not None:
        table = (values.astype(np.float64) * rescale_factor).astype(np.float32)
    else:
        table = values.astype(np.float32)
    table = np.broadcast_to(table, (NUM_CHANNELS, NUM_LEVELS))
    if mean is not None:
        mean32 = np.broadcast_to(np.asarray(mean, dtype=np.float32), (NUM_CHANNELS,))
        std32 = np.broadcast_to(np.asarray(std, dtype=np.float32), (NUM_CHANNELS,))
        table = (table - mean32[:, None]) / std32[:, None]
    return np.ascontiguousarray(table, dtype=np.float32)


def _is_bilinear(resample: Any) -> bool:
    """A processor's `resample`: None (its bilinear default), Pillow's or transformers' enum, an int,
    or another library's enum named BILINEAR."""
    if resample is None:
        return True
    name = getattr(resample, "name", None)
    return name.upper() == "BILINEAR" if isinstance(name, str) else int(resample) == BILINEAR


def processor_value_table(image_processor: Any) -> np.ndarray:
    """`value_table` from an image processor's `do_rescale`, `rescale_factor`, `do_normalize`,
    `image_mean`, `image_std`. Raises ValueError for settings `batch_images` does not reproduce
    (a resampling filter other than bilinear, no resize)."""
    resample = getattr(image_processor, "resample", None)
    if not _is_bilinear(resample):
        raise ValueError(
            f"{type(image_processor).__name__}.resample={resample!r}: the tensor preprocessing implements "
            "bilinear only; use preprocess='processor'"
        )
    if getattr(image_processor, "do_resize", True) is False:
        raise ValueError(f"{type(image_processor).__name__}.do_resize=False: use preprocess='processor'")
    rescale = image_processor.rescale_factor if getattr(image_processor, "do_rescale", False) else None
    normalize = getattr(image_processor, "do_normalize", False)
    mean = image_processor.image_mean if normalize else None
    std = image_processor.image_std if normalize else None
    return value_table(rescale, mean, std)


def _uint8_tensor(image: np.ndarray) -> torch.Tensor:
    array = np.ascontiguousarray(image)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def batch_images(
    images: Sequence[np.ndarray],
    sizes: Sequence[tuple[int, int]],
    canvas: tuple[int, int],
    table: np.ndarray,
    device: torch.device,
    dtype: torch.dtype,
    pil_on_cpu: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize, normalise and pad `images` into one batch on `device`.

    `images[i]`: `(H_i, W_i, 3)` uint8 RGB; `sizes[i] = (h_i, w_i)`: its resized size, at most
    `canvas = (canvas_h, canvas_w)`; `table`: `(3, 256)` from `value_table`.

    Returns `pixels` `(B, 3, canvas_h, canvas_w)` in `dtype`: image i resized to `(h_i, w_i)` in the
    top-left corner (pixel (y, x) of the resized image at `[i, :, y, x]`), zeros elsewhere; and
    `pixel_mask` `(B, canvas_h, canvas_w)` int64, 1 on the image and 0 on the padding. With
    `pil_on_cpu`, a CPU device resizes with Pillow (same bytes as `resize_bilinear_uint8`, faster).
    """
    if len(images) != len(sizes):
        raise ValueError(f"{len(images)} images but {len(sizes)} sizes")
    device = torch.device(device)
    canvas_h, canvas_w = canvas
    pixels = torch.zeros((len(images), NUM_CHANNELS, canvas_h, canvas_w), dtype=dtype, device=device)
    pixel_mask = torch.zeros((len(images), canvas_h, canvas_w), dtype=torch.int64, device=device)
    flat_table = torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32)).to(device, dtype).flatten()
    channel_offset = torch.arange(NUM_CHANNELS, device=device)[:, None, None] * NUM_LEVELS  # (3, 1, 1)
    for i, (image, (height, width)) in enumerate(zip(images, sizes)):
        if image.ndim != 3 or image.shape[2] != NUM_CHANNELS or image.dtype != np.uint8:
            raise ValueError(f"image {i}: expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if not (1 <= height <= canvas_h and 1 <= width <= canvas_w):
            raise ValueError(f"image {i}: resized size {(height, width)} does not fit the canvas {canvas}")
        if device.type == "cpu" and pil_on_cpu:
            resized = _uint8_tensor(resize_with_pil(image, (height, width)))  # (h, w, 3)
        else:
            resized = resize_bilinear_uint8(_uint8_tensor(image).to(device), (height, width))  # (h, w, 3)
        lookup = resized.permute(2, 0, 1).contiguous().to(torch.int64)  # (3, h, w) values 0..255
        lookup += channel_offset  # row of the flattened (3, 256) table
        pixels[i, :, :height, :width] = torch.take(flat_table, lookup)
        pixel_mask[i, :height, :width] = 1
    return pixels, pixel_mask
