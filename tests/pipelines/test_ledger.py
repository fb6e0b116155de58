"""The read ledger is written ahead of the rows: every input the read stage hands on is already in
a committed ledger part, parts are bounded by keys, bytes and time, a retried unit replaces the
parts of its earlier attempt, and the progress line counts inputs from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.io.ledger import Ledger, ledger_files, read_ledgers
from pipelines.io.sources import _ReadUnitFn, plan_read, planned_inputs
from pipelines.progress import Progress

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_FILES = ROOT / "data" / "sample" / "00000"
I2D = ROOT / "tests" / "data" / "img2dataset"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _folder(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    photos = sorted(SAMPLE_FILES.glob("*.jpg"))
    for i in range(count):
        shutil.copy(photos[i % len(photos)], folder / f"k{i:02d}.jpg")
        (folder / f"k{i:02d}.txt").write_text(f"photo {i}")
    return folder


def _read(unit_fn: _ReadUnitFn, unit, out: Path, run: str) -> list[tuple[str, set]]:
    """(key, keys in committed ledger parts) at the moment each input is handed on."""
    seen = []
    for sample in unit_fn.process((0, unit)):
        ledgered = set(read_ledgers(str(out)).get(run, {"read": {}})["read"])
        seen.append((sample.source_key, ledgered))
    return seen


@pytest.mark.parametrize("max_keys, max_bytes, parts", [(1024, 32 << 20, 1), (4, 32 << 20, 3), (1024, 1, 10)])
def test_every_input_is_in_a_committed_part_before_it_goes_on(tmp_path, max_keys, max_bytes, parts):
    folder, out = _folder(tmp_path, 10), tmp_path / "out"
    [unit] = plan_read(str(folder)).units
    ledger = Ledger(str(out), "run1", max_keys=max_keys, max_bytes=max_bytes)
    seen = _read(_ReadUnitFn(count=False, ledger=ledger), unit, out, "run1")
    assert [key for key, _ in seen] == [f"k{i:02d}" for i in range(10)]
    assert all(key in ledgered for key, ledgered in seen)
    assert len(ledger_files(str(out))) == parts


def test_a_part_is_committed_once_its_first_key_has_waited_flush_s(tmp_path):
    out, clock = tmp_path / "out", Clock()
    [unit] = plan_read(str(_folder(tmp_path, 3))).units
    writer = Ledger(str(out), "run1", flush_s=2.0).writer(0, unit, clock)
    writer.add("a", False)
    clock.now = 1.9
    writer.add("b", False)
    assert not writer.due()
    clock.now = 2.0
    assert writer.due()
    writer.flush()
    assert not writer.due() and read_ledgers(str(out))["run1"]["read"] == {"a": 1, "b": 1}


def test_a_retried_unit_replaces_the_parts_of_its_earlier_attempt(tmp_path):
    folder, out = _folder(tmp_path, 10), tmp_path / "out"
    [unit] = plan_read(str(folder)).units
    first = Ledger(str(out), "run1", max_keys=3)
    for _ in zip(range(5), _ReadUnitFn(count=False, ledger=first).process((0, unit))):
        pass  # the attempt dies after 5 inputs: parts of 3 + 3 keys are committed
    assert sum(read_ledgers(str(out))["run1"]["read"].values()) == 6
    list(_ReadUnitFn(count=False, ledger=Ledger(str(out), "run1", max_keys=4)).process((0, unit)))
    assert read_ledgers(str(out))["run1"]["read"] == {f"k{i:02d}": 1 for i in range(10)}


def test_progress_counts_parts_and_knows_the_total(tmp_path):
    folder, out = _folder(tmp_path, 10), tmp_path / "out"
    plan = plan_read(str(folder), keys_per_unit=4)
    assert planned_inputs(plan) == 10
    fn = _ReadUnitFn(count=False, ledger=Ledger(str(out), "run1", max_keys=2))
    for index, unit in enumerate(plan.units[:2]):
        list(fn.process((index, unit)))
    progress = Progress(str(out), "run1", total=planned_inputs(plan))
    snap = progress.snapshot()
    assert (snap["read"], snap["rows"], snap["rejects"], snap["eta_s"]) == (8, 0, 0, None)
    assert progress.line(snap).startswith("progress: 8 of 10 inputs read, 0 rows + 0 rejects written, ")
    progress.total = None
    assert "of" not in progress.line(snap).split("inputs")[0] and "ETA" not in progress.line(snap)


@pytest.mark.parametrize("layout, expected", [("parquet", 4), ("webdataset", 4), ("files", 4)])
def test_planned_inputs_of_img2dataset_outputs_are_their_metadata_rows(layout, expected):
    assert planned_inputs(plan_read(str(I2D / layout))) == expected


def test_planned_inputs_of_a_jsonl_manifest_are_unknown(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"image": "a.jpg", "caption": "x"}\n')
    assert planned_inputs(plan_read(str(tmp_path / "m.jsonl"))) is None
