"""The whole job through `beam_runner`, on the bundled sample with the tiny preset."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import beam_runner
from tests.run_outputs import SAMPLE, TINY, read_rows
from unimo_g.rle import decode_mask
from unimo_g.schema import PHRASE_OUTCOMES, SHARD_FIELDS, lineage_of, prompt_text



pytestmark = pytest.mark.time_limit(600)  # Beam's multi_processing workers, and every run's setup


def run_job(tmp_path: Path, name: str, *extra: str, input_path: Path = SAMPLE) -> Path:
    out = tmp_path / name
    code = beam_runner.main(["--input", str(input_path), "--output", str(out), "--config", TINY, *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    return run_job(tmp_path_factory.mktemp("e2e"), "out")


def test_sample_rows_match_the_contract(sample_run):
    rows = read_rows(sample_run)
    manifest = json.loads((sample_run / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["inputs"] == 10 and counts["accounted"] is True
    assert counts["rows"] + counts["rejects"] == counts["inputs"] == len(rows) + counts["rejects"]
    assert manifest["random_weights"] is True and manifest["config"]["name"] == "tiny"
    assert manifest["runner"] == "DirectRunner"  # beam_runner's default when no --runner is given

    table = pq.read_table(sorted(glob.glob(str(sample_run / "shards" / "*.parquet")))[0])
    assert [f.name for f in table.schema] == [f.name for f in SHARD_FIELDS]
    assert lineage_of(table.schema.metadata)["config_hash"] == manifest["config_hash"]

    with_entities = [r for r in rows if r["entities"]]
    assert len(with_entities) >= len(rows) // 2, "the tiny preset should ground most sample captions"
    for row in rows:
        caption = row["caption"]
        for phrase in row["phrases"]:
            assert caption[phrase["start"] : phrase["end"]] == phrase["text"]
        assert prompt_text(row["prompt"]) == row["prompt_text"]
        for k, entity in enumerate(row["entities"]):
            x0, y0, x1, y1 = entity["box"]
            assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]
            mask = decode_mask(entity["mask"]["size"], entity["mask"]["counts"])
            assert mask.shape == (row["height"], row["width"]) and mask.sum() == entity["mask_area"] > 0
            assert entity["image"][:8] == b"\x89PNG\r\n\x1a\n"
            assert {"text": None, "entity": k} in row["prompt"]
            # replace mode: the phrase is gone from the prompt, its entity stands in its place
            assert entity["text"] == caption[entity["start"] : entity["end"]]
        # schema v2: the caption as received, and what became of every phrase
        assert row["caption_original"].strip() and len(row["phrase_outcomes"]) == len(row["phrases"])
        assert set(row["phrase_outcomes"]) <= set(PHRASE_OUTCOMES)
        with_entity = {e["phrase"] for e in row["entities"]}
        assert {k for k, o in enumerate(row["phrase_outcomes"]) if o == "entity"} == with_entity
    # prompt statistics in the manifest come from the written rows
    stats = manifest["statistics"]
    assert stats["rows"] == len(rows) and sum(stats["entities_per_prompt"]["counts"].values()) == len(rows)
    assert stats["mean_entities_per_prompt"] == round(sum(len(r["entities"]) for r in rows) / len(rows), 3)
    assert sum(stats["phrase_outcomes"].values()) == sum(len(r["phrases"]) for r in rows)
    assert stats["phrase_outcomes"]["entity"] == sum(len({e["phrase"] for e in r["entities"]}) for r in rows)


def test_sample_rows_carry_licence_and_credit(sample_run):
    """The bundled sample (img2dataset's files layout with licence, source and credit columns)."""
    metadata = pq.read_table(SAMPLE / "00000.parquet").to_pylist()
    expected = {r["key"]: r for r in metadata}
    rows = read_rows(sample_run)
    for row in rows:
        source = expected[row["source_key"]]
        pairs = {item["key"]: json.loads(item["value"]) for item in row["source_metadata"]}
        assert row["license"] == source["license"] and pairs["credit"] == source["credit"]
        assert pairs["source"] == source["source"] and "caption" not in pairs and "key" not in pairs
        assert (row["original_width"], row["original_height"]) == (source["original_width"], source["original_height"])
    manifest = json.loads((sample_run / "manifest.json").read_text())
    by_license = manifest["statistics"]["rows_by_license"]
    assert sum(by_license.values()) == len(rows) and by_license[rows[0]["license"]] >= 1
    card = (sample_run / "README.md").read_text()
    assert all(row["license"] in card for row in rows)  # the card's licence listing reads the column


def test_multi_processing_with_two_workers_gives_the_same_rows(sample_run, tmp_path):
    out = run_job(tmp_path, "mp", "--runner=DirectRunner", "--direct_running_mode=multi_processing",
                  "--direct_num_workers=2")
    rows = read_rows(out)
    assert any(row["entities"] for row in rows)
    assert rows == read_rows(sample_run)  # every column: scores, mask areas, masks, entity images


def test_rerun_with_overwrite_replaces_only_the_run_outputs(sample_run, tmp_path):
    out = run_job(tmp_path, "again", "--set", "write.rows_per_file=3")
    (out / "notes.txt").write_text("kept")
    first = read_rows(out)
    assert len(glob.glob(str(out / "shards" / "*.parquet"))) == 4
    assert beam_runner.main(["--input", str(SAMPLE), "--output", str(out), "--config", TINY]) == 2  # not empty
    run_job(tmp_path, "again", "--overwrite", "--set", "write.rows_per_file=5")
    assert len(glob.glob(str(out / "shards" / "*.parquet"))) == 2  # no file of the first run left
    assert read_rows(out) == first == read_rows(sample_run)  # every column
    assert (out / "notes.txt").read_text() == "kept"


def test_append_mode_keeps_the_phrase_before_its_entity(sample_run, tmp_path):
    rows = read_rows(run_job(tmp_path, "append", "--set", "compose.mode=append"))
    assert sum(len(row["entities"]) for row in rows) >= len(rows) // 2, "the run must ground entities"
    for row in rows:
        for k, entity in enumerate(row["entities"]):
            assert f"{entity['text']}<img>{k}</img>" in row["prompt_text"]
    # only the prompt differs from the replace-mode run: the same samples, phrases and entities
    def without_prompt(rows):
        return [{k: v for k, v in row.items() if k not in ("prompt", "prompt_text")} for row in rows]

    assert without_prompt(rows) == without_prompt(read_rows(sample_run))
