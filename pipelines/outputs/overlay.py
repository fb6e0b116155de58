"""An image of a row with its entities drawn on it: each mask tinted, each box outlined and each
entity labelled, one colour per entity (`entity_color`), with labels that never cover one another.

Coordinates: `box` is xyxy in pixels of the EXIF-transposed original image (W, H); `mask` is COCO
compressed RLE that decodes to (H, W). A label ("k: text  box <score>  mask <score>") goes inside
its box's top-left corner, or to the nearest free place in that column (`place_labels`): with the
corner above the box, boxes with close corners stacked their labels and later entities hid
earlier ones.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unimo_g.rle import decode_mask

# One colour per entity index (cycled): Tableau 10, distinguishable on photos.
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels, x1 and y1 exclusive
LABEL_PAD = 2  # pixels around a label's text


def entity_color(k: int) -> tuple[int, int, int]:
    return PALETTE[k % len(PALETTE)]


def _font(image_size: tuple[int, int]):
    size = max(11, max(image_size) // 40)
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def label_text(k: int, entity: Mapping) -> str:
    return f"{k}: {entity['text']}  box {entity['box_score']:.2f}  mask {entity['mask_score']:.2f}"


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _slots(y: int, height: int, image_height: int) -> list[int]:
    """Label tops in steps of `height` from `y` inside the image, nearest first (below before above)."""
    steps = range(image_height // max(1, height) + 2)
    tops = [y + sign * step * height for step in steps for sign in ((1,) if step == 0 else (1, -1))]
    return [top for top in tops if 0 <= top <= image_height - height]


def place_labels(corners: Sequence[tuple[float, float]], sizes: Sequence[tuple[int, int]],
                 image_size: tuple[int, int]) -> list[Rect]:
    """A rectangle per label of `sizes` (w, h), in order: at its `corners` (its box's top-left) moved
    into the image, else the nearest slot in that column that no earlier label takes. A label that
    finds no free slot (more labels than the column holds) keeps its corner."""
    width, height = image_size
    placed: list[Rect] = []
    for (x, y), (w, h) in zip(corners, sizes):
        left = int(min(max(0.0, x), max(0, width - w)))
        top = int(min(max(0.0, y), max(0, height - h)))
        free = (t for t in _slots(top, h, height)
                if not any(_overlaps((left, t, left + w, t + h), other) for other in placed))
        top = next(free, top)
        placed.append((left, top, left + w, top + h))
    return placed


def label_rects(entities: Sequence[Mapping], image_size: tuple[int, int]) -> list[Rect]:
    """Where `draw_overlay` puts each entity's label on an image of `image_size` (W, H)."""
    font = _font(image_size)
    sizes = []
    for k, entity in enumerate(entities):
        left, top, right, bottom = font.getbbox(label_text(k, entity))
        sizes.append((int(np.ceil(right - left)) + 2 * LABEL_PAD, int(np.ceil(bottom - top)) + 2 * LABEL_PAD))
    return place_labels([(e["box"][0], e["box"][1]) for e in entities], sizes, image_size)


def draw_overlay(image: Image.Image, entities: Sequence[Mapping], alpha: float = 0.45) -> Image.Image:
    """The image (RGB copy) with each entity's mask tinted, box outlined and label (`label_rects`),
    one colour per entity. `image` is the EXIF-transposed original (W, H); each entity's `mask`
    decodes to (H, W) and its `box` is xyxy in that image's pixels. Raises ValueError when a mask's
    size differs from the image's."""
    canvas = np.asarray(image.convert("RGB"), dtype=np.float32).copy()  # (H, W, 3)
    for k, entity in enumerate(entities):
        mask = decode_mask(entity["mask"]["size"], entity["mask"]["counts"])  # (H, W)
        if mask.shape != canvas.shape[:2]:
            raise ValueError(f"entity {k}: mask is {mask.shape}, image is {canvas.shape[:2]}")
        canvas[mask] = (1.0 - alpha) * canvas[mask] + alpha * np.asarray(entity_color(k), dtype=np.float32)
    out = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    line = max(2, max(out.size) // 250)
    for k, entity in enumerate(entities):  # every box first: no outline crosses a label
        x1, y1, x2, y2 = (float(v) for v in entity["box"])
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=entity_color(k), width=line)
    font = _font(out.size)
    for k, (entity, rect) in enumerate(zip(entities, label_rects(entities, out.size))):
        text = label_text(k, entity)
        draw.rectangle([rect[0], rect[1], rect[2] - 1, rect[3] - 1], fill=entity_color(k))
        left, top, _, _ = font.getbbox(text)
        draw.text((rect[0] + LABEL_PAD - left, rect[1] + LABEL_PAD - top), text, fill=(255, 255, 255), font=font)
    return out
