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
from matplotlib.patches import StepPatch
from matplotlib.text import Text
from PIL import Image
from pycocotools import mask as mask_utils

from bench.report import ENTITY_PATTERN, MISSED_OUTCOMES, REJECT_REASONS, write_synthetic_output
from pipelines.outputs.gallery import entity_color
from pipelines.outputs.overlay import draw_overlay, label_rects
from pipelines.outputs.report import collect as collect_module
from pipelines.outputs.report import files
from pipelines.outputs.report import page as page_module
from pipelines.outputs.report.collect import collect
from pipelines.outputs.report.main import main
from pipelines.outputs.report.stats import UNIT, Histogram
from pipelines.outputs.shard_stats import ENTITY_BINS, entity_bin, summarize_shards
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
    monkeypatch.setattr("pipelines.outputs.report.sample.open_parquet", recording)
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
    from pipelines.outputs.card import write_dataset_card
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


# The page's glitches: stretched plots, clipped histograms, legends over bars, bucket headings,
# hidden box labels and empty axes.


def test_plot_rows_keep_each_plot_at_its_own_height():
    """In a flex row without `align-items`, every <img> stretches to the row's tallest plot."""
    rule = re.search(r"\.plots\{([^}]*)\}", page_module.STYLE).group(1)
    assert "display:flex" in rule and "align-items:flex-start" in rule


def test_histogram_range_grows_to_hold_every_value_whatever_the_order():
    values = np.array([0.5, 3.0, 10.6, 0.0, 1.0, 7.25])
    whole, parts, backwards = Histogram(*UNIT), Histogram(*UNIT), Histogram(*UNIT)
    whole.add(values)
    for v in values:
        parts.add([v])
    for v in values[::-1]:
        backwards.add([v])
    assert whole.top == parts.top == backwards.top == 16.0  # 1 doubled until 10.6 fits
    assert whole.counts.tolist() == parts.counts.tolist() == backwards.counts.tolist()
    assert whole.counts.sum() == values.size and whole.mean == pytest.approx(values.mean())
    bins = np.minimum(np.searchsorted(whole.edges, values, side="right") - 1, whole.bins - 1)
    assert (whole.counts[bins] > 0).all()  # each value in the bin that spans it


def _scale_mask_areas(output: Path, factor: int) -> None:
    """Masks `factor` times larger: they spill past their boxes, as random-weight masks do."""
    for shard in (output / "shards").glob("*.parquet"):
        table = pq.read_table(shard)
        rows = table.to_pylist()
        for entity in (e for row in rows for e in row["entities"]):
            entity["mask_area"] *= factor
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)


def _figure_titled(figures, title):
    (figure,) = [f for f in figures if f.get_label() == title]
    figure.draw_without_rendering()
    return figure


def test_mask_fill_axis_shows_every_value_and_the_legend_its_mean(tmp_path):
    """A mask larger than its box has a fill above 1: the axis must reach it, not clip it at 1."""
    out = write_synthetic_output(tmp_path / "out", 9, image_kib=1)
    _scale_mask_areas(out, 8)
    rows = all_rows(out)
    fills = [e["mask_area"] / ((e["box"][2] - e["box"][0]) * (e["box"][3] - e["box"][1]))
             for r in rows for e in r["entities"]]
    assert max(fills) > 1
    stats = collect(str(out)).stats
    figure = _figure_titled(page_module.entity_figures(stats), "mask fill")
    (axes,) = figure.axes
    (stairs,) = [p for p in axes.patches if isinstance(p, StepPatch)]
    counts, edges = stairs.get_data()[:2]
    assert counts.sum() == len(fills)  # every value plotted, none outside the drawn bins
    assert edges[0] <= min(fills) and max(fills) <= edges[-1] <= axes.get_xlim()[1]
    legend = " ".join(t.get_text() for t in figure.legends[0].get_texts())
    assert f"mean {np.mean(fills):.3g}" in legend
    assert axes.get_xlim()[0] <= np.mean(fills) <= axes.get_xlim()[1]


def test_legends_sit_outside_the_axes(output):
    stats = collect(str(output)).stats
    figures = page_module.prompt_figures(stats) + page_module.entity_figures(stats)
    with_legend = [f for f in figures if f.legends]
    assert len(with_legend) >= 6
    for figure in with_legend:
        figure.draw_without_rendering()
        (axes,) = figure.axes
        assert axes.get_legend() is None
        for legend in figure.legends:
            assert not legend.get_window_extent().overlaps(axes.get_window_extent()), figure.get_label()


@pytest.mark.parametrize("bucket, rows, shown, heading", [
    ("1", 3, 0, "1 entity: 3 rows, none sampled"),
    ("1", 0, 0, "1 entity: no rows"),
    ("0", 1, 1, "0 entities: 1 row, shown"),
    ("2", 3, 3, "2 entities: 3 rows, all shown"),
    (">=4", 1234, 4, "≥4 entities: 1,234 rows, 4 sampled"),
])
def test_bucket_headings(bucket, rows, shown, heading):
    assert page_module.bucket_heading(bucket, rows, shown) == heading


def test_page_headings_count_the_rows_of_each_bucket(output):
    assert main([str(output), "--per-bucket", "0"]) == 0
    page = (output / "report.html").read_text(encoding="utf-8")
    assert "<h3>1 entity: 15 rows, none sampled</h3>" in page and '<div class="card">' not in page
    assert main([str(output), "--per-bucket", "7"]) == 0
    page = (output / "report.html").read_text(encoding="utf-8")
    for heading in ("0 entities: 5 rows, all shown", "1 entity: 15 rows, 7 sampled",
                    "≥4 entities: 10 rows, 7 sampled"):
        assert f"<h3>{heading}</h3>" in page
    assert not re.search(r"<h3>1 entities|shown\)", page)


def _entity(k: int, box: tuple, size: tuple[int, int]) -> dict:
    """An entity whose mask fills its box on an image of `size` (W, H)."""
    mask = np.zeros(size[::-1], dtype=np.uint8)
    mask[box[1]:box[3], box[0]:box[2]] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"text": f"thing number {k}", "box": list(map(float, box)), "box_score": 0.5, "mask_score": 0.5,
            "mask": {"size": list(rle["size"]), "counts": rle["counts"]}}


def test_box_labels_never_cover_one_another():
    """Boxes with the same or close corners: every label keeps its own spot, inside the image, and
    is drawn there in its entity's colour (entity 0's label used to be hidden under the others)."""
    size = (320, 240)
    boxes = [(40, 30, 200, 200), (40, 30, 200, 200), (44, 34, 150, 120), (0, 236, 320, 240), (300, 0, 320, 20)]
    entities = [_entity(k, box, size) for k, box in enumerate(boxes)]
    image = draw_overlay(Image.new("RGB", size, (128, 128, 128)), entities)
    rects = label_rects(entities, size)
    for i, a in enumerate(rects):
        assert 0 <= a[0] < a[2] <= size[0] and 0 <= a[1] < a[3] <= size[1]
        assert all(a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1] for b in rects[i + 1:])
        assert image.getpixel((a[0], a[1])) == entity_color(i)  # its label's background, not another's
    assert rects[0][:2] == (40, 30)  # the first label stays at its box's top-left corner


def test_an_output_whose_inputs_were_all_rejected_shows_no_data_not_empty_axes(tmp_path):
    out = write_synthetic_output(tmp_path / "out", 0, rejects=5, image_kib=1)
    stats = collect(str(out)).stats
    for figure in page_module.prompt_figures(stats) + page_module.entity_figures(stats):
        texts = [t.get_text() for t in figure.findobj(Text)]
        assert any("no data" in t for t in texts), figure.get_label()
    assert main([str(out)]) == 0
    page = (out / "report.html").read_text()
    for title in ("phrases per caption", "text tokens per prompt", "box area ratio", "mask fill", "entity scores",
                  "image sizes", "entity sizes (source pixels before resizing)"):
        assert f'alt="{title}: no data"' in page
    assert "No rows to sample." in page and "<h3>" not in page.split("Samples, stratified")[1]


def test_counts_are_singular_for_one():
    from pipelines.outputs.gallery import counted

    assert counted(1, "shard file") == "1 shard file" and counted(0, "reject file") == "0 reject files"
    assert counted(2048, "row") == "2,048 rows" and counted(1, "entity", "entities") == "1 entity"
    assert counted(3, "entity", "entities") == "3 entities"
