"""The feature job through `features_runner`, on small prompt shards with the tiny training preset."""

from __future__ import annotations

import glob
import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import features_runner
from pipelines.features.handlers import EncoderHandler
from pipelines.features.read import row_group_units
from pipelines.features.stages import FeatureItem, finish_item, unconditional_item
from tests.trainers.shard_fixtures import make_row, write_shard
from unimo_g.checkpoint_format import build_vae
from unimo_g.config_tools import read_yaml
from unimo_g.features import (
    FEATURE_FIELDS,
    UNCONDITIONAL_ID,
    FeatureLayout,
    decode_feature_row,
    read_feature_metadata,
    spec_from_train_config,
)
from unimo_g.images.training_geometry import open_image, transform_image
from unimo_g.inference import encode_unconditional
from unimo_g.models.encoder import build_encoder
from unimo_g.models.vae import encode_moments
from unimo_g.records import PromptPart
from unimo_g.schema import check_schema_version, lineage_of

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "train_tiny.yaml")
FAST = ["--storage-dtype", "fp32", "--batch-size", "2"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_inputs(root: Path) -> tuple[Path, list[dict]]:
    """A run folder with two shard files: four good rows (captions of 0-2 objects, so encoder
    batches are padded), one corrupt image and one blank caption."""
    rows = [make_row(i, num_entities=i % 3) for i in range(4)]
    whole = make_row(4)["image"]
    rows.append(make_row(4, image=whole[: len(whole) // 2]))  # a PNG cut in half
    blank = make_row(5)
    rows.append({**blank, "id": "blank-caption", "caption": "   "})
    write_shard(root / "shards" / "part-00000.parquet", rows[:3])
    write_shard(root / "shards" / "part-00001.parquet", rows[3:])
    return root, rows


def run_features(inputs, output, *extra) -> dict:
    code = features_runner.main(["--input", str(inputs), "--output", str(output), "--config", TINY, *FAST, *extra])
    assert code == 0
    return json.loads((Path(output) / "manifest.json").read_text())


def read_dir(folder: Path) -> tuple[list[dict], list[pa.Schema]]:
    files = sorted(glob.glob(str(folder / "*.parquet")))
    tables = [pq.read_table(f) for f in files]
    return [row for t in tables for row in t.to_pylist()], [t.schema for t in tables]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    inputs, rows = write_inputs(root / "prompts")
    manifest = run_features(inputs, root / "out")
    return root / "out", rows, manifest


@pytest.fixture(scope="module")
def models():
    spec = spec_from_train_config(read_yaml(TINY), "fp32")
    return spec, build_vae(spec.denoiser_config()), build_encoder(spec.encoder, "cpu")


def test_every_input_is_one_row_or_one_reject(run):
    out, rows, manifest = run
    features, _ = read_dir(out / "features")
    rejects, reject_schemas = read_dir(out / "rejects")
    assert sorted([r["id"] for r in features] + [r["id"] for r in rejects]) == sorted(r["id"] for r in rows)
    assert {r["id"]: r["reason"] for r in rejects} == {rows[4]["id"]: "truncated", "blank-caption": "empty_caption"}
    assert {r["stage"] for r in rejects} == {"features"}
    assert all(re.fullmatch(r".+\.parquet\[\d+\]", r["source"]) for r in rejects)  # file and row
    for schema in reject_schemas:
        check_schema_version(schema.metadata, where="reject file")

    counts = manifest["counts"]
    assert counts["inputs"] == counts["inputs_read"] == 6
    assert (counts["rows"], counts["rejects"], counts["unconditional_rows"]) == (4, 2, 1)
    assert counts["accounted"] is True
    assert counts["rejects_by_reason"] == {"features": {"empty_caption": 1, "truncated": 1}}
    assert [f["rows"] for f in manifest["input"]["files"]] == [3, 3]
    assert manifest["counters"] == {
        "inputs": 6, "encoded": 4, "rejected": 2, "reject.features.truncated": 1, "reject.features.empty_caption": 1
    }
    assert manifest["random_weights"] is True and manifest["vae_dtype"] == "fp32"


def test_features_equal_a_direct_computation_on_each_sample(run, models):
    out, rows, _ = run
    spec, vae, encoder = models
    features, schemas = read_dir(out / "features")
    stored = {}
    for schema in schemas:
        assert [f.name for f in schema] == [f.name for f in FEATURE_FIELDS]
        found_spec, layout = read_feature_metadata(schema.metadata, where="feature file")
    for row in features:
        stored[row["id"]] = decode_feature_row(row, found_spec, layout)
    assert len(stored) == 4
    for row in rows[:4]:
        pixels = transform_image(open_image(row["image"], 10**6), spec.resolution)  # (3, R, R)
        mean, std = encode_moments(vae, pixels[None])  # (1, C, h, w), one image alone
        encoded = encoder([(PromptPart(text=row["caption"]),)], [[]])
        hidden = encoded.hidden[0, : int(encoded.attention_mask[0].sum())]  # (T, D)
        got = stored[row["id"]]
        torch.testing.assert_close(got["latent_mean"], mean[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["latent_std"], std[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["hidden"], hidden, atol=1e-5, rtol=1e-5)
    lengths = {row["hidden_length"] for row in features}
    assert len(lengths) > 1, "captions of different lengths: the stored hidden states drop the padding"


def test_the_unconditional_row_is_the_empty_prompt(run, models):
    out, _, _ = run
    _, _, encoder = models
    files = glob.glob(str(out / "unconditional" / "*.parquet"))
    assert len(files) == 1
    table = pq.read_table(files[0])
    assert table.num_rows == 1
    spec, layout = read_feature_metadata(table.schema.metadata, where=files[0])
    row = table.to_pylist()[0]
    assert row["id"] == UNCONDITIONAL_ID and row["latent_mean"] is None and row["latent_std"] is None
    hidden, mask = encode_unconditional(encoder)  # (1, T_u, D), (1, T_u)
    assert mask.all()
    torch.testing.assert_close(decode_feature_row(row, spec, layout)["hidden"], hidden[0])


def test_metadata_holds_the_training_configs_spec_and_layout(run):
    out, _, manifest = run
    expected = spec_from_train_config(read_yaml(TINY), "fp32")
    for folder in ("features", "unconditional"):
        for path in glob.glob(str(out / folder / "*.parquet")):
            metadata = pq.read_schema(path).metadata
            spec, layout = read_feature_metadata(metadata, where=path)
            assert spec == expected and not spec.mismatches(expected)
            assert layout == FeatureLayout((4, 16, 16), 32)  # tiny VAE: 4 channels, 64 / 4; tiny encoder: 32 wide
            assert lineage_of(metadata)["spec_hash"] == manifest["spec_hash"]
    assert manifest["layout"] == {"latent_shape": [4, 16, 16], "hidden_size": 32}


def test_rerun_replaces_the_previous_outputs_only(tmp_path):
    inputs = tmp_path / "one.parquet"
    write_shard(inputs, [make_row(7)])
    out = tmp_path / "out"
    stale = [out / "features" / "part-00001-of-00002.parquet", out / "unconditional" / "part-00001-of-00002.parquet",
             out / "rejects" / "part-00001-of-00002.parquet"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"an earlier run's file")
    (out / "manifest.json").write_text("{}")
    (out / "notes.txt").write_text("kept")

    manifest = run_features(inputs, out, "--overwrite")
    assert not any(path.exists() for path in stale)
    assert (out / "notes.txt").read_text() == "kept"
    counts = manifest["counts"]
    assert (counts["inputs"], counts["rows"], counts["rejects"], counts["unconditional_rows"]) == (1, 1, 0, 1)
    assert len(glob.glob(str(out / "unconditional" / "*.parquet"))) == 1


def test_the_encoder_stage_rejects_a_caption_of_control_tokens_only(models):
    spec, _, encoder = models
    handler = EncoderHandler(spec.encoder, "cpu", batch_size=4)
    batch = [FeatureItem("a", "a red cube"), FeatureItem("b", "<image> <s>"), unconditional_item(),
             FeatureItem("c", "a blue ball and a green cone")]
    out = handler.run_inference(batch, encoder)
    assert [item.id for item in out] == ["a", "b", UNCONDITIONAL_ID, "c"]
    assert out[1].reject is not None and out[1].reject.reason == "empty_prompt" and out[1].hidden is None
    for item in (out[0], out[3]):  # as encoded alone: batch-mates and padding change nothing
        alone = encoder([(PromptPart(text=item.caption),)], [[]]).hidden[0]  # (T, D)
        torch.testing.assert_close(item.hidden, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[2].hidden, encode_unconditional(encoder)[0][0])


def test_values_beyond_the_storage_range_become_rejects():
    latents = torch.zeros(4, 2, 2)
    item = FeatureItem("big", "c", hidden=torch.full((3, 8), 1e6), latent_mean=latents, latent_std=latents)
    reject = finish_item(item, "fp16")
    assert (reject.id, reject.stage, reject.reason) == ("big", "features", "non_finite")
    assert finish_item(item, "bf16")["hidden_length"] == 3  # bf16 has fp32's range
    with pytest.raises(ValueError, match="unconditional"):
        finish_item(FeatureItem("u", None, unconditional=True, hidden=torch.full((1, 8), 1e6)), "fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_a_gpu_that_is_not_there_fails_the_job(tmp_path):
    inputs = tmp_path / "one.parquet"
    write_shard(inputs, [make_row(0)])
    with pytest.raises(Exception, match="CUDA is not available"):
        features_runner.main(["--input", str(inputs), "--output", str(tmp_path / "out"), "--config", TINY,
                              "--device", "cuda"])


def _not_a_shard(tmp: Path) -> str:
    path = tmp / "plain.parquet"
    pq.write_table(pa.table({"id": ["a"], "image": [b"x"], "caption": ["c"]}), path)
    return str(path)


def _reject_file(tmp: Path, run) -> str:
    return glob.glob(str(run[0] / "rejects" / "*.parquet"))[0]


def _feature_output(tmp: Path, run) -> str:
    path = tmp / "features_as_input"
    shutil.copytree(run[0] / "features", path)
    return str(path)


@pytest.mark.parametrize(
    "make_input, extra, named",
    [
        (None, ["--config", "nope.yaml"], "nope.yaml"),
        (None, ["--set", "encoder.family=bogus"], "encoder.family"),
        (None, ["--set", "denoiser.bogus=1"], "denoiser.bogus"),
        (None, ["--set", "data.resolution=66"], "66"),
        (None, ["--storage-dtype", "fp8"], "fp8"),
        (None, ["--batch-size", "0"], "batch size"),
        (None, ["--device", "gpu"], "gpu"),
        (None, ["--vae-dtype", "bf16"], "cuda"),
        (None, ["--set", "encoder.dtype=fp16"], "fp16"),
        (lambda tmp, run: str(tmp / "no_such_dir"), [], "no_such_dir"),
        (lambda tmp, run: str(tmp / "*.parquet"), [], "no Parquet files"),
        (lambda tmp, run: _not_a_shard(tmp), [], "not a unimo-g shard"),
        (_reject_file, [], "not a sample shard"),
        (_feature_output, [], "feature file"),
    ],
)
def test_unusable_arguments_exit_2_with_one_line(make_input, extra, named, run, tmp_path, capsys):
    inputs = make_input(tmp_path, run) if make_input else str(run[0].parent / "prompts")
    code = features_runner.main(["--input", inputs, "--output", str(tmp_path / "out"), "--config", TINY, *extra])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("features_runner.py: error:") and named in err[0], err
    assert not (tmp_path / "out").exists()  # nothing written for a refused run


def test_row_group_units_skip_empty_groups_and_number_rows_from_the_file_start():
    units = row_group_units("s.parquet", [2, 0, 3])
    assert [(u.group, u.first_row) for u in units] == [(0, 0), (2, 2)]


def test_an_earlier_run_is_refused_unless_overwrite(tmp_path, capsys):
    inputs = tmp_path / "one.parquet"
    write_shard(inputs, [make_row(0)])
    output = tmp_path / "out"
    (output / "notes").mkdir(parents=True)
    (output / "notes" / "keep.txt").write_text("mine")
    first = run_features(inputs, output)  # only unrelated files: not an earlier run
    argv = ["--input", str(inputs), "--output", str(output), "--config", TINY, *FAST]
    capsys.readouterr()
    assert features_runner.main(argv) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "--overwrite" in err and "features" in err and "manifest.json" in err
    assert json.loads((output / "manifest.json").read_text()) == first  # untouched
    second = run_features(inputs, output, "--overwrite")
    assert second["counts"] == first["counts"] and len(read_dir(output / "features")[0]) == 1
    assert (output / "notes" / "keep.txt").read_text() == "mine"
