import dataclasses
import gzip
import io
import json
import shutil
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from pipelines import metrics
from pipelines.io.source_formats import read_unit
from pipelines.io.sources import ReadSamples, plan_read
from unimo_g.pipeline_config import ReadConfig

I2D = Path(__file__).resolve().parents[1] / "data" / "img2dataset"
I2D_CAPTIONS = {"a red square on a table", "a green field under a blue sky", "ein kleiner Hund im Schnee"}
FAILED_KEY = "000000003"  # the URL that does not exist


def _options():
    return PipelineOptions(["--runner=DirectRunner"])


def _png(width=8, height=6) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _summary(sample):
    """Comparable view of a RawSample: key, has image, caption, url, error reason."""
    return (sample.source_key, sample.image is not None, sample.caption, sample.url,
            sample.error_reason)


def _read_all(input_path, input_format="auto", config=ReadConfig(), **kwargs):
    """Every RawSample of a plan, read without Beam (the functions the DoFns wrap)."""
    from pipelines.io.source_formats import load_entry

    plan = plan_read(str(input_path), input_format, **kwargs)
    samples = []
    for unit in plan.units:
        for item in read_unit(unit, config):
            samples.append(load_entry(item, config) if plan.format in ("jsonl", "parquet") else item)
    return plan, samples


# ---------------------------------------------------------------- img2dataset (real outputs)


@pytest.mark.parametrize("layout", ["parquet", "webdataset", "files"])
def test_img2dataset_layouts_are_detected_and_every_input_is_read(layout):
    plan, samples = _read_all(I2D / layout)
    assert (plan.format, plan.layout) == ("img2dataset", layout)
    by_key = {s.source_key: s for s in samples}
    assert sorted(by_key) == ["000000000", "000000001", "000000002", FAILED_KEY]
    ok = [s for s in samples if s.source_error is None]
    assert {s.caption for s in ok} == I2D_CAPTIONS
    assert all(s.image[:2] == b"\xff\xd8" and s.url.startswith("file://") for s in ok)  # JPEG bytes
    failed = by_key[FAILED_KEY]
    assert failed.image is None and failed.error_reason == "failed_to_download"
    assert "No such file" in failed.source_error
    assert failed.caption == "a photo that was never downloaded"


def test_img2dataset_explicit_format_and_single_shard_file():
    plan = plan_read(str(I2D / "webdataset"), "img2dataset")
    assert plan.units[0].companion.endswith("00000.parquet")
    plan, samples = _read_all(I2D / "parquet" / "00000.parquet")
    assert (plan.format, len(samples)) == ("img2dataset", 4)
    plan, samples = _read_all(I2D / "webdataset" / "00000.tar")
    assert (plan.layout, len(samples)) == ("webdataset", 4)


def test_img2dataset_files_output_can_also_be_read_as_a_plain_folder():
    plan, samples = _read_all(I2D / "files", "folder")
    assert plan.format == "folder"
    assert sorted(s.source_key for s in samples) == ["00000/000000000", "00000/000000001", "00000/000000002"]
    assert all(s.url.startswith("file://") for s in samples)  # from the .json sidecars


def test_webdataset_metadata_without_its_tar_still_yields_its_failures(tmp_path):
    shutil.copy(I2D / "webdataset" / "00000.tar", tmp_path / "00000.tar")
    shutil.copy(I2D / "webdataset" / "00000.parquet", tmp_path / "00001.parquet")  # its tar is gone
    plan, samples = _read_all(tmp_path)
    assert [unit.kind for unit in plan.units] == ["i2d_tar", "i2d_failures"]
    assert len(samples) == 4 and sum(s.source_error is not None for s in samples) == 1


def test_truncated_tar_becomes_a_source_error(tmp_path):
    data = (I2D / "webdataset" / "00000.tar").read_bytes()
    (tmp_path / "00000.tar").write_bytes(data[:3000])  # inside the first members
    _, samples = _read_all(tmp_path, "img2dataset")
    assert [s.error_reason for s in samples] == ["unreadable_file"]


# ---------------------------------------------------------------- folder


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "sub dir" / "ünïcødé").mkdir(parents=True)
    (root / "a.jpg").write_bytes(_png())
    (root / "a.txt").write_text("a caption\n", encoding="utf-8")
    (root / "sub dir" / "ünïcødé" / "猫.PNG").write_bytes(_png())
    (root / "sub dir" / "ünïcødé" / "猫.txt").write_text("﻿a cat 猫", encoding="utf-8")  # with a BOM
    (root / "no_caption.png").write_bytes(_png())
    (root / "orphan.txt").write_text("caption without image", encoding="utf-8")
    (root / "two.jpg").write_bytes(_png())
    (root / "two.png").write_bytes(_png())
    (root / "two.txt").write_text("ambiguous", encoding="utf-8")
    (root / "bad.txt").write_bytes(b"\xff\xfe\xfa not utf-8")
    (root / "bad.jpg").write_bytes(_png())
    (root / "meta.jpg").write_bytes(_png())
    (root / "meta.txt").write_text("with url", encoding="utf-8")
    (root / "meta.json").write_text(json.dumps({"url": "http://example.com/m.jpg", "caption": "ignored"}))
    (root / ".hidden.jpg").write_bytes(_png())
    (root / "notes.md").write_text("not an input")
    return root


FOLDER_EXPECTED = [
    ("a", True, "a caption\n", None, None),
    ("bad", False, None, None, "caption_not_utf8"),
    ("meta", True, "with url", "http://example.com/m.jpg", None),
    ("no_caption", True, None, None, None),
    ("orphan", False, "caption without image", None, None),
    ("sub dir/ünïcødé/猫", True, "a cat 猫", None, None),
    ("two", False, "ambiguous", None, "ambiguous_image"),
]


def test_folder_layout_keys_orphans_and_non_ascii_names(tmp_path):
    root = _folder(tmp_path)
    plan, samples = _read_all(root, keys_per_unit=3)
    assert plan.format == "folder" and len(plan.units) == 3
    assert sorted(_summary(s) for s in samples) == FOLDER_EXPECTED


def test_read_samples_in_a_pipeline_counts_inputs(tmp_path):
    root = _folder(tmp_path)
    pipeline = BeamTestPipeline(options=_options())
    samples = pipeline | ReadSamples(str(root), "folder", keys_per_unit=2)
    assert_that(samples | beam.Map(_summary), equal_to(FOLDER_EXPECTED))
    result = pipeline.run()
    result.wait_until_finish()
    assert metrics.counter_value(result, metrics.READ, metrics.INPUTS) == len(FOLDER_EXPECTED)
    assert metrics.counter_value(result, metrics.READ, metrics.SOURCE_ERRORS) == 2


# ---------------------------------------------------------------- manifests


def _jsonl_manifest(tmp_path: Path) -> Path:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "x.png").write_bytes(_png())
    absolute = tmp_path / "elsewhere.png"
    absolute.write_bytes(_png())
    lines = [
        json.dumps({"image": "imgs/x.png", "caption": "relative", "url": "http://u/x"}),
        json.dumps({"image": str(absolute), "caption": "absolute", "key": "k-abs"}),
        json.dumps({"image": "file://" + str(absolute), "caption": "file url", "key": "k-url"}),
        "{not json",
        "",
        json.dumps({"image": "imgs/missing.png", "caption": "gone"}),
        json.dumps(["a", "list"]),
        json.dumps({"image": "imgs/x.png", "caption": 7}),
        json.dumps({"caption": "no image field", "key": "k-noimg"}),
    ]
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _jsonl_expected(path: Path):
    return [
        ("imgs/missing.png", False, "gone", None, "missing_image_file"),
        ("imgs/x.png", True, "relative", "http://u/x", None),
        ("k-abs", True, "absolute", None, None),
        ("k-noimg", False, "no image field", None, None),
        ("k-url", True, "file url", None, None),
        (f"{path}:4", False, None, None, "bad_manifest_line"),
        (f"{path}:7", False, None, None, "bad_manifest_line"),
        (f"{path}:8", False, None, None, "bad_manifest_line"),
    ]


def test_jsonl_manifest_in_a_pipeline(tmp_path):
    path = _jsonl_manifest(tmp_path)
    assert plan_read(str(path)).format == "jsonl"
    pipeline = BeamTestPipeline(options=_options())
    samples = pipeline | ReadSamples(str(path))
    assert_that(samples | beam.Map(_summary), equal_to(_jsonl_expected(path)))
    result = pipeline.run()
    result.wait_until_finish()
    assert metrics.counter_value(result, metrics.READ, metrics.INPUTS) == 8


def test_gzipped_jsonl_manifest(tmp_path):
    path = _jsonl_manifest(tmp_path)
    _, plain = _read_all(path)
    gz = tmp_path / "manifest.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    _, samples = _read_all(gz)

    def rows(samples, manifest):
        """Every field of every sample read, with the manifest's own name (it keys bad lines) made neutral."""
        return sorted(repr(dataclasses.asdict(s)).replace(str(manifest), "MANIFEST") for s in samples)

    assert rows(samples, gz) == rows(plain, path)
    assert sorted(_summary(s) for s in samples) == sorted(_jsonl_expected(gz))


def test_parquet_manifest_with_paths_and_inline_bytes(tmp_path):
    (tmp_path / "p.png").write_bytes(_png())
    paths = pa.table({"image": ["p.png", "nope.png", None], "caption": ["c1", "c2", "c3"]})
    pq.write_table(paths, tmp_path / "m.parquet")
    _, samples = _read_all(tmp_path / "m.parquet")
    assert sorted(_summary(s) for s in samples) == sorted([
        ("nope.png", False, "c2", None, "missing_image_file"),
        ("p.png", True, "c1", None, None),
        (f"{tmp_path / 'm.parquet'}:2", False, "c3", None, None),  # null image, no key: row position
    ])
    inline = pa.table({"image": [_png()], "caption": ["inline"], "key": ["k0"]})
    pq.write_table(inline, tmp_path / "inline.parquet")
    plan, samples = _read_all(tmp_path / "inline.parquet")
    assert plan.format == "parquet" and samples[0].image == _png() and samples[0].source_key == "k0"


def test_corrupt_parquet_pages_become_one_source_error(tmp_path):
    path = tmp_path / "broken.parquet"
    pq.write_table(pa.table({"image": ["a.png"] * 50, "caption": ["c" * 30] * 50}), path)
    data = bytearray(path.read_bytes())
    data[4:60] = b"\xff" * 56  # ruin the first page header; the footer (schema) stays readable
    path.write_bytes(bytes(data))
    plan = plan_read(str(path))
    assert plan.format == "parquet"
    samples = [item for unit in plan.units for item in read_unit(unit)]
    assert [(s.source_key, s.error_reason) for s in samples] == [(str(path), "unreadable_file")]


# ---------------------------------------------------------------- errors


def test_bad_format_and_missing_path_raise_one_line_value_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown input format 'csv'"):
        plan_read(str(tmp_path), "csv")
    with pytest.raises(ValueError, match="input path not found: .*nowhere"):
        plan_read(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="no image or caption files"):
        plan_read(str(tmp_path))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="cannot read"):
        plan_read(str(tmp_path / "x.csv"))
    with pytest.raises(ValueError, match="not img2dataset output"):
        plan_read(str(tmp_path), "img2dataset")


def test_auto_detection_table(tmp_path):
    shutil.copytree(I2D / "parquet", tmp_path / "i2d")
    assert plan_read(str(tmp_path / "i2d")).format == "img2dataset"
    pq.write_table(pa.table({"image": ["a.png"], "caption": ["c"]}), tmp_path / "manifests.parquet")
    (tmp_path / "dir_of_manifests").mkdir()
    shutil.copy(tmp_path / "manifests.parquet", tmp_path / "dir_of_manifests" / "m.parquet")
    assert plan_read(str(tmp_path / "manifests.parquet")).format == "parquet"
    assert plan_read(str(tmp_path / "dir_of_manifests")).format == "parquet"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("c")
    assert plan_read(str(tmp_path / "plain")).format == "folder"


def test_manifest_urls_beam_does_not_know_go_through_fsspec(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    memory.pipe("/unimo_g_test/a.png", _png())
    path = tmp_path / "m.jsonl"
    lines = [{"image": "memory://unimo_g_test/a.png", "caption": "in memory"},
             {"image": "nosuch://x/y.png", "caption": "unknown scheme"}]
    path.write_text("\n".join(json.dumps(line) for line in lines))
    try:
        _, samples = _read_all(path, config=ReadConfig(remote_schemes=("memory", "nosuch")))
        _, refused = _read_all(path)  # neither scheme is allowed by default
    finally:
        memory.rm("/unimo_g_test", recursive=True)
    assert sorted(_summary(s) for s in samples) == [
        ("memory://unimo_g_test/a.png", True, "in memory", None, None),
        ("nosuch://x/y.png", False, "unknown scheme", None, "unreadable_file"),
    ]
    assert [s.error_reason for s in refused] == ["scheme_not_allowed"] * 2
