"""Mask quality filters (pure numpy).

Boxes are xyxy in pixels of the EXIF-transposed original image, continuous coordinates: pixel
(row r, column c) covers the square [c, c+1) x [r, r+1). Masks are (H, W) bool arrays in that frame.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from unimo_g.pipeline_config import SegmentationConfig

# Reject reasons: short stable tokens counted in metrics and the manifest.
REASON_EMPTY_MASK = "empty_mask"
REASON_MASK_SCORE = "mask_score"
REASON_MASK_AREA = "mask_area"
REASON_BOX_FILL = "box_fill"


def box_area(box: Sequence[float]) -> float:
    """Area of an xyxy box; 0.0 for an empty or inverted box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _overlap_weights(low: float, high: float, length: int) -> tuple[int, int, np.ndarray]:
    """For pixels [start, stop) along one axis, the length of each pixel's overlap with [low, high)."""
    start = min(max(int(np.floor(low)), 0), length)
    stop = max(min(int(np.ceil(high)), length), start)
    edges = np.arange(start, stop + 1, dtype=np.float64)
    weights = np.clip(np.minimum(edges[1:], high) - np.maximum(edges[:-1], low), 0.0, 1.0)  # (stop - start,)
    return start, stop, weights


def box_fill(mask: np.ndarray, box: Sequence[float]) -> float:
    """Fraction of the box covered by the mask: area(mask ∩ box) / area(box), in [0, 1].

    `mask` (H, W) bool; pixels cut by the box edge count by their overlapping area, so a mask that
    covers the whole box has fill 1.0 for fractional boxes too. A box of zero area has fill 0.0.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    area = box_area(box)
    if area <= 0.0:
        return 0.0
    x1, y1, x2, y2 = (float(v) for v in box)
    height, width = mask.shape
    col0, col1, wx = _overlap_weights(x1, x2, width)
    row0, row1, wy = _overlap_weights(y1, y2, height)
    inside = wy @ mask[row0:row1, col0:col1].astype(np.float64) @ wx  # scalar
    return min(1.0, float(inside) / area)


def mask_filter_reason(
    mask_area: int,
    box: Sequence[float],
    mask_score: float,
    image_area: int,
    config: SegmentationConfig,
    *,
    fill: Optional[float] = None,
) -> Optional[str]:
    """Why a mask fails the segmentation filters, or None when it passes.

    `mask_area`: foreground pixels of the mask; `box`: its prompt box (xyxy pixels);
    `mask_score`: SAM's predicted IoU; `image_area`: H * W. `fill` is the box fill as measured by
    `box_fill(mask, box)`; when omitted it is taken as mask_area / box area (the same value for a
    mask that lies inside its box). Checks run in a fixed order and the first failure is returned:
    "empty_mask", "mask_score", "mask_area" (area / image area), "box_fill". Each threshold is a
    minimum; a value equal to it passes.
    """
    if image_area < 1:
        raise ValueError(f"image_area must be >= 1, got {image_area!r}")
    if mask_area <= 0:
        return REASON_EMPTY_MASK
    if mask_score < config.min_mask_score:
        return REASON_MASK_SCORE
    if mask_area / image_area < config.min_mask_area_ratio:
        return REASON_MASK_AREA
    if fill is None:
        area = box_area(box)
        fill = mask_area / area if area > 0.0 else 0.0
    if fill < config.min_box_fill:
        return REASON_BOX_FILL
    return None
