"""The shard contract's read side: rows of any table slice read back into the records they were written from."""

import io

import pyarrow as pa
import pyarrow.parquet as pq

from unimo_g.records import Entity, Mask, Sample, ShardRow
from unimo_g.schema import sample_id, shard_schema
from unimo_g.shard_rows import ENTITIES_COLUMN, ROW_COLUMNS, shard_rows


def _entity(k: int) -> Entity:
    """Scores and box corners exact in float32, so the entity read back equals the record."""
    return Entity(
        phrase=k, text=f"thing {k}", start=4 * k, end=4 * k + 3, box=(1.0 + k, 2.0, 30.5, 40.25), box_score=0.5,
        mask=Mask(size=(48, 64), counts=f"rle{k}"), mask_area=100 + k, mask_score=0.75, image=bytes([k]) * 3,
        image_format="PNG",
    )


def _sample(index: int, entities: int) -> Sample:
    caption = f"caption {index}"
    image = f"image {index}".encode()
    return Sample(id=sample_id(image, caption), source_key=f"k{index}", url=None, sha256="0" * 64, image=image,
                  image_format="PNG", width=64, height=48, caption=caption,
                  entities=tuple(_entity(k) for k in range(entities)))


SAMPLES = [_sample(0, 2), _sample(1, 0), _sample(2, 3), _sample(3, 1)]


def _expected(samples, with_entities=True) -> list[ShardRow]:
    return [ShardRow(s.id, s.image, s.caption, s.entities if with_entities else ()) for s in samples]


def _table(samples) -> pa.Table:
    return pa.Table.from_pylist([s.to_row() for s in samples], schema=shard_schema())


def test_rows_read_back_with_their_entities_and_masks():
    buffer = io.BytesIO()
    pq.write_table(_table(SAMPLES), buffer, row_group_size=3)
    buffer.seek(0)
    rows = shard_rows(pq.read_table(buffer, columns=[*ROW_COLUMNS, ENTITIES_COLUMN]))
    assert rows == _expected(SAMPLES)
    assert isinstance(rows[0].entities[0].mask, Mask) and rows[0].entities[0].box == (1.0, 2.0, 30.5, 40.25)


def test_rows_without_the_entities_column_have_none():
    assert shard_rows(_table(SAMPLES).select(list(ROW_COLUMNS))) == _expected(SAMPLES, with_entities=False)


def test_slices_takes_and_chunks_read_their_own_rows():
    table = _table(SAMPLES)
    assert shard_rows(table.slice(1, 2)) == _expected(SAMPLES[1:3])
    assert shard_rows(table.take(pa.array([3, 0, 2]))) == _expected([SAMPLES[3], SAMPLES[0], SAMPLES[2]])
    chunked = pa.concat_tables([table.slice(2), table.slice(0, 2)])  # two chunks per column
    assert shard_rows(chunked) == _expected(SAMPLES[2:] + SAMPLES[:2])
    assert shard_rows(table.slice(0, 0)) == []
