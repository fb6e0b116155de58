"""`verify --input` lists an input's keys without reading an image: for every input format they are
the keys its reader gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines.io.input_keys import unit_keys
from pipelines.io.ledger import item_key
from pipelines.io.source_formats import read_unit
from pipelines.io.sources import plan_read

ROOT = Path(__file__).resolve().parents[2]
I2D = ROOT / "tests" / "data" / "img2dataset"


def _reader_keys(path: str) -> list[str]:
    return [item_key(item) for unit in plan_read(path).units for item in read_unit(unit)]


def _listed_keys(path: str) -> list[str]:
    return [key for unit in plan_read(path).units for key in unit_keys(unit)]


@pytest.mark.parametrize("layout", ["parquet", "webdataset", "files"])
def test_img2dataset_layouts(layout):
    assert _listed_keys(str(I2D / layout)) == _reader_keys(str(I2D / layout)) and _listed_keys(str(I2D / layout))


def test_folders_and_manifests(tmp_path):
    sample = ROOT / "data" / "sample"
    assert sorted(_listed_keys(str(sample))) == sorted(_reader_keys(str(sample)))
    folder = shutil.copytree(sample / "00000", tmp_path / "folder")
    assert _listed_keys(str(folder)) == _reader_keys(str(folder))
    lines = [{"image": "a.jpg", "caption": "x", "key": "k1"}, {"image": "b.jpg", "caption": "y"}, "not an object"]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert _listed_keys(str(tmp_path / "m.jsonl")) == _reader_keys(str(tmp_path / "m.jsonl")) == [
        "k1", "b.jpg", f"{tmp_path / 'm.jsonl'}:3"]


def test_inputs_that_cannot_be_read_are_the_keys_their_readers_give(tmp_path):
    (tmp_path / "broken.tar").write_bytes(b"not a tar at all" * 64)
    assert _listed_keys(str(tmp_path / "broken.tar")) == _reader_keys(str(tmp_path / "broken.tar")) == [
        f"{tmp_path / 'broken.tar'}:end"]
    shard = shutil.copytree(I2D / "parquet", tmp_path / "i2d")
    torn = shard / "00001.parquet"
    torn.write_bytes((shard / "00000.parquet").read_bytes()[:-100])  # a torn footer: one unreadable_file input
    assert _listed_keys(str(shard)) == _reader_keys(str(shard)) and str(torn) in _listed_keys(str(shard))
    with pytest.raises(ValueError, match="not a readable Parquet file"):  # given alone: refused when planned
        plan_read(str(torn))
