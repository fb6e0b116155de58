"""Small, real prompt shards for tests: PNG targets with coloured rectangles, one grounded entity
per rectangle (box, RLE mask, entity image on white), written with the contract's Arrow schema."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from unimo_g.prompt import compose_prompt
from unimo_g.records import Entity, Phrase, Sample, ShardRow
from unimo_g.rle import encode_mask
from unimo_g.schema import VERSION_KEY, prompt_text, sample_id, shard_schema
from unimo_g.shard_rows import shard_rows

# phrase, RGB colour, rectangle as fractions (x0, y0, x1, y1) of the image
OBJECTS = (
    ("a red cube", (220, 30, 30), (0.05, 0.1, 0.4, 0.6)),
    ("a blue ball", (30, 30, 220), (0.55, 0.2, 0.95, 0.9)),
    ("a green cone", (30, 200, 30), (0.1, 0.65, 0.45, 0.95)),
)
BACKGROUND = (128, 128, 128)


def encode_image(image: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def rectangle(width: int, height: int, frac: Sequence[float]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = frac
    return round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height)


def make_row(
    index: int, num_entities: int = 2, width: int = 48, height: int = 40, image: Optional[bytes] = None
) -> dict:
    """A shard row: caption "a red cube and a blue ball in scene {index}", one entity per object.

    `image` replaces the encoded target (e.g. corrupt bytes); masks keep the drawn geometry.
    """
    pixels = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    names = [name for name, _, _ in OBJECTS[:num_entities]]
    caption = (" and ".join(names) if names else "an empty room") + f" in scene {index}"
    phrases, entities, cursor = [], [], 0
    for k, (name, colour, frac) in enumerate(OBJECTS[:num_entities]):
        start = caption.index(name, cursor)
        cursor = start + len(name)
        x0, y0, x1, y1 = rectangle(width, height, frac)
        pixels[y0:y1, x0:x1] = colour
        mask = np.zeros((height, width), bool)
        mask[y0:y1, x0:x1] = True
        segment = np.full((y1 - y0, x1 - x0, 3), 255, dtype=np.uint8)
        segment[:] = colour
        phrases.append(Phrase(name, start, start + len(name)))
        entities.append(
            Entity(
                phrase=k,
                text=name,
                start=start,
                end=start + len(name),
                box=(float(x0), float(y0), float(x1), float(y1)),
                box_score=0.9,
                mask=encode_mask(mask),
                mask_area=int(mask.sum()),
                mask_score=0.95,
                image=encode_image(Image.fromarray(segment)),
                image_format="PNG",
            )
        )
    target = image if image is not None else encode_image(Image.fromarray(pixels))
    prompt = compose_prompt(caption, [(e.start, e.end, k) for k, e in enumerate(entities)])  # all substituted
    return Sample(
        id=sample_id(target, caption),
        source_key=f"key-{index}",
        url=None,
        sha256="0" * 64,
        image=target,
        image_format="PNG",
        width=width,
        height=height,
        caption=caption,
        phrases=tuple(phrases),
        entities=tuple(entities),
        prompt=prompt,
        prompt_text=prompt_text(prompt),
    ).to_row()


def shard_row(row: dict) -> ShardRow:
    """`row` (a `make_row` dict) as the trainer reads it: through an Arrow table of the contract's schema."""
    return shard_rows(pa.Table.from_pylist([row], schema=shard_schema()))[0]


def write_shard(path: Path, rows: list[dict], row_group_size: int = 2, version: Optional[int] = None) -> str:
    """Write `rows` as one shard; `version` overrides the schema version in the metadata."""
    schema = shard_schema({"test": True})
    if version is not None:
        schema = schema.with_metadata({**schema.metadata, VERSION_KEY: str(version).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return str(path)


def write_dataset(root: Path, rows_per_file: Sequence[int], num_entities: int = 2, **row_args) -> list[str]:
    """`root/shards/part-00000.parquet`, ... with rows numbered consecutively across files."""
    files, index = [], 0
    for number, count in enumerate(rows_per_file):
        rows = [make_row(index + i, num_entities=num_entities, **row_args) for i in range(count)]
        index += count
        files.append(write_shard(root / "shards" / f"part-{number:05d}.parquet", rows))
    return files
