"""A training run killed with SIGKILL part way (no clean stop, possibly mid-checkpoint), then resumed
with --resume, ends bit for bit where a straight run ends: weights, EMA, optimizer, LR schedule, RNG
states, data position and the logged losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.trainers.shard_fixtures import write_dataset
from trainers import train
from unimo_g.checkpoint_format import (
    CHECKPOINTS_DIR,
    TRAINER_STATE,
    TRAINING_STATE,
    load_ema_weights,
    read_denoiser_state_dict,
    read_latest,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "train_tiny.yaml")
# stage 2 (substitutions, attention loss and condition dropout all draw random numbers)
RUN = ["--config", TINY, "--stage", "2", "--set", "data.resolution=32", "--set", "checkpoint_every=2",
       "--set", "cond_dropout=0.3"]
NEVER_ENDS = 100_000  # steps of the run that is killed: it is always killed before its end
MORE_STEPS = 3  # trained after the killed run's last checkpoint: past the next checkpoint, then a final one
START_TIMEOUT_S = 240  # for the killed run to write its first checkpoint

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.time_limit(START_TIMEOUT_S + 300)]


def _kill_after_first_checkpoint(data: Path, output: Path) -> None:
    """`python -m trainers.train` as a user starts it, killed with SIGKILL once a checkpoint exists."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}  # one thread, as in this process: the same kernels, the same bits
    log = output.parent / "killed.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "trainers.train", *RUN, "--data", str(data), "--output", str(output),
             "--max-steps", str(NEVER_ENDS)],
            cwd=output.parent, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not (output / CHECKPOINTS_DIR / "latest").exists():
                if process.poll() is not None:
                    pytest.fail(f"the run ended ({process.returncode}) before its first checkpoint:\n{log.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no checkpoint within {START_TIMEOUT_S} s:\n{log.read_text()}")
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=60) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)


def _equal(a, b) -> bool:
    """Exact equality of nested state (dicts, lists, tuples, tensors, numbers)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _losses(output: Path) -> list[tuple]:
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["loss_mse"], r["loss_attn"], r["grad_norm"]) for r in records]


def test_a_killed_run_resumes_to_the_straight_runs_bits(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, [6, 4], num_entities=2)
    killed, straight = tmp_path / "killed", tmp_path / "straight"

    _kill_after_first_checkpoint(data, killed)
    reached = int(read_latest(killed).name.rsplit("-", 1)[1])
    assert 0 < reached < NEVER_ENDS
    steps = reached + MORE_STEPS
    assert train.main([*RUN, "--data", str(data), "--output", str(killed), "--max-steps", str(steps), "--resume"]) == 0
    assert train.main([*RUN, "--data", str(data), "--output", str(straight), "--max-steps", str(steps)]) == 0

    a, b = read_latest(straight), read_latest(killed)
    assert a.name == b.name == f"step-{steps:07d}"
    assert _equal(read_denoiser_state_dict(a), read_denoiser_state_dict(b))
    assert _equal(load_ema_weights(a), load_ema_weights(b))
    state_a, state_b = (torch.load(c / TRAINING_STATE, weights_only=True) for c in (a, b))
    assert state_a["optimizer"]["state"] and _equal(state_a["optimizer"], state_b["optimizer"])
    assert _equal(state_a["lr_scheduler"], state_b["lr_scheduler"])
    # Python's and NumPy's RNGs continue exactly. The global torch RNG is not compared: every new DataLoader
    # iterator draws its base seed from it, and the resumed run starts one iterator more than the straight
    # run (the training step draws from its own per-step generators, so the results above do not depend on it)
    host_rngs = [[{k: rng[k] for k in ("python", "numpy")} for rng in state["rng"]] for state in (state_a, state_b)]
    assert _equal(*host_rngs)
    assert json.loads((a / TRAINER_STATE).read_text())["data"] == json.loads((b / TRAINER_STATE).read_text())["data"]
    assert _losses(straight) == _losses(killed) and len(_losses(straight)) == steps
    # the comparison has teeth: the weights moved after the killed run's last checkpoint
    before = read_denoiser_state_dict(killed / CHECKPOINTS_DIR / f"step-{reached:07d}")
    assert not _equal(before, read_denoiser_state_dict(b))
