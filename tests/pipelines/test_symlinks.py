"""Reads stay inside the input folder: a file that is a link leaving it (image, caption, metadata
sidecar) becomes a `read`/`path_not_allowed` reject and is never opened, a linked folder is not
listed at all, and a link that stays inside is read. The same holds for img2dataset's files layout, the evaluation-image
folders and the feature job's input.

"Never opened" is checked with named pipes: opening one for reading blocks until a writer comes,
so a run that opened one would hang past its time limit.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import beam_runner
from pipelines.features.graph import resolve_inputs

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = sorted((ROOT / "data" / "sample" / "00000").glob("*.jpg"))
TINY = str(ROOT / "configs" / "tiny.yaml")
SECRET = "root:x:0:0:secret line that must never become a caption\n"

pytestmark = [pytest.mark.time_limit(180),
              pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes prove that nothing is opened")]


def _run(*args: str) -> int:
    return beam_runner.main([*args, "--config", TINY, "--progress-interval", "0",
                             "--set", "near_duplicates.enabled=false"])


def _outputs(out: Path) -> tuple[dict, dict]:
    rows = {r["source_key"]: r for p in (out / "shards").glob("*.parquet")
            for r in pq.read_table(p, columns=["source_key", "caption"]).to_pylist()}
    rejects = {r["source"]: r for p in (out / "rejects").glob("*.parquet")
               for r in pq.read_table(p, columns=["source", "stage", "reason", "detail"]).to_pylist()}
    return rows, rejects


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder beside the input: a secret text, a real photo, a named pipe, a folder of a sample."""
    folder = tmp_path / "outside"
    (folder / "dir").mkdir(parents=True)
    (folder / "passwd").write_text(SECRET)
    shutil.copy(PHOTOS[1], folder / "photo.jpg")
    os.mkfifo(folder / "pipe")
    shutil.copy(PHOTOS[2], folder / "dir" / "x.jpg")
    (folder / "dir" / "x.txt").write_text("a sample outside the input")
    return folder


def test_links_out_of_a_folder_input_are_rejected_unopened(tmp_path, outside):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    shutil.copy(PHOTOS[0], folder / "good.jpg")
    (folder / "good.txt").write_text("a photo inside the folder")
    (folder / "alias.jpg").symlink_to(folder / "good.jpg")  # a link that stays inside: read
    (folder / "alias.txt").write_text("the same photo under another name")
    shutil.copy(PHOTOS[3], folder / "capleak.jpg")
    (folder / "capleak.txt").symlink_to(outside / "passwd")
    (folder / "linkreal.jpg").symlink_to(outside / "photo.jpg")
    (folder / "linkreal.txt").write_text("a photo from elsewhere")
    (folder / "link.jpg").symlink_to(outside / "pipe")
    (folder / "link.txt").write_text("a pipe posing as a photo")
    shutil.copy(PHOTOS[4], folder / "sidecar.jpg")
    (folder / "sidecar.txt").write_text("a photo whose metadata links out")
    (folder / "sidecar.json").symlink_to(outside / "pipe")
    (folder / "linked").symlink_to(outside / "dir", target_is_directory=True)

    assert _run("--input", str(folder), "--output", str(out), "--input-format", "folder") == 0
    rows, rejects = _outputs(out)
    assert sorted(rows) == ["alias", "good"]
    escaped = {"capleak", "linkreal", "link", "sidecar"}  # a linked folder is not even listed
    assert {key: (r["stage"], r["reason"]) for key, r in rejects.items()} == {
        key: ("read", "path_not_allowed") for key in escaped}
    assert f"outside the input folder {folder}" in rejects["capleak"]["detail"]
    assert not any("secret" in (r["caption"] or "") for r in rows.values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["accounted"] and manifest["counts"]["inputs"] == 6


def test_a_link_out_of_an_img2dataset_files_shard_is_rejected(tmp_path, outside):
    shard = shutil.copytree(ROOT / "tests" / "data" / "img2dataset" / "files", tmp_path / "i2d")
    victim = sorted((shard / "00000").glob("*.jpg"))[0]
    victim.unlink()
    victim.symlink_to(outside / "pipe")
    out = tmp_path / "out"
    assert _run("--input", str(shard), "--output", str(out), "--set", "decode.min_side=16") == 0
    _, rejects = _outputs(out)
    assert (rejects[victim.stem]["stage"], rejects[victim.stem]["reason"]) == ("read", "path_not_allowed")


def test_evaluation_folders_do_not_follow_links_out(tmp_path, outside, caplog):
    folder, evaluation, out = tmp_path / "in", tmp_path / "eval", tmp_path / "out"
    folder.mkdir()
    evaluation.mkdir()
    shutil.copy(PHOTOS[0], folder / "p0.jpg")
    (folder / "p0.txt").write_text("a photo")
    shutil.copy(PHOTOS[0], evaluation / "bench.jpg")
    (evaluation / "trap.jpg").symlink_to(outside / "pipe")
    assert _run("--input", str(folder), "--output", str(out), "--set", f"exclude.images={evaluation}") == 0
    _, rejects = _outputs(out)
    assert rejects["p0"]["reason"] == "eval_overlap"


def test_the_feature_job_refuses_shards_that_link_out(tmp_path, outside):
    run = tmp_path / "run"
    (run / "shards").mkdir(parents=True)
    (run / "shards" / "a.parquet").symlink_to(outside / "passwd")
    with pytest.raises(ValueError, match="outside the input folder"):
        resolve_inputs(str(run))
