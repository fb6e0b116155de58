from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grounding.detect import Grounding
from pipelines.outputs.shard_stats import summarize_shards
from pipelines.prompts.assemble import assemble_sample
from pipelines.prompts.decode import decode_sample
from pipelines.prompts.phrase_stage import clean_sample
from pipelines.prompts.work_item import WorkItem
from segmentation.segment import MaskPrediction
from unimo_g.images.decoding import encode_image
from unimo_g.pipeline_config import CaptionConfig, DecodeConfig, PipelineConfig
from unimo_g.records import Entity, Mask, Phrase, PromptPart, RawSample, Reject, Sample
from unimo_g.schema import SHARD_FIELDS, VERSION_KEY, SchemaVersionError, check_schema_version, shard_schema


def _entity(phrase: int) -> Entity:
    return Entity(phrase=phrase, text="x", start=0, end=1, box=(0.0, 0.0, 1.0, 1.0), box_score=0.5,
                  mask=Mask(size=(2, 2), counts="abc"), mask_area=1, mask_score=0.5, image=b"\x89" * 1000,
                  image_format="PNG")


def _row(index: int, num_entities: int) -> dict:
    phrases = tuple(Phrase(f"p{k}", 2 * k, 2 * k + 1) for k in range(max(num_entities, 2)))
    outcomes = tuple("entity" if k < num_entities else "below_threshold" for k in range(len(phrases)))
    prompt = (PromptPart(text="a dog, on the grass ."),) + tuple(PromptPart(entity=k) for k in range(num_entities))
    return Sample(
        id=f"id{index}", source_key=f"k{index}", url=None, sha256="0" * 64, image=b"img" * 1000,
        image_format="JPEG", width=2, height=2, caption="p0 p1 p2 p3 p4", phrases=phrases,
        entities=tuple(_entity(k) for k in range(num_entities)), prompt=prompt, prompt_text="",
        caption_original="p0 p1 p2 p3 p4", phrase_outcomes=outcomes,
    ).to_row()


def _write(path, rows, schema):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=2)


def test_summary_comes_from_the_files_row_group_by_row_group(tmp_path):
    entity_counts = [0, 1, 1, 2, 3, 5, 4]
    _write(tmp_path / "shards" / "part-00000-of-00001.parquet",
           [_row(i, n) for i, n in enumerate(entity_counts)], shard_schema())
    stats = summarize_shards(str(tmp_path))
    assert stats["rows"] == 7
    assert stats["entities_per_prompt"]["counts"] == {"0": 1, "1": 2, "2": 1, "3": 1, ">=4": 2}
    assert stats["entities_per_prompt"]["paper_shares"]["1"] == 0.368
    assert stats["mean_entities_per_prompt"] == round(16 / 7, 3)
    phrases = sum(max(n, 2) for n in entity_counts)
    assert stats["mean_phrases_per_caption"] == round(phrases / 7, 3)
    assert stats["mean_text_tokens_per_prompt"] == 7.0  # a, dog, ",", on, the, grass, "."
    assert stats["phrase_outcomes"] == {"below_threshold": phrases - 16, "entity": 16}
    assert stats["rows_without_outcomes"] == 0


def test_version_1_files_are_read_without_outcomes(tmp_path):
    v1_fields = [f for f in SHARD_FIELDS if f.name not in ("caption_original", "phrase_outcomes")]
    schema = pa.schema(v1_fields, metadata={VERSION_KEY: b"1"})
    rows = [{k: v for k, v in _row(i, 1).items() if k in schema.names} for i in range(3)]
    _write(tmp_path / "shards" / "part-00000-of-00001.parquet", rows, schema)
    assert check_schema_version(pq.ParquetFile(tmp_path / "shards" / "part-00000-of-00001.parquet")
                                .schema_arrow.metadata) == 1
    stats = summarize_shards(str(tmp_path))
    assert stats["rows"] == 3 and stats["rows_without_outcomes"] == 3 and stats["phrase_outcomes"] == {}
    newer = pa.schema(v1_fields, metadata={VERSION_KEY: b"99"})
    _write(tmp_path / "shards" / "part-00000-of-00001.parquet", rows, newer)
    with pytest.raises(SchemaVersionError, match="version 99 is not supported"):
        summarize_shards(str(tmp_path))


def _decoded(caption: str):
    pixels = np.full((40, 40, 3), 200, dtype=np.uint8)
    raw = RawSample(source_key="k", image=encode_image(pixels), caption=caption)
    return decode_sample(raw, DecodeConfig(min_side=16), 2000)


def test_assembled_rows_record_every_phrase_outcome():
    caption = "a dog and a cat near a tree"
    sample = _decoded(caption)
    phrases = (Phrase("dog", 2, 5), Phrase("cat", 12, 15), Phrase("tree", 23, 27))
    full = np.zeros((40, 40), dtype=bool)
    full[5:30, 5:30] = True
    item = WorkItem(
        sample=sample, caption=caption, phrases=phrases, plural=(False,) * 3,
        groundings=(Grounding(0, (5.0, 5.0, 30.0, 30.0), 0.9), Grounding(1, (0.0, 0.0, 10.0, 10.0), 0.8)),
        masks=(MaskPrediction(full, 0.9), MaskPrediction(np.zeros((40, 40), dtype=bool), 0.9)),
        phrase_reasons=((2, "shape_filter"),),
    )
    row, dropped = assemble_sample(item, PipelineConfig())
    assert row.phrase_outcomes == ("entity", "empty_mask", "shape_filter")
    assert dropped == Counter({"empty_mask": 1})
    assert row.prompt_text == "a <img>0</img> and a cat near a tree"  # the paper's form: "a" stays text


def test_caption_cleaning_keeps_the_original_and_rejects_empty_captions():
    caption = "a &lt;b&gt;cup&lt;/b&gt; of coffee &amp; <br/> cake"
    sample = _decoded(caption)
    cleaned = clean_sample(sample, CaptionConfig())
    assert cleaned == "a cup of coffee & cake"
    item = WorkItem(sample=sample, caption=cleaned, phrases=(Phrase("cup", 2, 5),), plural=(False,))
    row, _ = assemble_sample(item, PipelineConfig())
    assert row.caption == cleaned and row.caption_original == caption and row.prompt_text == cleaned
    assert row.phrase_outcomes == ("below_threshold",)
    reject = clean_sample(_decoded("<br/> &nbsp; <p></p>"), CaptionConfig())
    assert isinstance(reject, Reject) and (reject.stage, reject.reason) == ("phrases", "empty_after_cleaning")
