"""Stage 1 from pre-computed feature runs: the same step as on the images and captions, through the
command line to a checkpoint the generator uses, exact resume, and the refusals."""

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import features_runner
from tests.trainers.feature_fixtures import write_feature_file
from tests.trainers.shard_fixtures import make_row, write_shard
from trainers import train
from trainers.data import FEATURES, SAMPLES, DataConfig, ShardError, ShardStream, list_shards, make_loader
from trainers.distributed import DistInfo
from trainers.feature_data import FeatureSample, collate_features, feature_run_dir, read_unconditional
from trainers.step import train_step
from unimo_g_apps import generate
from unimo_g.checkpoint_format import (
    CHECKPOINTS_DIR,
    load_ema_weights,
    read_denoiser_state_dict,
    read_latest,
    read_model_spec,
)
from unimo_g.features import (
    FEATURES_DIR,
    UNCONDITIONAL_DIR,
    UNCONDITIONAL_ID,
    FeatureLayout,
    FeatureSpec,
    feature_row,
    feature_schema,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "train_tiny.yaml")
FAST = ["--set", "data.resolution=32"]  # 8x8 latents; the feature run below is computed at 32
CPU = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _args(data, output, *argv):
    return train.parse_args(["--config", TINY, "--data", str(data), "--output", str(output), *FAST, *map(str, argv)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """(prompt-shard run, the feature job's run of it: `features_runner`, fp32, two files): captions
    of 0, 1 and 2 objects, so that a batch's captions differ in length and their conditions are padded."""
    root = tmp_path_factory.mktemp("runs")
    rows = [make_row(i, num_entities=i % 3) for i in range(10)]
    for n, part in enumerate((rows[:6], rows[6:])):
        write_shard(root / "prompts" / "shards" / f"part-{n:05d}.parquet", part)
    features = root / "features_run"
    assert features_runner.main(["--input", str(root / "prompts"), "--output", str(features), "--config", TINY,
                                 *FAST, "--storage-dtype", "fp32", "--num-shards", "2", "--row-group-rows", "2"]) == 0
    return root / "prompts", features


def _files(features: Path, folder: str = FEATURES_DIR) -> list[Path]:
    return sorted((features / folder).glob("*.parquet"))


def _train(*argv) -> int:
    return train.main([str(a) for a in argv])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# -- the step ------------------------------------------------------------------------------------


def test_a_step_from_features_equals_the_step_on_images_and_captions(runs):
    prompts, features = runs
    # one file order, no shuffle buffer, no worker: both streams yield the same rows in the same order
    argv = ("--stage", 1, "--set", "data.shuffle_buffer=0", "--set", "batch_size=4", "--set", "cond_dropout=0.5")
    args = _args(prompts, "unused", *argv)
    config = train.load_train_config(args)
    live_stream = train.build_stream(str(prompts), config, 1, CPU)
    feature_stream = train.build_stream(str(features), config, 1, CPU)
    assert (live_stream.kind, feature_stream.kind) == (SAMPLES, FEATURES)
    live_batch = next(train.BatchFeed(live_stream, config.batch_size))
    # the job writes rows in its own order: the feature batch takes the live batch's rows, in its order
    by_id = {sample.id: sample for sample in feature_stream}
    feature_batch = collate_features([by_id[i] for i in live_batch.ids])
    assert not feature_batch.hidden_mask.all()  # captions of different lengths: padded like the encoder pads

    live = train.build_state(args, config, CPU)
    state = train.build_state(args, config, CPU, features=train.open_features(feature_stream, config, str(features)))
    assert state.encoder is None and state.vae is None
    assert state.denoiser.encoder_width == live.encoder.hidden_size
    encoded = live.encoder(live_batch.prompts, live_batch.entity_images)
    assert torch.equal(feature_batch.hidden, encoded.hidden)
    assert torch.equal(feature_batch.hidden_mask, encoded.attention_mask)
    before = {n: p.detach().clone() for n, p in state.denoiser.named_parameters()}

    # README: with fp32 storage a step equals the step on the images and captions bit for bit
    expected = train_step(live, [live_batch], 0)
    result = train_step(state, [feature_batch], 0)
    assert torch.equal(result.losses, expected.losses) and torch.equal(result.grad_norm, expected.grad_norm)
    assert expected.losses[2] == 0  # stage 1: no attention loss
    updated = dict(live.denoiser.named_parameters())
    for name, param in state.denoiser.named_parameters():
        assert torch.equal(param, updated[name]), name
    assert state.ema.shadow.keys() == live.ema.shadow.keys()
    for name, shadow in state.ema.shadow.items():
        assert torch.equal(shadow, live.ema.shadow[name]), name
    assert not torch.equal(before["unet.conv_in.weight"], updated["unet.conv_in.weight"])  # the step moved them


# -- the command line ----------------------------------------------------------------------------


def test_cli_trains_from_features_without_encoder_or_vae_and_generates(tmp_path, runs, monkeypatch, capsys):
    _, features = runs
    out = tmp_path / "out"

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder and the VAE are not built when training from features")

    with monkeypatch.context() as patch:
        patch.setattr(train, "build_frozen", refuse)
        assert _train("--config", TINY, "--stage", 1, "--data", features, "--output", out, "--max-steps", 2,
                      *FAST) == 0
    assert "pre-computed features" in capsys.readouterr().err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and all(r["loss_attn"] == 0.0 for r in records)
    checkpoint = read_latest(out)
    assert checkpoint.name == "step-0000002"
    spec = read_model_spec(checkpoint)  # the config's: the generator rebuilds the encoder and VAE from it
    config = train.load_train_config(_args(features, out, "--stage", 1))
    assert (spec.encoder, spec.denoiser, spec.resolution) == (config.encoder, config.denoiser, 32)

    monkeypatch.chdir(tmp_path)
    assert generate.main(["--checkpoint", str(out), "--prompt", "a red cube", "--out", "out.png", "--steps", "2"]) == 0
    with Image.open(tmp_path / "out.png") as image:
        assert image.size == (32, 32)


def test_resume_from_features_is_exact(tmp_path, runs):
    _, features = runs
    # two micro-batches per step, 5 batches per epoch: the resumed run starts inside epoch 1
    run = ["--config", TINY, "--stage", 1, "--data", features, *FAST, "--set", "optim.grad_accum=2",
           "--set", "checkpoint_every=3", "--set", "cond_dropout=0.3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train(*run, "--output", straight, "--max-steps", 6) == 0
    assert _train(*run, "--output", resumed, "--max-steps", 3) == 0
    assert _train(*run, "--output", resumed, "--max-steps", 6, "--resume") == 0
    a, b = read_latest(straight), read_latest(resumed)
    assert a.name == b.name == "step-0000006"
    weights_a, weights_b = read_denoiser_state_dict(a), read_denoiser_state_dict(b)
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    (ema_a, _), (ema_b, _) = load_ema_weights(a), load_ema_weights(b)
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    losses = [[json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
              for out in (straight, resumed)]
    assert losses[0] == losses[1] and len(losses[0]) == 6
    weights_3 = read_denoiser_state_dict(straight / CHECKPOINTS_DIR / "step-0000003")
    assert not torch.equal(weights_3["unet.conv_in.weight"], weights_a["unet.conv_in.weight"])


# -- refusals ------------------------------------------------------------------------------------


def _copy_run(features: Path, target: Path, unconditional: bool = True) -> Path:
    shutil.copytree(features / FEATURES_DIR, target / FEATURES_DIR)
    if unconditional:
        shutil.copytree(features / UNCONDITIONAL_DIR, target / UNCONDITIONAL_DIR)
    return target


def test_usage_errors_exit_2_with_one_line(tmp_path, runs, capsys):
    prompts, features = runs
    base = ["--config", TINY, "--output", tmp_path / "out"]

    assert _train(*base, "--stage", 2, "--data", features, *FAST) == 2
    assert "feature shards hold stage-1 conditions; train stage 2 from prompt shards" in _one_line_error(capsys)

    assert _train(*base, "--stage", 1, "--data", features) == 2  # the preset's resolution is 64
    assert "data.resolution (features 32, config 64)" in _one_line_error(capsys)
    assert _train(*base, "--stage", 1, "--data", features, *FAST, "--set", "encoder.layer=-1",
                  "--set", "denoiser.seed=3") == 2
    err = _one_line_error(capsys)
    assert "encoder.layer (features -2, config -1)" in err and "denoiser.seed (features 0, config 3)" in err

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(_files(features)[0], mixed / "a.parquet")
    shutil.copy(prompts / "shards" / "part-00001.parquet", mixed / "b.parquet")
    assert _train(*base, "--stage", 1, "--data", mixed, *FAST) == 2
    err = _one_line_error(capsys)
    assert "cannot be mixed" in err and "b.parquet is a prompt shard" in err and "a.parquet a feature file" in err

    lonely = _copy_run(features, tmp_path / "lonely", unconditional=False)
    assert _train(*base, "--stage", 1, "--data", lonely, *FAST) == 2
    assert "no unconditional/*.parquet" in _one_line_error(capsys)

    # feature files outside a run's features/ folder: no unconditional row to find beside them
    assert _train(*base, "--stage", 1, "--data", mixed / "a.parquet", *FAST) == 2
    assert "features/ folder" in _one_line_error(capsys)
    assert not (tmp_path / "out" / CHECKPOINTS_DIR).exists()


def _feature_stream(files, **changes) -> ShardStream:
    config = DataConfig(resolution=32, shuffle_buffer=0, num_workers=0, **changes)
    return ShardStream([str(f) for f in files], config, stage=1)


def test_the_unconditional_row_is_checked(tmp_path, runs):
    _, features = runs
    hidden, mask = read_unconditional(str(features))
    assert hidden.shape[0] == 1 and hidden.dim() == 3 and mask.shape == hidden.shape[:2] and mask.all()
    stream = _feature_stream(list_shards(str(features)))
    expected = (stream.feature_spec, stream.feature_layout)
    assert feature_run_dir(stream.files) == str(features)

    (unconditional,) = _files(features, UNCONDITIONAL_DIR)
    schema = pq.read_schema(unconditional)
    row = pq.read_table(unconditional).to_pylist()[0]
    two = _copy_run(features, tmp_path / "two")
    write_feature_file(two / UNCONDITIONAL_DIR / "second.parquet", [row], schema)
    with pytest.raises(ValueError, match="expected one row"):
        read_unconditional(str(two), expected)
    renamed = _copy_run(features, tmp_path / "renamed", unconditional=False)
    write_feature_file(renamed / UNCONDITIONAL_DIR / unconditional.name, [{**row, "id": "x"}], schema)
    with pytest.raises(ValueError, match=UNCONDITIONAL_ID):
        read_unconditional(str(renamed), expected)
    other = (dataclasses.replace(stream.feature_spec, vae_seed=1), stream.feature_layout)
    with pytest.raises(ValueError, match="differs from the features"):
        read_unconditional(str(features), other)


# -- the stream ----------------------------------------------------------------------------------


def test_feature_stream_lists_decodes_and_collates(runs):
    _, features = runs
    files = list_shards(str(features))
    assert files == [str(p) for p in _files(features)] and len(files) == 2
    assert list_shards(str(features / FEATURES_DIR)) == files
    stream = _feature_stream(files)
    assert stream.kind == FEATURES and stream.num_rows == 10
    assert stream.feature_spec.resolution == 32 and stream.feature_spec.storage_dtype == "fp32"
    assert stream.feature_layout == FeatureLayout((4, 8, 8), 32)
    batch = next(iter(make_loader(stream, 3)))
    fields = {field.name for field in dataclasses.fields(batch)}
    assert fields == {"ids", "latent_mean", "latent_std", "hidden", "hidden_mask"}
    assert batch.latent_mean.shape == batch.latent_std.shape == (3, 4, 8, 8)
    assert (batch.latent_std > 0).all()
    lengths = batch.hidden_mask.sum(1)
    assert batch.hidden.shape == (3, int(lengths.max()), 32) and len(set(lengths.tolist())) > 1
    for b, length in enumerate(lengths.tolist()):
        assert not batch.hidden_mask[b, length:].any() and not batch.hidden[b, length:].any()

    samples = [FeatureSample(id=str(t), hidden=torch.ones(t, 2), latent_mean=torch.zeros(1, 2, 2),
                             latent_std=torch.ones(1, 2, 2)) for t in (1, 3)]
    padded = collate_features(samples)
    assert padded.hidden_mask.tolist() == [[True, False, False], [True, True, True]]
    assert padded.hidden[0].sum() == 2 and padded.hidden[1].sum() == 6


def test_feature_files_must_share_spec_and_layout(tmp_path, runs):
    _, features = runs
    source = _files(features)[1]
    table = pq.read_table(source)
    stream = _feature_stream([source])
    spec, layout = stream.feature_spec, stream.feature_layout
    other = feature_schema(dataclasses.replace(spec, encoder=dataclasses.replace(spec.encoder, layer=-1)), layout)
    odd = write_feature_file(tmp_path / "features" / "odd.parquet", table.to_pylist(), other)
    with pytest.raises(ShardError, match="different specs or layouts.*odd.parquet"):
        _feature_stream([source, odd])


def test_corrupt_feature_row_names_file_and_row_or_is_skipped(tmp_path, runs):
    _, features = runs
    source = _files(features)[0]
    rows = pq.read_table(source).to_pylist()
    rows[3] = {**rows[3], "hidden": rows[3]["hidden"][:-4]}  # one float short
    file = write_feature_file(tmp_path / "features" / "bad.parquet", rows, pq.read_schema(source))
    with pytest.raises(ShardError, match=r"bad\.parquet: row 3 .*do not hold a fp32 tensor"):
        list(_feature_stream([file]))
    stream = _feature_stream([file], skip_corrupt=True)
    assert len(list(stream)) == len(rows) - 1 and stream.stats["skipped_rows"] == 1

    no_latents = feature_row("no-latents", torch.zeros(2, 32), "fp32")  # an unconditional-like row
    spec = FeatureSpec(resolution=32, storage_dtype="fp32")
    schema = feature_schema(spec, FeatureLayout((4, 8, 8), 32))
    lost = write_feature_file(tmp_path / "features" / "lost.parquet", [no_latents], schema)
    with pytest.raises(ShardError, match="no latents"):
        list(_feature_stream([lost]))
