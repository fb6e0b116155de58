"""What a source says about an input reaches the input's RawSample.extra in every format, and
`check_sample` turns it into the provenance its row or reject carries."""

import io
import json
import shutil
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.io.source_formats import load_entry, read_unit
from pipelines.io.sources import plan_read
from pipelines.prompts.decode import CheckedSample, check_sample
from unimo_g.provenance import (
    DROPPED_KEYS_KEY,
    MAX_METADATA_KEYS,
    MAX_VALUE_CHARS,
    TRUNCATED_SUFFIX,
    provenance_from_metadata,
)
from unimo_g.records import Reject

ROOT = Path(__file__).resolve().parents[2]
I2D = ROOT / "tests" / "data" / "img2dataset"
SAMPLE = ROOT / "data" / "sample"
FAILED_KEY = "000000003"
LAION = {"LICENSE": "cc-by-4.0", "NSFW": "UNLIKELY", "similarity": 0.31, "punsafe": 0.02, "pwatermark": 0.4,
         "AESTHETIC_SCORE": 6.7, "hash": 1234567890123}


def _read(input_path) -> dict:
    plan = plan_read(str(input_path))
    out = {}
    for unit in plan.units:
        for item in read_unit(unit):
            sample = load_entry(item) if plan.format in ("jsonl", "parquet") else item
            out[sample.source_key] = sample
    return out


def _provenance(sample):
    result = check_sample(sample, 2000)
    return result.provenance, result


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _add_columns(path: Path, columns: dict) -> None:
    """Set `columns` in a Parquet file, replacing those it has (the fixtures carry LAION's)."""
    table = pq.read_table(path)
    for name, (values, arrow_type) in columns.items():
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(name, pa.array(values, arrow_type))
    pq.write_table(table, path)


def _laion_columns(n: int) -> dict:
    return {"LICENSE": (["cc-by-4.0"] * n, pa.string()), "NSFW": (["UNLIKELY"] * n, pa.string()),
            "similarity": ([0.31] * n, pa.float64()), "punsafe": ([0.02] * n, pa.float32()),
            "pwatermark": ([0.4] * n, pa.float64()), "AESTHETIC_SCORE": ([6.7] * n, pa.float64()),
            "hash": ([1234567890123] * n, pa.int64())}


def _assert_laion(provenance, tolerance=1e-6):
    assert provenance.license == "cc-by-4.0" and provenance.nsfw == "UNLIKELY"
    assert provenance.similarity == pytest.approx(0.31, abs=tolerance)
    assert provenance.punsafe == pytest.approx(0.02, abs=tolerance)
    assert provenance.pwatermark == pytest.approx(0.4) and provenance.aesthetic == pytest.approx(6.7)
    assert dict(provenance.source_metadata)["hash"] == "1234567890123"


# What `make_fixtures.py` gave img2dataset as LAION columns (`--save_additional_columns`), per key.
FIXTURE_LAION = {
    "000000000": ("?", "UNLIKELY", 0.31, 0.02, 0.11, 6.8),
    "000000001": ("https://creativecommons.org/licenses/by/4.0/", "UNSURE", 0.27, 0.35, 0.92, 5.9),
    "000000002": ("?", "NSFW", 0.34, 0.97, 0.05, 7.1),
    "000000003": ("?", "UNLIKELY", 0.29, None, None, None),
}


@pytest.mark.parametrize("layout", ["parquet", "webdataset", "files"])
def test_laion_columns_as_img2dataset_saves_them_become_typed_columns(layout):
    samples = _read(I2D / layout)
    assert sorted(samples) == sorted(FIXTURE_LAION)
    for key, sample in samples.items():
        provenance, result = _provenance(sample)
        license_, nsfw, similarity, punsafe, pwatermark, aesthetic = FIXTURE_LAION[key]
        if license_ == "?":  # LAION's "unknown": a null licence, the raw value kept
            assert provenance.license is None and dict(provenance.source_metadata)["LICENSE"] == '"?"'
        else:
            assert provenance.license == license_
        assert provenance.nsfw == nsfw
        for value, expected in ((provenance.similarity, similarity), (provenance.punsafe, punsafe),
                                (provenance.pwatermark, pwatermark), (provenance.aesthetic, aesthetic)):
            assert value == (None if expected is None else pytest.approx(expected)), (key, layout)
        assert isinstance(result, Reject) == (key == FAILED_KEY)
        assert not {"NSFW", "AESTHETIC_SCORE"} & set(dict(provenance.source_metadata))


# ---------------------------------------------------------------- the typing function


def test_typed_fields_other_keys_and_column_keys():
    provenance = provenance_from_metadata({
        **LAION, "original_width": 640.0, "original_height": 480, "key": "k", "caption": "c", "url": "u",
        "status": "success", "error_message": None, "credit": "Ann", "exif": "{}", "tags": ["a", "b"]})
    _assert_laion(provenance)
    assert (provenance.original_width, provenance.original_height) == (640, 480)  # LAION stores sizes as floats
    assert provenance.source_metadata == (("credit", '"Ann"'), ("exif", '"{}"'), ("hash", "1234567890123"),
                                          ("tags", '["a", "b"]'))


def test_a_typed_value_of_the_wrong_type_stays_raw_and_never_raises():
    provenance = provenance_from_metadata({"similarity": "n/a", "license": 3, "original_width": -5, "punsafe": True,
                                           "aesthetic": float("nan"), "nested": {"x": float("inf")}, "blob": b"12"})
    assert (provenance.similarity, provenance.license, provenance.original_width, provenance.punsafe,
            provenance.aesthetic) == (None,) * 5
    metadata = dict(provenance.source_metadata)
    assert metadata["similarity"] == '"n/a"' and metadata["license"] == "3" and metadata["original_width"] == "-5"
    assert metadata["punsafe"] == "true" and "aesthetic" not in metadata  # NaN is a missing value
    assert json.loads(metadata["nested"]) == "{'x': inf}" and metadata["blob"] == '"<2 bytes>"'


def test_what_one_input_can_put_in_its_row_is_bounded():
    hostile = {f"k{i:04d}": "v" for i in range(1000)}
    hostile["k0000"] = "x" * 100_000
    provenance = provenance_from_metadata(hostile)
    metadata = dict(provenance.source_metadata)
    assert len(metadata) == MAX_METADATA_KEYS + 1 and metadata[DROPPED_KEYS_KEY] == str(1000 - MAX_METADATA_KEYS)
    cut = json.loads(metadata["k0000"])
    assert cut.endswith(TRUNCATED_SUFFIX) and len(cut) == MAX_VALUE_CHARS + len(TRUNCATED_SUFFIX)
    assert provenance_from_metadata({"LICENSE": "y" * 5000}).license is None  # too long for the typed column


# ---------------------------------------------------------------- every reader


def test_img2dataset_parquet_every_non_image_column(tmp_path):
    shutil.copytree(I2D / "parquet", tmp_path / "i2d")
    shard = tmp_path / "i2d" / "00000.parquet"
    columns = _laion_columns(4)
    columns["thumbnail"] = ([b"\x00" * 10] * 4, pa.binary())  # a second binary column: never read as metadata
    _add_columns(shard, columns)
    samples = _read(tmp_path / "i2d")
    for key, sample in samples.items():
        provenance, result = _provenance(sample)
        _assert_laion(provenance)
        assert "thumbnail" not in sample.extra and "jpg" not in sample.extra
        assert isinstance(result, Reject) == (key == FAILED_KEY)  # the failed download's reject carries it too
        if key != FAILED_KEY:  # img2dataset's own columns too
            assert dict(provenance.source_metadata)["sha256"].startswith('"')
            assert provenance.original_width > 0 and provenance.original_height > 0
    assert "error_message" not in dict(_provenance(samples[FAILED_KEY])[0].source_metadata)


def _rewrite_tar(source: Path, target: Path, extra: dict) -> None:
    with tarfile.open(source) as original, tarfile.open(target, "w") as rewritten:
        for member in original.getmembers():
            data = original.extractfile(member).read()
            if member.name.endswith(".json"):
                data = json.dumps({**json.loads(data), **extra}).encode()
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            rewritten.addfile(info, io.BytesIO(data))


def test_webdataset_json_member_and_failed_rows_of_the_metadata_parquet(tmp_path):
    folder = tmp_path / "i2d"
    folder.mkdir()
    shutil.copy(I2D / "webdataset" / "00000.parquet", folder)
    _rewrite_tar(I2D / "webdataset" / "00000.tar", folder / "00000.tar", {**LAION, "similarity": "n/a"})
    _add_columns(folder / "00000.parquet", {"LICENSE": (["cc0"] * 4, pa.string())})
    samples = _read(folder)
    for key, sample in samples.items():
        provenance, _ = _provenance(sample)
        if key == FAILED_KEY:  # from the metadata Parquet
            assert provenance.license == "cc0" and sample.error_reason == "failed_to_download"
            assert sample.error_reason not in dict(provenance.source_metadata).values()
        else:  # from the .json member
            assert provenance.license == "cc-by-4.0" and provenance.similarity is None
            assert dict(provenance.source_metadata)["similarity"] == '"n/a"'
            assert provenance.aesthetic == pytest.approx(6.7)


def test_img2dataset_files_metadata_row(tmp_path):
    shutil.copytree(I2D / "files", tmp_path / "i2d")
    _add_columns(tmp_path / "i2d" / "00000.parquet", _laion_columns(4))
    samples = _read(tmp_path / "i2d")
    assert len(samples) == 4
    for sample in samples.values():
        _assert_laion(_provenance(sample)[0])


def test_folder_sidecar_json_the_bundled_sample():
    samples = _read(SAMPLE / "00000")
    assert len(samples) == 10
    for sample in samples.values():
        provenance, result = _provenance(sample)
        assert isinstance(result, CheckedSample)
        sidecar = json.loads((SAMPLE / "00000" / f"{sample.source_key}.json").read_text())
        metadata = dict(provenance.source_metadata)
        assert provenance.license == sidecar["license"] and provenance.license
        assert json.loads(metadata["credit"]) == sidecar["credit"]
        assert json.loads(metadata["source"]) == sidecar["source"]
        assert "caption" not in metadata and "key" not in metadata and "url" not in metadata


def test_jsonl_manifest_other_fields(tmp_path):
    (tmp_path / "a.png").write_bytes(_png())
    lines = [{"image": "a.png", "caption": "a dot", "key": "a", "url": "http://x/a.png", "aesthetic": 7.1,
              "license": "cc0", "source": "web"},
             {"image": "missing.png", "caption": "gone", "key": "b", "punsafe": 0.9}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    samples = _read(tmp_path / "m.jsonl")
    provenance, _ = _provenance(samples["a"])
    assert (provenance.aesthetic, provenance.license) == (7.1, "cc0")
    assert provenance.source_metadata == (("source", '"web"'),)
    provenance, result = _provenance(samples["b"])  # a read failure keeps what the manifest said
    assert isinstance(result, Reject) and result.reason == "missing_image_file" and provenance.punsafe == 0.9


def test_parquet_manifest_other_columns_but_no_second_binary_column(tmp_path):
    (tmp_path / "a.png").write_bytes(_png())
    table = pa.table({"image": ["a.png"], "caption": ["a dot"], "key": ["a"], "pwatermark": [0.85],
                      "NSFW": ["UNSURE"], "preview": pa.array([b"\x89PNG" * 100], pa.binary())})
    pq.write_table(table, tmp_path / "m.parquet")
    (sample,) = _read(tmp_path / "m.parquet").values()
    provenance, result = _provenance(sample)
    assert isinstance(result, CheckedSample) and result.provenance == provenance
    assert (provenance.pwatermark, provenance.nsfw, provenance.source_metadata) == (0.85, "UNSURE", ())
    assert set(sample.extra) == {"pwatermark", "NSFW"}


# ---------------------------------------------------------------- rejects of every stage


def test_rejects_of_every_stage_carry_the_provenance():
    import numpy as np

    from pipelines.prompts.decode import decode_checked, duplicate_reject
    from pipelines.prompts.model_handlers import model_error_reject
    from pipelines.prompts.phrase_stage import clean_sample
    from pipelines.prompts.work_item import WorkItem
    from unimo_g.pipeline_config import CaptionConfig, DecodeConfig
    from unimo_g.records import RawSample

    raw = RawSample("k", b"not an image", "<b></b>", extra={"LICENSE": "cc0", "credit": "Ann"})
    checked = check_sample(raw, 2000)
    expected = provenance_from_metadata(raw.extra)
    assert checked.provenance == expected and expected.license == "cc0"
    assert decode_checked(checked, DecodeConfig()).provenance == expected
    assert duplicate_reject(checked, "other").provenance == expected
    decoded = decode_checked(CheckedSample(checked.id, "k", None, _png(), "<b></b>", provenance=expected),
                             DecodeConfig(min_side=1))
    assert decoded.provenance == expected
    assert clean_sample(decoded, CaptionConfig()).provenance == expected  # empty once cleaned
    assert model_error_reject(WorkItem(decoded), "grounding", MemoryError("oom")).provenance == expected
    assert check_sample(RawSample("k", None, "c", extra={"NSFW": "UNSURE"}), 2000).provenance.nsfw == "UNSURE"
    assert isinstance(decoded.pixels, np.ndarray)
