"""Two-process DDP on CPU (gloo): ranks train on disjoint rows and end with identical weights."""

import json
import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from tests.trainers.shard_fixtures import write_dataset
from trainers import train
from trainers.distributed import setup_distributed
from unimo_g.checkpoint_format import read_denoiser_state_dict, read_latest

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "train_tiny.yaml")
WORLD = 2
STEPS = 3
JOIN_TIMEOUT_S = 300  # both ranks, start to finish; a hung rank fails the test instead of hanging the suite


def _worker(rank: int, port: int, argv: list, scratch: str) -> None:
    """One rank, as torchrun would start it: environment, then the trainer's own run(). As under
    torchrun, the rendezvous store is the launcher's (TORCHELASTIC_USE_AGENT_STORE): every rank
    connects to the store the test process holds open, so no port is released and taken again."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True")
    seen = []
    state = train.run(train.parse_args(argv), on_batch=lambda step, batch: seen.append([step, batch.ids]))
    scratch = Path(scratch)
    (scratch / f"ids-{rank}.json").write_text(json.dumps(seen))
    weights = {k: v.contiguous() for k, v in state.denoiser.state_dict().items()}
    save_file(weights, scratch / f"weights-{rank}.safetensors")
    save_file({k: v.contiguous() for k, v in state.ema.shadow.items()}, scratch / f"ema-{rank}.safetensors")


def _join(processes: mp.ProcessContext, timeout_s: float) -> None:
    """Wait for every rank (a rank's error is raised here); kill them all after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    try:
        while not processes.join(timeout=max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                pytest.fail(f"the ranks did not finish within {timeout_s} s")
    finally:
        for process in processes.processes:
            if process.is_alive():
                process.kill()
                process.join(10)


@pytest.mark.time_limit(JOIN_TIMEOUT_S + 60)
def test_two_ranks_see_disjoint_rows_and_end_identical(tmp_path, monkeypatch):
    # the ranks import this module by name, with the working directory first on their path: from the
    # repository root `trainers` is the project's package (from tests/ it would be tests/trainers)
    monkeypatch.chdir(ROOT)
    data = tmp_path / "data"
    write_dataset(data, [6, 6], num_entities=2)
    output = tmp_path / "out"
    argv = ["--config", TINY, "--stage", "2", "--data", str(data), "--output", str(output),
            "--max-steps", str(STEPS), "--set", "data.resolution=32", "--set", "checkpoint_every=2"]
    # forkserver: the server imports the trainer once, and both ranks fork from it (no threads yet)
    mp.set_forkserver_preload(["trainers.train", "tests.trainers.test_ddp"])
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # the OS picks a port, kept open
    processes = mp.start_processes(_worker, args=(store.port, argv, str(tmp_path)), nprocs=WORLD, join=False,
                                   start_method="forkserver")
    _join(processes, JOIN_TIMEOUT_S)

    seen = [json.loads((tmp_path / f"ids-{rank}.json").read_text()) for rank in range(WORLD)]
    ids = [{i for _, batch in ranks for i in batch} for ranks in seen]
    assert [len(ranks) for ranks in seen] == [STEPS, STEPS]  # one batch per step on every rank
    assert sum(len(batch) for ranks in seen for _, batch in ranks) == WORLD * STEPS * 2
    assert ids[0].isdisjoint(ids[1])
    assert len(ids[0]) == len(ids[1]) == STEPS * 2  # 6 rows per rank per epoch: no repeats in 3 steps

    weights = [load_file(tmp_path / f"weights-{rank}.safetensors") for rank in range(WORLD)]
    emas = [load_file(tmp_path / f"ema-{rank}.safetensors") for rank in range(WORLD)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert all(torch.equal(emas[0][k], emas[1][k]) for k in emas[0])

    # rank 0 alone wrote the checkpoints and the metrics
    checkpoint = read_latest(output)
    assert checkpoint.name == "step-0000003"
    saved = read_denoiser_state_dict(checkpoint)
    assert all(torch.equal(saved[k], weights[0][k]) for k in saved)
    steps = [json.loads(line)["step"] for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert json.loads((checkpoint / "trainer_state.json").read_text())["world_size"] == WORLD
    assert len(torch.load(checkpoint / "training_state.pt", weights_only=True)["rng"]) == WORLD


def test_explicit_gpu_index_is_refused_with_several_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="one GPU per rank"):
        setup_distributed("cuda:1")
