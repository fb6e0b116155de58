"""The score stage in the whole job (tiny preset, bundled sample): computed scores in the rows, the
CLIP model and head in the manifest, semantic evaluation overlap as rejects; accounting exact."""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

import beam_runner
from pipelines.prompts.eval_overlap_clip import closest_reference
from unimo_g.images.decoding import decode_image
from unimo_g.models.aesthetic_head import load_head
from unimo_g.models.clip_scorer import embed_images, load_clip_scorer, score_batch
from unimo_g.pipeline_config import DecodeConfig, ScoresConfig

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
TINY = str(ROOT / "configs" / "tiny.yaml")
EVAL_KEYS = ("000000001", "000000004")  # sample photos copied, byte for byte, into the evaluation folder

pytestmark = pytest.mark.time_limit(600)


def _run(out: Path, *sets: str) -> dict:
    args = ["--input", str(SAMPLE), "--output", str(out), "--config", TINY]
    for item in sets:
        args += ["--set", item]
    assert beam_runner.main(args) == 0
    return json.loads((out / "manifest.json").read_text())


def _table(out: Path, folder: str) -> list[dict]:
    files = sorted(glob.glob(str(out / folder / "*.parquet")))
    return [row for path in files for row in pq.read_table(path).to_pylist()]


def _pixels(key: str) -> np.ndarray:
    return decode_image((SAMPLE / "00000" / f"{key}.jpg").read_bytes(), DecodeConfig(min_side=1)).pixels


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scores")
    eval_dir = folder / "eval"
    eval_dir.mkdir()
    for key in EVAL_KEYS:
        shutil.copy(SAMPLE / "00000" / f"{key}.jpg", eval_dir / f"{key}.jpg")
    generator = torch.Generator().manual_seed(3)
    head = folder / "head.safetensors"
    save_file({"weight": torch.randn(1, 32, generator=generator), "bias": torch.tensor([5.0])}, str(head))
    out = folder / "out"
    manifest = _run(out, f"scores.aesthetic_head={head}", f"exclude.images={eval_dir}", "exclude.clip_cosine=0.9999",
                    "exclude.phash_distance=null")  # the CLIP match alone
    return out, manifest, eval_dir, head


def test_rows_carry_the_clip_similarity_and_aesthetic_score(scored_run):
    out, manifest, _, head = scored_run
    rows = _table(out, "shards")
    assert manifest["counts"]["accounted"] is True
    assert manifest["counts"]["inputs"] == len(rows) + manifest["counts"]["rejects"] == 10
    scorer = load_clip_scorer(ScoresConfig(enabled=True, model="tiny"))
    head_model = load_head(head.read_bytes(), scorer.embed_dim)
    for row in rows:
        key = row["source_key"].rsplit("/", 1)[-1]
        similarity, aesthetic, _ = score_batch(scorer, [_pixels(key)], [row["caption_original"].strip()], head_model)
        assert row["computed_similarity"] == pytest.approx(float(similarity[0]), abs=2e-5)
        assert row["computed_aesthetic"] == pytest.approx(float(aesthetic[0]), abs=2e-5)
    scores = manifest["models"]["scores"]
    assert scores["id"] == "tiny" and scores["aesthetic_head"] == str(head)
    assert len(scores["aesthetic_head_sha256"]) == 64 and manifest["random_weights"] is True


def test_copies_of_evaluation_images_are_rejected_as_eval_overlap(scored_run):
    out, manifest, eval_dir, _ = scored_run
    rejects = _table(out, "rejects")
    overlap = {r["source"].rsplit("/", 1)[-1]: r for r in rejects if r["reason"] == "eval_overlap"}
    # computed apart from the pipeline: which inputs' embeddings reach the threshold against the folder
    scorer = load_clip_scorer(ScoresConfig(enabled=True, model="tiny"))
    references = embed_images(scorer, [_pixels(key) for key in EVAL_KEYS]).numpy()
    names = [f"{eval_dir}/{key}" for key in EVAL_KEYS]
    expected = {}
    for path in sorted((SAMPLE / "00000").glob("*.jpg")):
        embedding = embed_images(scorer, [_pixels(path.stem)]).numpy()[0]
        match = closest_reference(embedding, references, names, 0.9999, 5)
        if match:
            expected[path.stem] = match
    assert set(expected) == set(EVAL_KEYS) == set(overlap)
    for key, reject in overlap.items():
        assert reject["stage"] == "exclude"
        assert reject["detail"] == f"evaluation image {eval_dir}/{key}, cosine 1.00000"
    assert manifest["counts"]["rejects_by_reason"]["exclude"]["eval_overlap"] == len(EVAL_KEYS)


def test_identical_image_has_cosine_one_whatever_its_batch():
    scorer = load_clip_scorer(ScoresConfig(enabled=True, model="tiny"))
    image = _pixels("000000002")
    alone = embed_images(scorer, [image]).numpy()
    in_batch = embed_images(scorer, [_pixels("000000003"), image, _pixels("000000005")]).numpy()
    assert closest_reference(alone[0], in_batch, ["a", "b", "c"], 1.0, 5) == ("b", 1.0)
    assert closest_reference(alone[0], in_batch[[0, 2]], ["a", "c"], 0.9999, 5) is None


def test_an_unreadable_or_unknown_head_is_a_usage_error_before_the_job(tmp_path, capsys):
    unknown = tmp_path / "fc.safetensors"
    save_file({"fc.weight": torch.zeros(1, 32), "fc.bias": torch.zeros(1)}, str(unknown))
    for head, message in ((tmp_path / "missing.safetensors", "scores.aesthetic_head: cannot read"),
                          (unknown, "not an aesthetic head we know")):
        out = tmp_path / head.stem
        code = beam_runner.main(["--input", str(SAMPLE), "--output", str(out), "--config", TINY,
                                 "--set", f"scores.aesthetic_head={head}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and message in err[-1] and not out.exists()


def test_disabled_stage_leaves_the_scores_empty(tmp_path):
    manifest = _run(tmp_path / "out", "scores.enabled=false", "dedupe.method=none")
    rows = _table(tmp_path / "out", "shards")
    assert len(rows) == manifest["counts"]["inputs"] == 10
    assert all(r["computed_similarity"] is None and r["computed_aesthetic"] is None for r in rows)
    assert "scores" not in manifest["models"]
