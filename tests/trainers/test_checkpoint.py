"""Checkpoints: atomic layout, weights_only loading, pruning, EMA, and exact resume."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.trainers.shard_fixtures import write_dataset
from trainers import train
from trainers.checkpoint import capture_rng_state, prune_checkpoints, restore_rng_state
from trainers.ema import EMA
from unimo_g.checkpoint_format import (
    CHECKPOINTS_DIR,
    TRAINER_STATE,
    TRAINING_STATE,
    CheckpointError,
    load_ema_weights,
    read_denoiser_state_dict,
    read_latest,
    resolve_checkpoint,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "train_tiny.yaml")
# stage 2 with the attention loss, two micro-batches per step, 5 batches per epoch: step 3 ends
# mid-way through epoch 1, so the resumed run starts inside an epoch after an epoch boundary.
RUN = ["--config", TINY, "--stage", "2", "--set", "data.resolution=32", "--set", "optim.grad_accum=2",
       "--set", "checkpoint_every=3", "--set", "cond_dropout=0.3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    write_dataset(root, [6, 4], num_entities=2)
    return root


def _run(data, output, *extra) -> None:
    assert train.main([*RUN, "--data", str(data), "--output", str(output), *map(str, extra)]) == 0


def test_resume_is_exact(tmp_path, data):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(data, straight, "--max-steps", 6)
    _run(data, resumed, "--max-steps", 3)
    assert read_latest(resumed).name == "step-0000003"
    assert json.loads((read_latest(resumed) / TRAINER_STATE).read_text())["data"]["epoch"] == 1
    _run(data, resumed, "--max-steps", 6, "--resume")

    a, b = read_latest(straight), read_latest(resumed)
    assert a.name == b.name == "step-0000006"
    weights_a, weights_b = read_denoiser_state_dict(a), read_denoiser_state_dict(b)
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    (ema_a, updates_a), (ema_b, updates_b) = load_ema_weights(a), load_ema_weights(b)
    assert updates_a == updates_b == 6
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    opt_a = torch.load(a / TRAINING_STATE, weights_only=True)["optimizer"]["state"]
    opt_b = torch.load(b / TRAINING_STATE, weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"]) for i in opt_a)
    records = lambda out: [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records(resumed)] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in records(resumed)] == [r["loss"] for r in records(straight)]
    # the run moved: weights differ from the step-3 checkpoint
    weights_3 = read_denoiser_state_dict(straight / CHECKPOINTS_DIR / "step-0000003")
    assert not torch.equal(weights_3["unet.conv_in.weight"], weights_a["unet.conv_in.weight"])


def test_checkpoint_layout_and_weights_only_state(tmp_path, data):
    out = tmp_path / "out"
    _run(data, out, "--max-steps", 3, "--set", "checkpoint_every=1", "--set", "keep_last=2")
    root = out / CHECKPOINTS_DIR
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-0000002", "step-0000003"]  # pruned step 1
    checkpoint = read_latest(out)
    assert resolve_checkpoint(out) == checkpoint == resolve_checkpoint(checkpoint)
    assert {p.name for p in checkpoint.iterdir()} == {
        "model.json", "denoiser", "ema.safetensors", "trainer_state.json", "training_state.pt", "config.yaml"}
    state = torch.load(checkpoint / TRAINING_STATE, weights_only=True)
    assert set(state) == {"optimizer", "lr_scheduler", "rng"} and len(state["rng"]) == 1
    assert state["lr_scheduler"]["last_epoch"] == 3
    trainer_state = json.loads((checkpoint / TRAINER_STATE).read_text())
    assert (trainer_state["step"], trainer_state["stage"], trainer_state["world_size"]) == (3, 2, 1)
    assert trainer_state["data"]["batches_consumed"] == 1 and trainer_state["data"]["epoch"] == 1

    # a crash mid-write leaves a temporary directory and the old pointer: neither is used
    (root / ".tmp-step-0000004").mkdir()
    assert read_latest(out) == checkpoint
    (root / "latest").write_text("step-0000009\n")
    with pytest.raises(CheckpointError, match="step-0000009"):
        read_latest(out)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        resolve_checkpoint(tmp_path / "missing")


def test_prune_keeps_the_latest_and_zero_keeps_all(tmp_path):
    root = tmp_path / CHECKPOINTS_DIR
    for step in (1, 2, 3):
        (root / f"step-000000{step}").mkdir(parents=True)
        (root / f"step-000000{step}" / "model.json").write_text("{}")
    (root / "latest").write_text("step-0000001\n")  # pointer to an older one: kept whatever its age
    assert prune_checkpoints(tmp_path, 0) == []
    removed = prune_checkpoints(tmp_path, 1)
    assert [p.name for p in removed] == ["step-0000002"]
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-0000001", "step-0000003"]


def test_rng_state_round_trips_through_weights_only_save(tmp_path):
    state = capture_rng_state(torch.device("cpu"))
    torch.save({"rng": [state]}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"][0], torch.device("cpu"))
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_ema_follows_the_decay_with_warmup():
    module = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(0.0)
    ema = EMA(module, decay=0.9, warmup=True)
    with torch.no_grad():
        module.weight.fill_(1.0)
    ema.update(module)  # d = min(0.9, 1/10) = 0.1
    torch.testing.assert_close(ema.shadow["weight"], torch.full((1, 2), 0.9))
    ema.update(module)  # d = min(0.9, 2/11)
    torch.testing.assert_close(ema.shadow["weight"], torch.full((1, 2), 1 - 0.1 * 2 / 11))
    plain = EMA(module, decay=0.5, warmup=False)
    with torch.no_grad():
        module.weight.fill_(3.0)
    plain.update(module)
    torch.testing.assert_close(plain.shadow["weight"], torch.full((1, 2), 2.0))
    with pytest.raises(ValueError, match="do not match"):
        plain.load({"other": torch.zeros(1)}, 1)
