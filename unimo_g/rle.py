"""Binary masks <-> COCO compressed RLE (the shard's `entities.mask`), via pycocotools.

This is the contract-level encoding both the data pipeline and the trainer read and write. Masks
are `(H, W)` bool arrays in the frame of the EXIF-transposed original image; the RLE's `size` is
`[H, W]` and its `counts` run column-major (COCO's convention), stored as an ASCII string.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as coco_mask

from unimo_g.records import Mask


def encode_mask(mask: np.ndarray) -> Mask:
    """COCO compressed RLE of `mask`, an (H, W) array (nonzero = foreground)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.shape[0] < 1 or mask.shape[1] < 1:
        raise ValueError(f"mask must have at least one pixel, got shape {mask.shape}")
    rle = coco_mask.encode(np.asfortranarray(mask != 0, dtype=np.uint8))  # pycocotools wants Fortran order
    height, width = (int(v) for v in rle["size"])
    return Mask(size=(height, width), counts=rle["counts"].decode("ascii"))


def decode_mask(size: Sequence[int], counts: str | bytes) -> np.ndarray:
    """The (H, W) bool array of the RLE with `size == [H, W]` and compressed `counts`.

    Raises ValueError for a malformed size or counts that do not describe exactly H*W pixels.
    """
    if len(size) != 2 or int(size[0]) < 1 or int(size[1]) < 1:
        raise ValueError(f"RLE size must be [height, width] with both >= 1, got {list(size)}")
    height, width = int(size[0]), int(size[1])
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    rle = {"size": [height, width], "counts": raw}
    # pycocotools does not check that the runs add up to H*W; a short or long RLE decodes silently wrong.
    if _total_run_length(raw) != height * width:
        raise ValueError(f"RLE counts do not describe a {height}x{width} mask")
    return coco_mask.decode(rle).astype(bool)


def mask_area(size: Sequence[int], counts: str | bytes) -> int:
    """Foreground pixel count of an RLE, without decoding it."""
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    return int(coco_mask.area({"size": [int(size[0]), int(size[1])], "counts": raw}))


def _total_run_length(counts: bytes) -> int:
    """Sum of the run lengths in COCO's compressed counts string (the inverse of its LEB128-like code)."""
    total, previous, index, position = 0, [], 0, 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            char = counts[position] - 48
            if char < 0 or char > 63:
                raise ValueError(f"RLE counts hold a character outside COCO's alphabet: {chr(counts[position])!r}")
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            position += 1
            shift += 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
            if more and position >= len(counts):
                raise ValueError("RLE counts end in the middle of a run")
        if index > 2:  # runs after the second are stored as differences (COCO's rleFrString)
            value += previous[index - 2]
        if value < 0:
            raise ValueError("RLE counts decode to a negative run")
        previous.append(value)
        total += value
        index += 1
    return total
