"""--report-to: TensorBoard (and W&B) beside the JSONL log, with sample images."""

import importlib.util
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.trainers.shard_fixtures import write_dataset
from trainers import train
from unimo_g.checkpoint_format import read_denoiser_state_dict, read_latest

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "train_tiny.yaml")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    write_dataset(root, [6], num_entities=2)
    return root


def _argv(data: Path, output: Path, *extra) -> list[str]:
    return ["--config", TINY, "--stage", "2", "--data", str(data), "--output", str(output), "--max-steps", "2",
            "--set", "data.resolution=32", "--set", "checkpoint_every=100", *extra]


def test_tensorboard_gets_the_records_and_sample_images(data, tmp_path):
    output = tmp_path / "run"
    samples = ["--set", "sample_every=2", "--set", "sample_steps=2", "--set", 'sample_prompts=["a red cube"]']
    assert train.main(_argv(data, output, "--report-to", "tensorboard", *samples)) == 0
    events = EventAccumulator(str(output / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    for key in ("loss", "loss_mse", "loss_attn", "lr", "grad_norm", "images_per_s", "text_only_share",
                "entity_images_per_sample", "attn_active_share"):
        assert f"train/{key}" in scalars
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([r["loss"] for r in records])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    (tag,) = events.Tags()["images"]
    assert tag.startswith("samples/0_a_red_cube")
    image = events.Images(tag)[0]
    assert image.step == 2 and (image.width, image.height) == (32, 32)

    # sampling touches nothing the training draws from: the same weights as a run without it
    plain = tmp_path / "plain"
    assert train.main(_argv(data, plain)) == 0
    a, b = read_denoiser_state_dict(read_latest(output)), read_denoiser_state_dict(read_latest(plain))
    assert all((a[k] == b[k]).all() for k in a)
    assert not (plain / "tensorboard").exists()


def test_wandb_offline_run(data, tmp_path, monkeypatch):
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    output = tmp_path / "run"
    assert train.main(_argv(data, output, "--report-to", "wandb")) == 0
    runs = list((output / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_unknown_or_missing_reporters_exit_2(data, tmp_path, monkeypatch, capsys):
    assert train.main(_argv(data, tmp_path / "a", "--report-to", "tensorbord")) == 2
    assert "unknown reporter" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert train.main(_argv(data, tmp_path / "b", "--report-to", "tensorboard")) == 2
    assert 'pip install "unimo-g[tensorboard]"' in capsys.readouterr().err
