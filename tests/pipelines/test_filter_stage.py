"""The `filters` config in the real job: filtered inputs are rejects of stage `filter`, never decoded,
and never the copy that de-duplication keeps."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import beam_runner
from pipelines.outputs.verify import verify

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")

pytestmark = pytest.mark.time_limit(600)


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(80, 96, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _folder(root: Path) -> Path:
    """a and b: one image and caption (a ranks first, but is filtered); c: not an image, filtered;
    d: no sidecar (missing value, kept by default)."""
    root.mkdir()
    inputs = {"a": (_png(0), {"punsafe": 0.9, "LICENSE": "cc0"}), "b": (_png(0), {"punsafe": 0.1, "LICENSE": "cc0"}),
              "c": (b"not an image at all", {"punsafe": 0.95}), "d": (_png(1), None)}
    for key, (image, sidecar) in inputs.items():
        (root / f"{key}.png").write_bytes(image)
        (root / f"{key}.txt").write_text("a small dog on a red sofa")
        if sidecar is not None:
            (root / f"{key}.json").write_text(json.dumps(sidecar))
    return root


def _table(out: Path, folder: str):
    return pq.read_table(sorted((out / folder).glob("*.parquet"))).to_pylist()


@pytest.mark.parametrize("method", ["reread", "single_read"])
def test_filtered_inputs_are_rejected_before_decode_and_dedupe(tmp_path, method):
    out = tmp_path / "out"
    code = beam_runner.main(["--input", str(_folder(tmp_path / "in")), "--output", str(out), "--config", TINY,
                             "--set", f"dedupe.method={method}", "--set", "filters.rules=[punsafe < 0.5]"])
    assert code == 0
    rows, rejects = _table(out, "shards"), _table(out, "rejects")
    assert sorted(r["source_key"] for r in rows) == ["b", "d"]  # b is not a duplicate of the filtered a
    assert {r["source_key"]: r["punsafe"] for r in rows}["b"] == pytest.approx(0.1)
    assert sorted((r["source"], r["stage"], r["reason"]) for r in rejects) == [
        ("a", "filter", "filter:punsafe.lt"), ("c", "filter", "filter:punsafe.lt")]  # c never reached decode
    detail = {r["source"]: r["detail"] for r in rejects}
    assert detail["a"] == "punsafe=0.9 fails 'punsafe < 0.5'"
    assert {r["source"]: r["punsafe"] for r in rejects}["c"] == pytest.approx(0.95)  # rejects carry provenance
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rejects_by_reason"] == {"filter": {"filter:punsafe.lt": 2}}
    assert manifest["counts"]["inputs"] == 4 and manifest["counts"]["accounted"] is True
    assert verify(str(out))[0] == 0


def test_a_malformed_rule_on_the_command_line_is_a_usage_error_naming_it(tmp_path, capsys):
    code = beam_runner.main(["--input", str(_folder(tmp_path / "in")), "--output", str(tmp_path / "out"),
                             "--config", TINY, "--set", "filters.rules=[aesthetic >> 6.5]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "aesthetic >> 6.5" in err[0]
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_rules_on_computed_scores_run_after_decoding(tmp_path):
    """No stage computes scores in this run: `computed_similarity` is missing everywhere, and the rule
    says to reject a missing value. The input that is not an image is a decode reject: the rule ran later."""
    out = tmp_path / "out"
    code = beam_runner.main(["--input", str(_folder(tmp_path / "in")), "--output", str(out), "--config", TINY,
                             "--set", "scores.enabled=false",
                             "--set", "filters.rules=[computed_similarity > 0.3 ; missing=reject]"])
    assert code == 0
    rejects = _table(out, "rejects")
    assert not (out / "shards").exists() or not list((out / "shards").glob("*.parquet"))
    assert sorted((r["source"], r["stage"], r["reason"]) for r in rejects) == [
        ("a", "filter", "filter:computed_similarity.gt"), ("b", "dedupe", "duplicate"),
        ("c", "decode", "not_an_image"), ("d", "filter", "filter:computed_similarity.gt")]
    assert {r["source"]: r["detail"] for r in rejects}["d"] == (
        "computed_similarity is missing (missing=reject) fails 'computed_similarity > 0.3 ; missing=reject'")


def test_rules_on_computed_scores_see_the_score_stage_values(tmp_path):
    """The tiny preset computes CLIP scores; a cosine is never above 1, so every scored input fails."""
    out = tmp_path / "out"
    code = beam_runner.main(["--input", str(_folder(tmp_path / "in")), "--output", str(out), "--config", TINY,
                             "--set", "filters.rules=[computed_similarity > 1.0]"])
    assert code == 0
    filtered = {r["source"]: r["detail"] for r in _table(out, "rejects") if r["stage"] == "filter"}
    assert sorted(filtered) == ["a", "d"]
    for detail in filtered.values():
        value = float(detail.split("=", 1)[1].split(" ", 1)[0])
        assert -1.0 <= value <= 1.0 and detail.endswith("fails 'computed_similarity > 1.0'"), detail


@pytest.mark.parametrize("preset, expected", [
    ("laion_safe", {"000000001": "filter:pwatermark.lt", "000000002": "filter:punsafe.lt"}),
    ("paper", {"000000000": "filter:similarity.gt", "000000001": "filter:aesthetic.gt",
               "000000002": "filter:similarity.gt"}),
])
def test_presets_on_laion_columns_saved_by_img2dataset(tmp_path, preset, expected):
    """The webdataset fixture is a real img2dataset output whose URL list carried LAION's columns."""
    out = tmp_path / "out"
    code = beam_runner.main(["--input", str(ROOT / "tests" / "data" / "img2dataset" / "webdataset"),
                             "--output", str(out), "--config", TINY, "--set", f"filters.preset={preset}"])
    assert code == 0
    rejects = _table(out, "rejects")
    assert {r["source"]: r["reason"] for r in rejects if r["stage"] == "filter"} == expected
    failed = [r for r in rejects if r["stage"] == "read"]  # the failed download: a read reject, with its columns
    assert [(r["source"], r["nsfw"]) for r in failed] == [("000000003", "UNLIKELY")]
    rows = _table(out, "shards")
    assert len(rows) + len(rejects) == 4
    assert [r["license"] for r in rows] == [None] * len(rows)  # LAION's "?": unknown
