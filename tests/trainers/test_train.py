"""The trainer end to end through its command line: stage 1, stage 2 from stage 1, then an image."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.trainers.shard_fixtures import make_row, write_dataset, write_shard
from trainers import train
from trainers.config import TrainConfig
from trainers.optim import STAGE_LR, OptimConfig
from unimo_g_apps import generate
from unimo_g.checkpoint_format import (
    CHECKPOINTS_DIR,
    load_ema_weights,
    read_denoiser_state_dict,
    read_latest,
    read_model_spec,
)
from unimo_g.config_tools import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "train_tiny.yaml")
FAST = ["--set", "data.resolution=32"]  # 8x8 latents: the tiny UNet at a quarter of the cost


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    write_dataset(root, [5, 5], num_entities=2)
    return root


def _train(*args) -> int:
    return train.main([str(a) for a in args])


def _records(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def test_stage1_then_stage2_then_generate(tmp_path, data, monkeypatch, capsys):
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    assert _train("--config", TINY, "--stage", 1, "--data", data, "--output", stage1, "--max-steps", 3, *FAST) == 0
    records = _records(stage1)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert set(records[0]) >= {"step", "loss", "loss_mse", "loss_attn", "lr", "images_per_s"}
    assert all(r["loss_attn"] == 0.0 and r["loss"] == r["loss_mse"] for r in records)  # stage 1: ε-MSE only
    assert records[0]["lr"] == pytest.approx(STAGE_LR[1] / 2) and records[1]["lr"] == pytest.approx(STAGE_LR[1])
    checkpoints = stage1 / CHECKPOINTS_DIR
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step-0000002", "step-0000003"]
    assert read_latest(stage1).name == "step-0000003"
    assert read_model_spec(read_latest(stage1)).resolution == 32

    assert _train("--config", TINY, "--stage", 2, "--data", data, "--output", stage2, "--init-from", stage1,
                  "--max-steps", 3, *FAST) == 0
    records = _records(stage2)
    assert records[0]["lr"] == pytest.approx(STAGE_LR[2] / 2)
    assert any(r["loss_attn"] > 0 for r in records)  # multimodal prompts with entity masks
    for r in records:
        assert r["loss"] == pytest.approx(r["loss_mse"] + 0.01 * r["loss_attn"], rel=1e-5)

    monkeypatch.chdir(tmp_path)  # entity image paths are relative to the working directory
    Image.new("RGB", (40, 30), (220, 30, 30)).save(tmp_path / "x.png")
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(stage2), "--prompt", "a <img>x.png</img> on grass",
                          "--out", "out.png", "--steps", "3"]) == 0
    assert "ema weights" in capsys.readouterr().out
    with Image.open(tmp_path / "out.png") as image:
        assert image.format == "PNG" and image.size == (32, 32)


def test_init_from_loads_the_ema_weights_and_raw_on_request(tmp_path, data):
    stage1 = tmp_path / "stage1"
    assert _train("--config", TINY, "--stage", 1, "--data", data, "--output", stage1, "--max-steps", 2, *FAST) == 0
    checkpoint = read_latest(stage1)
    ema, _ = load_ema_weights(checkpoint)
    raw = read_denoiser_state_dict(checkpoint)
    key = "unet.conv_in.weight"
    assert not torch.equal(ema[key], raw[key])
    for weights, expected in (("ema", ema[key]), ("raw", raw[key])):
        request = train.parse_args(["--config", TINY, "--stage", "2", "--data", str(data), "--output",
                                    str(tmp_path / weights), "--init-from", str(stage1), "--init-weights", weights])
        assert (request.init_from, request.use_ema) == (str(stage1), weights == "ema")
        config = train.load_train_config(request)
        encoder, _ = train.build_frozen(config, torch.device("cpu"))
        denoiser, store = train.build_trainable(config, 2, encoder.hidden_size, torch.device("cpu"),
                                                request.init_from, request.use_ema)
        assert torch.equal(denoiser.state_dict()[key], expected)
        assert store is not None and not store.enabled


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--stage", "3"], "--stage"),
        (["--stage", "1", "--bogus"], "unrecognized arguments: --bogus"),
        (["--stage", "1", "--set", "batch_size=0"], "batch_size must be >= 1"),
        (["--stage", "1", "--set", "lambda_atn=1"], "unknown config key lambda_atn"),
        (["--stage", "1", "--set", "mixed_precision=bf16"], "bf16 needs a CUDA device"),
        (["--stage", "1", "--set", "batch_size=64"], "do not make one batch of 64"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, data, capsys, argv, message):
    assert _train("--config", TINY, "--data", data, "--output", tmp_path / "out", *argv) == 2
    assert message in _one_line_error(capsys)


def test_missing_config_and_data_exit_2(tmp_path, data, capsys):
    assert _train("--config", "no-such-preset", "--stage", 1, "--data", data, "--output", tmp_path) == 2
    assert "no-such-preset" in _one_line_error(capsys)
    assert _train("--config", TINY, "--stage", 1, "--data", tmp_path / "none", "--output", tmp_path / "o") == 2
    assert "none" in _one_line_error(capsys)


def test_truncated_shard_is_named(tmp_path, capsys):
    files = write_dataset(tmp_path / "data", [3, 3])
    Path(files[1]).write_bytes(Path(files[1]).read_bytes()[:-40])
    assert _train("--config", TINY, "--stage", 1, "--data", tmp_path / "data", "--output", tmp_path / "out") == 2
    assert "part-00001.parquet" in _one_line_error(capsys)


def test_future_schema_version_is_refused(tmp_path, capsys):
    write_shard(tmp_path / "data" / "future.parquet", [make_row(i) for i in range(4)], version=99)
    assert _train("--config", TINY, "--stage", 1, "--data", tmp_path / "data", "--output", tmp_path / "out") == 2
    err = _one_line_error(capsys)
    assert "future.parquet" in err and "version 99" in err


def test_a_fresh_run_refuses_an_output_with_checkpoints(tmp_path, data, capsys):
    out = tmp_path / "out"
    assert _train("--config", TINY, "--stage", 1, "--data", data, "--output", out, "--max-steps", 1, *FAST) == 0
    capsys.readouterr()
    assert _train("--config", TINY, "--stage", 1, "--data", data, "--output", out, "--max-steps", 2, *FAST) == 2
    assert "--resume" in _one_line_error(capsys)
    assert _train("--config", TINY, "--stage", 2, "--data", data, "--output", out, "--max-steps", 2, "--resume",
                  *FAST) == 2
    assert "stage-1 checkpoint" in _one_line_error(capsys)
    assert _train("--config", TINY, "--stage", 1, "--data", data, "--output", out, "--max-steps", 2, "--resume",
                  "--set", "data.resolution=64") == 2
    assert "data.resolution" in _one_line_error(capsys)


def test_presets_load_and_stage_learning_rates():
    tiny = load_config(TrainConfig, TINY)
    assert tiny.denoiser.size == "tiny" and tiny.encoder.model == "tiny" and tiny.device == "cpu"
    sd15 = load_config(TrainConfig, ROOT / "configs" / "train_sd15.yaml")
    assert (sd15.denoiser.size, sd15.mixed_precision, sd15.device) == ("sd15", "bf16", "cuda")
    assert sd15.data.resolution == 512
    assert sd15.denoiser.vae == "stabilityai/sd-vae-ft-mse"
    assert OptimConfig().lr_for(1) == 5e-5 and OptimConfig().lr_for(2) == 1e-5
    assert OptimConfig(lr=3e-4).lr_for(2) == 3e-4
    with pytest.raises(ConfigError, match="bf16 needs a CUDA device"):
        load_config(TrainConfig, TINY, ["mixed_precision=bf16"])
    with pytest.raises(ConfigError, match="grad_accum"):
        load_config(TrainConfig, TINY, ["optim.grad_accum=0"])


@pytest.mark.time_limit(300)  # a DataLoader worker process
@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_row_met_during_training_ends_with_one_line(tmp_path, capsys, workers):
    rows = [make_row(i) for i in range(4)] + [make_row(4, image=b"\x89PNG\r\n\x1a\n broken")]
    shard = write_shard(tmp_path / "shards" / "part-00000.parquet", rows)
    code = _train("--config", TINY, "--stage", "1", "--data", tmp_path, "--output", tmp_path / "out",
                  "--max-steps", "3", *FAST, "--set", "data.shuffle_buffer=0", "--set", f"data.num_workers={workers}")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith(f"python -m trainers.train: error: {shard}: row 4") and "skip_corrupt" in err[-1]
    assert not any("Traceback" in line for line in err)
