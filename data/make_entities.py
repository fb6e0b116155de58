"""Rebuild the bundled entity images `data/entities/` from the bundled sample photos, with Pillow only.

An entity image is what the pipeline makes of a grounded entity (segmentation/entity_image.py): the
segment on white, cropped to its box, centred on a white square and resized with Lanczos. Here the
segment is a fixed ellipse drawn by hand around the face, not a SAM mask, so the file is the same on
every machine and needs no model:

    data/entities/cat.png   the face of the tabby cat of data/sample/00000/000000001.jpg
                            (scikit-image's `chelsea`, CC0 by Stefan van der Walt), 224x224 PNG

The README's generation examples use it as the entity of a prompt: `a <img>data/entities/cat.png</img>
on a sofa`. With the same Pillow build (its libjpeg-turbo decodes the JPEG, its zlib writes the PNG)
the output is byte-identical to the shipped file.

Usage:
    python data/make_entities.py [--out data/entities]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

DATA = Path(__file__).parent
WHITE = (255, 255, 255)
SIZE = 224  # the pipeline's default entity_image.size (configs/default.yaml)
RESAMPLE = Image.Resampling.LANCZOS  # the filter the pipeline resizes entity segments with
PNG_COMPRESS_LEVEL = 9  # lossless at any level; 9 keeps the bundled file small


@dataclass(frozen=True)
class Entity:
    file: str  # file name written under the output folder
    photo: str  # source photo, relative to data/
    ellipse: tuple[int, int, int, int]  # the segment: an ellipse's bounding box, xyxy pixels of the photo


ENTITIES = (
    # the cat's face: eyes at about (170, 115) and (318, 137), nose at (262, 245) in the 451x300 photo
    Entity("cat.png", "sample/00000/000000001.jpg", (95, 0, 375, 300)),
)


def entity_image(photo: Image.Image, ellipse: tuple[int, int, int, int], size: int = SIZE) -> Image.Image:
    """The ellipse's segment of `photo` on white, cropped to the ellipse's box (clamped to the photo),
    centred on a white square and resized to `size` x `size`: the steps of the pipeline's entity images."""
    photo = photo.convert("RGB")
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).ellipse(ellipse, fill=255)
    segment = Image.composite(photo, Image.new("RGB", photo.size, WHITE), mask)
    x0, y0, x1, y1 = ellipse
    crop = segment.crop((max(x0, 0), max(y0, 0), min(x1, photo.width), min(y1, photo.height)))
    side = max(crop.size)
    square = Image.new("RGB", (side, side), WHITE)
    square.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
    return square if side == size else square.resize((size, size), resample=RESAMPLE)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DATA / "entities"), help="folder to (re)write")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for entity in ENTITIES:
        with Image.open(DATA / entity.photo) as photo:
            image = entity_image(photo, entity.ellipse)
        path = out / entity.file
        image.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        print(f"wrote {path} ({image.width}x{image.height}, {path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
