"""Durability: checkpoint files reach the disk before `latest` names them, and with skip_corrupt
two DDP ranks agree on the epochs a skipped row cuts short (no rank waits forever)."""

import faulthandler
import json
import multiprocessing
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.trainers.shard_fixtures import make_row, write_dataset, write_shard
from trainers import train
from unimo_g.checkpoint_format import CHECKPOINTS_DIR, LATEST, read_latest

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "train_tiny.yaml")
WORLD = 2
JOIN_TIMEOUT_S = 120  # a rank still alive by then waits forever


def test_checkpoint_files_are_fsynced_before_latest_moves(tmp_path, monkeypatch, one_torch_thread):
    write_dataset(tmp_path / "data", [4], num_entities=1)
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{descriptor}")))
        return real_fsync(descriptor)

    def replace(source, target, *args, **kwargs):
        events.append(("replace", os.path.realpath(target)))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    output = tmp_path / "run"
    argv = ["--config", TINY, "--stage", "1", "--data", str(tmp_path / "data"), "--output", str(output),
            "--max-steps", "1", "--set", "data.resolution=32"]
    assert train.main(argv) == 0
    checkpoint = read_latest(output)
    pointer = os.path.realpath(output / CHECKPOINTS_DIR / LATEST)
    moved = events.index(("replace", pointer))
    synced = {path for kind, path in events[:moved] if kind == "fsync"}
    # the files were fsynced under their temporary folder's name, before the rename
    temporary = os.path.realpath(checkpoint.parent / f".tmp-{checkpoint.name}")
    files = [p for p in checkpoint.rglob("*") if p.is_file()]
    assert len(files) >= 6
    missing = [str(p) for p in files if os.path.join(temporary, p.relative_to(checkpoint)) not in synced]
    assert not missing
    assert os.path.realpath(checkpoint.parent) in synced  # the rename's directory entry
    assert ("fsync", os.path.realpath(checkpoint.parent)) in events[moved:]  # and the pointer's


def _rank(rank: int, store_file: str, argv: list, scratch: str) -> None:
    """One rank as torchrun would start it; the process group meets through a file, not a port."""
    torch.set_num_threads(1)
    stacks = open(Path(scratch) / f"stacks-{rank}.txt", "w")  # noqa: SIM115 (open until the process ends)
    faulthandler.dump_traceback_later(JOIN_TIMEOUT_S - 30, file=stacks)  # where a hung rank waits
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=WORLD)
    seen = []
    try:
        train.run(train.parse_args(argv), on_batch=lambda step, batch: seen.append(batch.ids))
        code = 0
    except Exception as err:  # the parent reports what went wrong in this rank
        (Path(scratch) / f"error-{rank}.txt").write_text(repr(err))
        (Path(scratch) / f"seen-{rank}.json").write_text(json.dumps(seen))
        # Exit before the traceback is freed: freeing it tears down the gloo process group's objects,
        # which has been seen to block under load; what is tested is that every rank raised.
        os._exit(1)
    (Path(scratch) / f"seen-{rank}.json").write_text(json.dumps(seen))
    os._exit(code)


def _run_ranks(argv: list, scratch: Path) -> list[int]:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["trainers.train"])
    processes = [context.Process(target=_rank, args=(rank, str(scratch / "store"), argv, str(scratch)))
                 for rank in range(WORLD)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=JOIN_TIMEOUT_S)
    hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
    for rank in hung:
        processes[rank].kill()
        processes[rank].join()
    stacks = {rank: (scratch / f"stacks-{rank}.txt").read_text() for rank in hung}
    assert not hung, f"ranks {hung} still running after {JOIN_TIMEOUT_S}s; their stacks: {stacks}"
    return [process.exitcode for process in processes]


def test_ranks_agree_when_a_corrupt_row_is_skipped(tmp_path):
    rows = [make_row(i, num_entities=1) for i in range(8)]
    rows[5] = make_row(5, num_entities=1, image=b"not an image")  # one rank has 3 good rows of 4
    write_shard(tmp_path / "data" / "shards" / "part-00000.parquet", rows, row_group_size=8)
    steps = 6  # batch 1: 4 steps per epoch on the full rank, 3 on the other
    argv = ["--config", TINY, "--stage", "1", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "run"),
            "--max-steps", str(steps), "--set", "data.resolution=32", "--set", "batch_size=1",
            "--set", "data.skip_corrupt=true", "--set", "data.shuffle_buffer=0", "--set", "checkpoint_every=100"]
    codes = _run_ranks(argv, tmp_path)
    errors = [p.read_text() for p in tmp_path.glob("error-*.txt")]
    assert codes == [0, 0], errors
    seen = [json.loads((tmp_path / f"seen-{rank}.json").read_text()) for rank in range(WORLD)]
    assert [len(batches) for batches in seen] == [steps, steps]  # every step on both ranks
    bad = rows[5]["id"]
    assert all(bad not in batch for batches in seen for batch in batches)
    # rows 0, 2, 4, 6 are rank 0's and 1, 3, (5), 7 rank 1's: when rank 1's epoch ends after 3
    # batches, rank 0 leaves row 6 and starts the next epoch in the same step
    ids = [row["id"] for row in rows]
    assert seen[0] == [[ids[0]], [ids[2]], [ids[4]]] * 2
    assert seen[1] == [[ids[1]], [ids[3]], [ids[7]]] * 2
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 0, 0, 1, 1, 1]
    assert read_latest(tmp_path / "run").name == f"step-{steps:07d}"


def test_a_rank_that_cannot_read_a_row_stops_every_rank(tmp_path):
    rows = [make_row(i, num_entities=1) for i in range(8)]
    rows[5] = make_row(5, num_entities=1, image=b"not an image")
    write_shard(tmp_path / "data" / "shards" / "part-00000.parquet", rows, row_group_size=8)
    argv = ["--config", TINY, "--stage", "1", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "run"),
            "--max-steps", "6", "--set", "data.resolution=32", "--set", "batch_size=1",
            "--set", "data.shuffle_buffer=0", "--set", "checkpoint_every=100"]
    assert _run_ranks(argv, tmp_path) == [1, 1]
    errors = sorted(p.read_text() for p in tmp_path.glob("error-*.txt"))
    assert len(errors) == 2 and any("row 5" in e for e in errors) and any("another rank" in e for e in errors)
