import dataclasses
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unimo_g.provenance import Provenance
from unimo_g.records import Entity, Mask, Phrase, PromptPart, Reject, Sample
from unimo_g.schema import (
    SCHEMA_VERSION,
    VERSION_KEY,
    SchemaVersionError,
    check_schema_version,
    lineage_of,
    reject_schema,
    sample_id,
    shard_schema,
)


def _sample() -> Sample:
    """Scores are exact in float32, so the row read back equals the record."""
    entity = Entity(
        phrase=0, text="a dog", start=0, end=5, box=(1.0, 2.0, 30.0, 40.0), box_score=0.5,
        mask=Mask(size=(48, 64), counts="abc"), mask_area=100, mask_score=0.75, image=b"png", image_format="PNG",
    )
    return Sample(
        id=sample_id(b"img", "a dog"), source_key="k", url=None, sha256="0" * 64, image=b"img",
        image_format="JPEG", width=64, height=48, caption="a dog", phrases=(Phrase("a dog", 0, 5),),
        entities=(entity,), prompt=(PromptPart(entity=0),), prompt_text="<img>0</img>",
    )


def _as_read(value):
    """A record's row as Parquet gives it back: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [_as_read(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_read(v) for k, v in value.items()}
    return value


def test_rows_round_trip_through_parquet_with_version_and_lineage():
    schema = shard_schema({"config_hash": "abc"})
    table = pa.Table.from_pylist([_sample().to_row()], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    buf.seek(0)
    read = pq.read_table(buf)
    assert check_schema_version(read.schema.metadata) == SCHEMA_VERSION
    assert lineage_of(read.schema.metadata) == {"config_hash": "abc"}
    row = read.to_pylist()[0]
    assert row == _as_read(_sample().to_row())  # every field, as written
    assert row["entities"][0]["box"] == [1.0, 2.0, 30.0, 40.0]
    assert row["entities"][0]["mask"] == {"size": [48, 64], "counts": "abc"}
    assert row["prompt"] == [{"text": None, "entity": 0}]


PROVENANCE = Provenance(license="CC-BY", nsfw="UNLIKELY", similarity=0.25, punsafe=0.125, pwatermark=0.5,
                        aesthetic=6.5, original_width=640, original_height=480,
                        source_metadata=(("credit", '"A. Person"'), ("exif", "{}")))  # floats exact in float32


def test_reject_rows_round_trip_field_by_field():
    reject = Reject(id="i", source="k", stage="decode", reason="corrupt", detail="x",
                    provenance=PROVENANCE)  # no two fields alike
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([reject.to_row()], schema=reject_schema()), buf)
    buf.seek(0)
    (row,) = pq.read_table(buf).to_pylist()
    assert list(row) == reject_schema().names
    expected = {field.name: getattr(reject, field.name) for field in dataclasses.fields(Reject)}
    del expected["provenance"]
    expected.update(PROVENANCE.to_columns())
    assert row == expected


def test_provenance_and_scores_round_trip_in_sample_rows():
    sample = dataclasses.replace(_sample(), provenance=PROVENANCE, phash="8f373714acfcf4d0",
                                 computed_similarity=0.375, computed_aesthetic=5.5)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([sample.to_row()], schema=shard_schema()), buf)
    buf.seek(0)
    (row,) = pq.read_table(buf).to_pylist()
    assert list(row) == shard_schema().names
    assert row["source_metadata"] == [{"key": "credit", "value": '"A. Person"'}, {"key": "exif", "value": "{}"}]
    assert {k: row[k] for k in ("license", "similarity", "original_width", "phash", "computed_aesthetic")} == {
        "license": "CC-BY", "similarity": 0.25, "original_width": 640, "phash": "8f373714acfcf4d0",
        "computed_aesthetic": 5.5}


def test_future_or_missing_version_is_refused():
    with pytest.raises(SchemaVersionError, match="not supported"):
        check_schema_version({VERSION_KEY: str(SCHEMA_VERSION + 1).encode()})
    with pytest.raises(SchemaVersionError, match="not a unimo-g shard"):
        check_schema_version({})


def test_sample_id_depends_on_image_and_caption():
    # pinned: ids written by earlier runs must keep matching (de-duplication, resume); a different
    # content hash here means every existing shard's ids change
    assert sample_id(b"a", "x") == "39175d76e9aadeaab3e1e6b9bfa4de44"
    assert sample_id(b"a", "x") != sample_id(b"a", "y")
    assert sample_id(b"a", "x") != sample_id(b"b", "x")


def test_bad_phrase_span_raises():
    with pytest.raises(ValueError):
        Phrase("x", 3, 3)
