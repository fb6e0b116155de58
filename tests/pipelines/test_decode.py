import hashlib
import io
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from pipelines import metrics
from pipelines.prompts.decode import (
    Check,
    CheckFn,
    Decode,
    DecodedSample,
    DedupeById,
    check_sample,
    decode_sample,
    dedupe_rank,
    dedupe_ranks,
    key_id,
    passing_check,
)
from pipelines.io.sources import ReadSamples
from tests.pipelines.test_end_to_end import run_job
from tests.run_outputs import read_rows
from unimo_g.pipeline_config import DecodeConfig
from unimo_g.records import RawSample, Reject
from unimo_g.schema import sample_id

CONFIG = DecodeConfig(min_side=4)
I2D = Path(__file__).resolve().parents[1] / "data" / "img2dataset"


def _png(width=8, height=6, color=(10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()

CASES = [
    (RawSample("err", None, "c", source_error="boom", error_reason="failed_to_download"),
     ("read", "failed_to_download")),
    (RawSample("err2", None, "c", source_error="boom"), ("read", "source_error")),
    (RawSample("noimg", None, "c"), ("read", "missing_image")),
    (RawSample("nocap", PNG, None), ("read", "missing_caption")),
    (RawSample("blank", PNG, " \n\t "), ("read", "empty_caption")),
    (RawSample("long", PNG, "x" * 11), ("read", "caption_too_long")),
    (RawSample("text", b"not an image", "c"), ("decode", "not_an_image")),
    (RawSample("tiny", _png(2, 2), "c"), ("decode", "too_small")),
    (RawSample("empty", b"", "c"), ("decode", "empty_file")),
]


@pytest.mark.parametrize("raw, expected", CASES, ids=[raw.source_key for raw, _ in CASES])
def test_reject_rules(raw, expected):
    result = decode_sample(raw, CONFIG, max_caption_chars=10)
    assert isinstance(result, Reject)
    assert (result.stage, result.reason) == expected
    assert result.source == raw.source_key
    has_both = raw.image is not None and raw.caption is not None
    assert result.id == (sample_id(raw.image, raw.caption.strip()) if has_both else key_id(raw.source_key))


def test_decoded_sample_fields():
    result = decode_sample(RawSample("k", PNG, "  a dog \n", url="http://u"), CONFIG, max_caption_chars=10)
    assert isinstance(result, DecodedSample)
    assert result.caption == "a dog"
    assert result.id == sample_id(PNG, "a dog")
    assert result.sha256 == hashlib.sha256(PNG).hexdigest()
    assert (result.image, result.image_format, result.url, result.source_key) == (PNG, "PNG", "http://u", "k")
    assert result.pixels.shape == (6, 8, 3) and (result.width, result.height) == (8, 6)
    assert (result.pixels == [10, 20, 30]).all()


def test_dedupe_rank_orders_by_key_then_url_then_origin():
    a = check_sample(RawSample("b-key", PNG, "same"), 100)
    b = check_sample(RawSample("a-key", PNG, "same", url="http://z"), 100)
    c = check_sample(RawSample("a-key", PNG, "same", url="http://z", origin=(0, 1)), 100)
    assert a.id == b.id == c.id
    assert sorted([a, c, b], key=dedupe_rank) == [b, c, a]


def test_decode_and_dedupe_in_a_pipeline_on_real_img2dataset_output():
    pipeline = BeamTestPipeline(options=PipelineOptions(["--runner=DirectRunner"]))
    raw = pipeline | ReadSamples(str(I2D / "parquet"))
    extra = pipeline | "Extra" >> beam.Create([
        RawSample("dup-of-a", PNG, "dup"), RawSample("dup-of-b", PNG, "dup"), RawSample("blank", PNG, ""),
    ])
    inputs = (raw, extra) | beam.Flatten()
    checked = inputs | Check(100)
    unique = checked.samples | DedupeById(dedupe_ranks(inputs | "KeyPath" >> beam.FlatMap(passing_check, 100)))
    decoded = unique.samples | Decode(CONFIG)
    assert_that(
        decoded.samples | "Rows" >> beam.Map(lambda s: (s.source_key, s.image_format, s.pixels.shape[2], s.caption)),
        equal_to([
            ("000000000", "JPEG", 3, "a red square on a table"),
            ("000000001", "JPEG", 3, "a green field under a blue sky"),
            ("000000002", "JPEG", 3, "ein kleiner Hund im Schnee"),
            ("dup-of-a", "PNG", 3, "dup"),
        ]),
        label="Samples",
    )
    rejects = (*checked.rejects, *unique.rejects, *decoded.rejects) | "AllRejects" >> beam.Flatten()
    assert_that(
        rejects | "Reasons" >> beam.Map(lambda r: (r.source, r.stage, r.reason)),
        equal_to([
            ("000000003", "read", "failed_to_download"),
            ("blank", "read", "empty_caption"),
            ("dup-of-b", "dedupe", "duplicate"),
        ]),
        label="Rejects",
    )
    result = pipeline.run()
    result.wait_until_finish()
    assert metrics.counter_value(result, metrics.DECODE, metrics.CHECKED) == 5
    assert metrics.counter_value(result, metrics.DECODE, metrics.DECODED) == 4
    assert metrics.counter_value(result, metrics.DECODE, metrics.reject_counter_name("read", "empty_caption")) == 1
    assert metrics.counter_value(result, metrics.DEDUPE, metrics.DUPLICATES) == 1


def test_check_fn_refuses_bad_caption_limit():
    with pytest.raises(ValueError, match="max_caption_chars"):
        CheckFn(0)


def test_dedupe_keeps_one_of_identical_entries_and_passes_unique_ids():
    other = _png(color=(200, 0, 0))
    elements = [RawSample("k", PNG, "cap", origin=(0, 0)), RawSample("k", PNG, "cap", origin=(0, 1)),
                RawSample("j", PNG, "cap", origin=(1, 0)), RawSample("u", other, "something else", origin=(1, 1))]
    pipeline = BeamTestPipeline(options=PipelineOptions(["--runner=DirectRunner"]))
    inputs = pipeline | beam.Create(elements)
    checked = inputs | Check(100)
    unique = checked.samples | DedupeById(dedupe_ranks(inputs | "KeyPath" >> beam.FlatMap(passing_check, 100)))
    assert_that(unique.samples | "Keys" >> beam.Map(lambda s: s.source_key), equal_to(["j", "u"]), label="Kept")
    assert_that(
        unique.rejects | "Rejects" >> beam.Flatten() | "Reasons" >> beam.Map(lambda r: (r.source, r.reason, r.detail)),
        equal_to([("k", "duplicate", "same id as j"), ("k", "duplicate", "same id as j")]),
        label="Rejected",
    )
    pipeline.run()


@pytest.mark.parametrize("method", ["reread", "single_read", "none"])
def test_dedupe_methods_end_to_end(tmp_path, method):
    folder = tmp_path / "input"
    folder.mkdir()
    for key, (image, caption) in {"a": (PNG, "same"), "b": (PNG, "same"), "c": (_png(color=(0, 90, 0)), "other"),
                                  "d": (PNG, "same")}.items():
        (folder / f"{key}.png").write_bytes(image)
        (folder / f"{key}.txt").write_text(caption)
    out = run_job(tmp_path, method, "--input_format", "folder", "--set", f"dedupe.method={method}",
                  "--set", "decode.min_side=4", "--set", "near_duplicates.enabled=false",  # flat colours
                  input_path=folder)
    rows = sorted(r["source_key"] for r in read_rows(out))
    rejects = pq.read_table(str(out / "rejects")).to_pylist()
    if method == "none":
        assert rows == ["a", "b", "c", "d"] and rejects == []
    else:  # the first of a, b, d by (source key, url, read position) is kept
        assert rows == ["a", "c"]
        assert sorted((r["source"], r["stage"], r["reason"]) for r in rejects) == [
            ("b", "dedupe", "duplicate"), ("d", "dedupe", "duplicate")]
