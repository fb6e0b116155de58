"""`unimo-g report`: statistics equal to those of the rows, a bounded stratified sample whose image
bytes are the only ones read, and a self-contained page."""

import contextlib
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.report import ENTITY_PATTERN, MISSED_OUTCOMES, REJECT_REASONS, write_synthetic_output
from pipelines.report import collect as collect_module
from pipelines.report import files
from pipelines.report.collect import collect
from pipelines.report.main import main
from pipelines.shard_stats import ENTITY_BINS, entity_bin, summarize_shards
from unimo_g.schema import FIELDS_SINCE_V2, OUTCOME_ENTITY, VERSION_KEY

ROWS, REJECTS = 45, 7


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    """45 rows in 3 files of 20 rows, row groups of 8 rows; 7 rejects of 3 reasons."""
    root = tmp_path_factory.mktemp("report") / "out"
    return write_synthetic_output(root, ROWS, rejects=REJECTS, image_kib=1, rows_per_file=20, row_group_rows=8)


def all_rows(output: Path) -> list[dict]:
    return [r for p in sorted((output / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def test_statistics_equal_those_of_the_rows(output):
    rows = all_rows(output)
    stats = collect(str(output)).stats
    assert stats.rows == ROWS
    counts = Counter(len(r["entities"]) for r in rows)
    assert dict(stats.entity_counts) == dict(counts)
    assert counts == Counter(ENTITY_PATTERN[i % len(ENTITY_PATTERN)] for i in range(ROWS))
    shares = stats.bucket_shares()
    for bucket in ENTITY_BINS:
        assert shares[bucket] == pytest.approx(sum(1 for r in rows if entity_bin(len(r["entities"])) == bucket) / ROWS)
    assert dict(stats.phrase_counts) == dict(Counter(len(r["phrases"]) for r in rows))
    tokens = [len(re.findall(r"\w+|[^\w\s]", re.sub(r"<img>\d+</img>", " ", r["prompt_text"]))) for r in rows]
    assert stats.tokens.mean == pytest.approx(np.mean(tokens))

    entities = [(e, r) for r in rows for e in r["entities"]]
    area = [(e["box"][2] - e["box"][0]) * (e["box"][3] - e["box"][1]) for e, _ in entities]
    assert stats.entities == len(entities)
    assert stats.box_area_ratio.mean == pytest.approx(np.mean([a / (r["width"] * r["height"])
                                                               for a, (_, r) in zip(area, entities)]))
    assert stats.mask_fill.mean == pytest.approx(np.mean([e["mask_area"] / a for a, (e, _) in zip(area, entities)]))
    assert stats.scores["box_score"].mean == pytest.approx(np.mean([e["box_score"] for e, _ in entities]), rel=1e-6)
    assert stats.width.mean == pytest.approx(np.mean([r["width"] for r in rows]))
    assert stats.phrase_outcomes == Counter(o for r in rows for o in r["phrase_outcomes"] if o != OUTCOME_ENTITY)
    assert stats.rows_without_outcomes == 0


def test_statistics_agree_with_the_manifest_statistics(output):
    """The page's prompt figures and the manifest's `statistics` (`summarize_shards`) are the same numbers."""
    stats, summary = collect(str(output)).stats, summarize_shards(str(output))
    assert stats.bucket_shares() == pytest.approx(summary["entities_per_prompt"]["shares"], abs=1e-4)
    assert stats.tokens.mean == pytest.approx(summary["mean_text_tokens_per_prompt"], abs=1e-3)
    assert dict(stats.phrase_outcomes) == {k: n for k, n in summary["phrase_outcomes"].items() if k != OUTCOME_ENTITY}


def test_sample_is_stratified_bounded_and_seeded(output):
    collected = collect(str(output), per_bucket=2, per_reason=1, seed=3)
    counts = Counter(entity_bin(ENTITY_PATTERN[i % len(ENTITY_PATTERN)]) for i in range(ROWS))
    assert set(collected.samples) == set(counts)
    for bucket, rows in collected.samples.items():
        assert len(rows) == min(2, counts[bucket])
        assert all(entity_bin(len(r["entities"])) == bucket and r["image"] for r in rows)
    assert set(collected.reject_samples) == set(REJECT_REASONS)
    assert all(len(rows) == 1 and (rows[0]["stage"], rows[0]["reason"]) == key
               for key, rows in collected.reject_samples.items())
    again = collect(str(output), per_bucket=2, per_reason=1, seed=3)
    assert [r["id"] for rs in again.samples.values() for r in rs] == [r["id"] for rs in collected.samples.values()
                                                                       for r in rs]
    other = collect(str(output), per_bucket=2, per_reason=1, seed=4)
    assert [r["id"] for r in other.samples["1"]] != [r["id"] for r in collected.samples["1"]] or \
        [r["id"] for r in other.samples["2"]] != [r["id"] for r in collected.samples["2"]]


def test_image_bytes_are_read_only_from_row_groups_of_sampled_rows(output, monkeypatch):
    reads = []  # (path, row group, columns) of every row-group read
    open_parquet = files.open_parquet

    class Recording:
        def __init__(self, path, parquet):
            self.path, self.parquet = path, parquet

        def __getattr__(self, name):
            return getattr(self.parquet, name)

        def read_row_group(self, index, columns=None):
            reads.append((self.path, index, columns))
            return self.parquet.read_row_group(index, columns=columns)

    @contextlib.contextmanager
    def recording(path):
        with open_parquet(path) as parquet:
            yield Recording(path, parquet)

    monkeypatch.setattr(collect_module.files, "open_parquet", recording)
    monkeypatch.setattr("pipelines.report.sample.open_parquet", recording)
    collected = collect(str(output), per_bucket=1, per_reason=1)
    shard_reads = [r for r in reads if "/shards/" in r[0]]
    stats_reads = [r for r in shard_reads if r[2] is not None]
    assert len(stats_reads) == 6 + 1  # every row group once: 3 files of 3, 3 and 1 row groups
    assert not any("image" in c for _, _, cols in stats_reads for c in cols if not c.endswith("image_format"))
    full_reads = {(p, g) for p, g, cols in shard_reads if cols is None}
    sampled = sum(len(rows) for rows in collected.samples.values())
    assert 1 <= len(full_reads) <= sampled < 7


def test_page_is_self_contained(output, capsys):
    assert main([str(output), "--per-bucket", "2"]) == 0
    assert "report:" in capsys.readouterr().out
    page = (output / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/") for s in sources)  # opens from disk, no network
    assert not re.search(r'(href|src)="(https?:)?//', page)
    assert "Random weights" in page
    assert f"{ROWS:,} rows in 3 shard files, {REJECTS:,} rejects" in page and "inputs = rows + rejects" in page
    for share in ("16.0%", "36.8%", "25.8%", "12.3%", "9.1%", "42.5", "1.67"):
        assert share in page
    for stage, reason in REJECT_REASONS:
        assert f"<td>{stage}</td><td>{reason}</td>" in page
    assert page.count('<div class="card">') == 5 * 2  # 2 per bucket: 0, 1, 2, 3, ≥4
    assert page.count('class="plot"') >= 8
    assert "carry no per-phrase outcome" not in page and "by outcome" in page


def test_why_phrases_did_not_become_entities_from_the_phrase_outcomes_column(tmp_path):
    """Every outcome other than `entity` is counted, and the page shows those counts."""
    out = write_synthetic_output(tmp_path / "out", 9, image_kib=1, row_group_rows=6)
    # one non-entity phrase per row, row i's being MISSED_OUTCOMES[i % 6]; rows 0 and 3 share a row group
    expected = {"below_threshold": 3, "shape_filter": 2, "same_object": 2, "mask_score": 1, "entity_cap": 1}
    assert Counter(MISSED_OUTCOMES[i % len(MISSED_OUTCOMES)] for i in range(9)) == expected
    stats = collect(str(out)).stats
    assert stats.phrase_outcomes == expected and stats.rows_without_outcomes == 0
    assert main([str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "9 of 28 phrases" in page  # 19 entities (ENTITY_PATTERN), one more phrase per row
    assert "<th>outcome</th><th>phrases</th>" in page and "<td>entity</td>" not in page
    for outcome, n in expected.items():
        assert f'<tr><td>{outcome}</td><td class="num">{n}</td></tr>' in page
    assert "carry no per-phrase outcome" not in page


def test_schema_v1_shards_carry_no_per_phrase_outcome(tmp_path):
    out = write_synthetic_output(tmp_path / "out", 4, image_kib=1)
    (shard,) = (out / "shards").glob("*.parquet")
    v1 = pq.read_table(shard).drop_columns(list(FIELDS_SINCE_V2))
    pq.write_table(v1.replace_schema_metadata({VERSION_KEY: b"1"}), shard)
    stats = collect(str(out)).stats
    assert stats.rows_without_outcomes == 4 and not stats.phrase_outcomes
    assert main([str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "these shards carry no per-phrase outcome" in page and "4 of 7 phrases have no entity" in page
    assert "<th>outcome</th>" not in page


def test_an_output_whose_inputs_were_all_rejected(tmp_path):
    out = write_synthetic_output(tmp_path / "out", 0, rejects=5, image_kib=1)
    assert main([str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "inputs = rows + rejects (5 = 0 + 5)" in page and '<div class="card">' not in page
    assert "<td>mean entities per prompt</td><td>–</td>" in page


def test_without_manifest_the_banner_comes_from_the_shards(tmp_path, capsys):
    out = write_synthetic_output(tmp_path / "out", 4, image_kib=1)
    (out / "manifest.json").unlink()
    assert main([str(out), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "no manifest.json" in page and "Random weights" in page and "inputs not recorded" in page
    assert not (out / "report.html").exists()


@pytest.mark.parametrize("argv, named", [(["--per-bucket", "-1"], "--per-bucket"), (["--bogus"], "--bogus")])
def test_usage_errors(argv, named, output, capsys):
    assert main([str(output), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and err[0].startswith("unimo-g report: error:")


def test_report_and_card_of_an_object_store_output(output, tmp_path, monkeypatch, capsys):
    """Through Beam's FileSystems only: an `objtest://` URL, where folders do not exist by themselves."""
    from pipelines.dataset_card import write_dataset_card
    from tests.pipelines.object_store import ObjectStoreForTests

    bucket = tmp_path / "bucket"
    shutil.copytree(output, bucket / "run")
    (bucket / "run" / "report.html").unlink(missing_ok=True)
    monkeypatch.setattr(ObjectStoreForTests, "root", str(bucket))
    assert main(["objtest://run"]) == 0
    assert "report: objtest://run/report.html" in capsys.readouterr().out
    page = (bucket / "run" / "report.html").read_text()
    assert f"{ROWS:,} rows in 3 shard files" in page and page.count('<div class="card">') == 5 * 4
    manifest = json.loads((bucket / "run" / "manifest.json").read_text())
    assert write_dataset_card("objtest://run", manifest) == "objtest://run/README.md"
    assert "path: shards/*.parquet" in (bucket / "run" / "README.md").read_text()
    assert main(["objtest://elsewhere"]) == 2


def test_the_licences_of_the_rows(tmp_path):
    out = write_synthetic_output(tmp_path / "out", 4, image_kib=1)
    (shard,) = (out / "shards").glob("*.parquet")
    table = pq.read_table(shard)
    index = table.schema.get_field_index("license")
    licences = ["cc-by-4.0", "cc-by-4.0", None, "<cc0>"]
    pq.write_table(table.set_column(index, table.schema.field(index), pa.array(licences, pa.string())), shard)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["statistics"] = summarize_shards(str(out))
    assert manifest["statistics"]["rows_by_license"] == {"cc-by-4.0": 2, "(none)": 1, "<cc0>": 1}
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main([str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "<h3>Licences of the rows</h3>" in page and '<td>cc-by-4.0</td><td class="num">2</td>' in page
    assert "<td>&lt;cc0&gt;</td>" in page
