"""OUTPUT/README.md: a Hugging Face dataset card through which `datasets.load_dataset` reads the shards."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bench.report import write_synthetic_output
from pipelines.outputs.card import card_header, feature_of, features_of, write_dataset_card
from unimo_g.schema import PHRASE_OUTCOMES, shard_schema

ROOT = Path(__file__).resolve().parents[2]


def header_of(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture
def output(tmp_path) -> Path:
    out = write_synthetic_output(tmp_path / "out", 12, rejects=2, image_kib=1, rows_per_file=8, row_group_rows=4)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.update({
        "config": {"name": "tiny", "grounding": {"model": "tiny", "box_threshold": 0.25, "runtime": {"device": "cpu"}},
                   "segmentation": {"min_box_fill": 0.6}},
        "models": {"grounding": {"id": "tiny", "revision": None}},
        "counts": {**manifest["counts"], "rejects_by_reason": {"decode": {"image_too_small": 2}}},
    })  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_features_are_the_shard_schema_as_datasets_reads_it():
    datasets = pytest.importorskip("datasets")
    ours = datasets.Features._from_yaml_list(features_of(shard_schema()))
    assert ours == datasets.Features.from_arrow_schema(shard_schema())
    assert feature_of(pa.list_(pa.float32(), 4)) == {"list": "float32", "length": 4}
    assert features_of(pa.schema([("extra", pa.map_(pa.string(), pa.string()))])) is None  # datasets infers it


def test_card_header_and_body(output):
    manifest = json.loads((output / "manifest.json").read_text())
    path = write_dataset_card(str(output), manifest)
    card = Path(path).read_text()
    header = header_of(card)
    assert Path(path) == output / "README.md"
    assert header["configs"] == [{"config_name": "default", "data_files": [{"split": "train",
                                                                             "path": "shards/*.parquet"}]}]
    assert header["task_categories"] == ["text-to-image"] and header["size_categories"] == ["n<1K"]
    assert "license" not in header  # the inputs carry none
    assert [f["name"] for f in header["dataset_info"]["features"]] == shard_schema().names
    body = card.split("---\n", 2)[2]
    assert "Random weights" in body and "| rows | 12 |" in body and "| decode | image_too_small | 2 |" in body
    assert "| grounding.box_threshold | 0.25 |" in body and "| segmentation.min_box_fill | 0.6 |" in body
    assert "runtime" not in body and "`<img>k</img>`" in body
    for column in shard_schema().names:
        assert f"| `{column}` |" in body
    assert "see `unimo_g/schema.py`" not in body  # every column, v2's included, is described
    lines = {line.split(" | ")[0]: line for line in body.splitlines() if line.startswith("| `")}
    assert "as received" in lines["| `caption_original`"] and "cleaned caption" in lines["| `caption`"]
    assert all(f"`{outcome}`" in lines["| `phrase_outcomes`"] for outcome in PHRASE_OUTCOMES)


def test_licence_from_the_manifest_or_the_shards(output):
    assert card_header({"input": {"license": "cc-by-4.0"}}, None, [])["license"] == "cc-by-4.0"
    assert card_header({}, None, ["CC-BY-SA-4.0"])["license"] == "cc-by-sa-4.0"
    assert card_header({}, None, ["cc-by-4.0", "cc0-1.0"])["license"] == "other"
    # schema v3's licence column, filled from the inputs' provenance
    shard = sorted((output / "shards").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    index = table.schema.get_field_index("license")
    table = table.set_column(index, table.schema.field(index), pa.array(["cc-by-4.0"] * table.num_rows, pa.string()))
    for other in sorted((output / "shards").glob("*.parquet"))[1:]:
        other.unlink()
    pq.write_table(table, shard)
    card = Path(write_dataset_card(str(output), json.loads((output / "manifest.json").read_text()))).read_text()
    assert header_of(card)["license"] == "cc-by-4.0" and "cc-by-4.0" in card.split("---\n", 2)[2]


def test_load_dataset_through_the_card_offline(output, tmp_path):
    pytest.importorskip("datasets")
    write_dataset_card(str(output), json.loads((output / "manifest.json").read_text()))
    script = (
        "import json, sys, datasets\n"
        "ds = datasets.load_dataset(sys.argv[1], split='train')\n"
        "print(json.dumps({'rows': ds.num_rows, 'columns': ds.column_names, 'prompt': ds[0]['prompt_text'],\n"
        "                  'box': str(ds.features['entities'].feature['box'])}))\n"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}
    result = subprocess.run([sys.executable, "-c", script, str(output)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["rows"] == 12 and loaded["columns"] == shard_schema().names
    assert loaded["prompt"].startswith("a photo of") and "length=4" in loaded["box"]
