"""Shard rows read back into typed records: the read side of `unimo_g.schema` (every version, 1 to 4).

Columnar: each column of an Arrow table, and each field of its entity structs, becomes one Python
list, and the records are zipped from those lists, so no per-row dict is built on the way.
Coordinates are the contract's: boxes xyxy in pixels of the EXIF-transposed original, masks COCO
compressed RLE at that size, spans index `caption`.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from unimo_g.records import Entity, Mask, ShardRow

ROW_COLUMNS = ("id", "image", "caption")  # what every ShardRow holds
ENTITIES_COLUMN = "entities"  # read when the entities are needed (stage 2)
_ENTITY_FIELDS = tuple(field.name for field in dataclasses.fields(Entity))


def shard_rows(table: pa.Table) -> list[ShardRow]:
    """One `ShardRow` per row of `table`, which holds ROW_COLUMNS and, where read, ENTITIES_COLUMN
    (rows then carry their `Entity` records; otherwise none)."""
    ids, images, captions = (table.column(name).to_pylist() for name in ROW_COLUMNS)
    if ENTITIES_COLUMN not in table.column_names:
        return [ShardRow(id=i, image=image, caption=caption) for i, image, caption in zip(ids, images, captions)]
    entities = entities_per_row(table.column(ENTITIES_COLUMN))
    return [
        ShardRow(id=i, image=image, caption=caption, entities=row_entities)
        for i, image, caption, row_entities in zip(ids, images, captions, entities)
    ]


def entities_per_row(column: pa.ChunkedArray | pa.Array) -> list[tuple[Entity, ...]]:
    """Each row's entities, from a `list<schema.ENTITY_TYPE>` column (a null list: no entity)."""
    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = lists.offsets.to_pylist()  # absolute into the list's values, also for a slice
    entities = _entities(lists.flatten())  # the values from offsets[0] to offsets[-1]
    base = offsets[0]
    return [tuple(entities[start - base : end - base]) for start, end in zip(offsets, offsets[1:])]


def _entities(structs: pa.StructArray) -> list[Entity]:
    """`Entity` records of a `schema.ENTITY_TYPE` struct array, field by field."""
    fields = _field_lists(structs)
    fields["box"] = [tuple(box) for box in fields["box"]]
    masks = _field_lists(fields["mask"])
    fields["mask"] = [Mask(size=tuple(size), counts=counts) for size, counts in zip(masks["size"], masks["counts"])]
    return [Entity(*values) for values in zip(*(fields[name] for name in _ENTITY_FIELDS))]


def _field_lists(structs: pa.StructArray) -> dict[str, list]:
    """Each field of `structs` as a Python list (nested structs stay Arrow arrays, read separately)."""
    return {
        field.name: array if pa.types.is_struct(field.type) else array.to_pylist()
        for field, array in zip(structs.type, structs.flatten())
    }
