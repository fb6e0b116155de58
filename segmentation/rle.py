"""Binary masks <-> COCO compressed RLE (the shard's `entities.mask`), via pycocotools.

Masks are `(H, W)` bool arrays in the frame of the EXIF-transposed original image; the RLE's
`size` is `[H, W]` and its `counts` run column-major (COCO's convention).
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as coco_mask

from unimo_g.records import Mask


def encode_mask(mask: np.ndarray) -> Mask:
    """COCO compressed RLE of `mask` (H, W) bool; `counts` as an ASCII str."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.shape[0] < 1 or mask.shape[1] < 1:
        raise ValueError(f"mask must have at least one pixel, got shape {mask.shape}")
    rle = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))  # pycocotools wants Fortran order
    height, width = (int(v) for v in rle["size"])
    return Mask(size=(height, width), counts=rle["counts"].decode("ascii"))


def _coco_rle(mask: Mask) -> dict:
    height, width = mask.size
    return {"size": [int(height), int(width)], "counts": mask.counts.encode("ascii")}


def decode_mask(mask: Mask) -> np.ndarray:
    """The (H, W) bool array of an RLE `mask` (exact inverse of `encode_mask`)."""
    return coco_mask.decode(_coco_rle(mask)).astype(bool)


def mask_area(mask: Mask | np.ndarray) -> int:
    """Foreground pixel count of an RLE `Mask` (without decoding) or of an (H, W) bool array."""
    if isinstance(mask, np.ndarray):
        return int(np.count_nonzero(mask))
    return int(coco_mask.area(_coco_rle(mask)))
