import dataclasses
import random
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from tests.trainers.shard_fixtures import (
    OBJECTS,
    encode_image,
    make_row,
    rectangle,
    shard_row,
    write_dataset,
    write_shard,
)
from trainers import data as data_module
from trainers.data import DataConfig, ShardError, ShardStream, build_sample, collate, list_shards, make_loader
from trainers.epoch_order import (
    ROW_GROUPS,
    ROWS,
    choose_assignment,
    deal_row_groups,
    dealt_rows,
    epoch_row_groups,
    row_group_order,
    unit_order,
)
from unimo_g.images.training_geometry import resize_crop_box
from unimo_g.records import PromptPart, ShardRow
from unimo_g.rle import encode_mask
from unimo_g.schema import SchemaVersionError

FILE_ROWS = [5, 4, 6]  # rows per file; row groups of 2 (8 row groups: "row_groups" for up to 4 units)
GROUP_ROWS = [[2, 2, 1], [2, 2], [2, 2, 2]]
CONFIG = DataConfig(resolution=16, shuffle_buffer=4, num_workers=0)

pytestmark = pytest.mark.time_limit(300)  # several tests wait on DataLoader worker processes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> list[str]:
    return write_dataset(tmp_path_factory.mktemp("data"), FILE_ROWS)


@pytest.fixture(scope="module")
def one_group(tmp_path_factory) -> list[str]:
    """The same 15 rows in one file of one row group: "rows" assignment for two units or more."""
    rows = [make_row(index) for index in range(sum(FILE_ROWS))]
    return [write_shard(tmp_path_factory.mktemp("one") / "part-00000.parquet", rows, row_group_size=len(rows))]


@pytest.fixture(scope="module")
def layouts(dataset, one_group) -> dict[str, list[str]]:
    """Files whose streams take each assignment, for 2 to 4 units."""
    return {ROW_GROUPS: dataset, ROWS: one_group}


def all_keys(files) -> set[tuple[str, int]]:
    return {(file, row) for file in files for row in range(pq.ParquetFile(file).metadata.num_rows)}


def group_of(file: str, row: int) -> tuple[str, int]:
    """The (file, row group) holding `row` of `file`."""
    metadata = pq.ParquetFile(file).metadata
    start = 0
    for group in range(metadata.num_row_groups):
        start += metadata.row_group(group).num_rows
        if row < start:
            return file, group
    raise IndexError(row)


def all_ids(files) -> set[str]:
    stream = ShardStream(files, dataclasses.replace(CONFIG, shuffle_buffer=0), stage=1)
    return {sample.id for sample in stream}


def loader_ids(stream: ShardStream, batch_size: int, steps=None) -> list[str]:
    ids = []
    for step, batch in enumerate(make_loader(stream, batch_size)):
        if steps is not None and step == steps:
            break
        ids.extend(batch.ids)
    return ids


# -- listing ------------------------------------------------------------------------------------


def test_list_shards_forms(tmp_path, dataset):
    root = Path(dataset[0]).parent.parent
    assert list_shards(str(root)) == sorted(dataset)
    assert list_shards(str(root / "shards")) == sorted(dataset)
    assert list_shards(str(root / "shards" / "part-0000[12].parquet")) == sorted(dataset)[1:]
    assert list_shards(dataset[0]) == [dataset[0]]
    assert list_shards(f"file://{root}") == sorted(dataset)
    with pytest.raises(FileNotFoundError, match="no such"):
        list_shards(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .parquet"):
        list_shards(str(tmp_path / "empty"))


def test_fsspec_url_end_to_end(dataset):
    memory = fsspec.filesystem("memory")
    for file in dataset:
        memory.pipe(f"/unimo-test/shards/{Path(file).name}", Path(file).read_bytes())
    try:
        files = list_shards("memory://unimo-test")
        assert files == [f"memory:///unimo-test/shards/{Path(f).name}" for f in sorted(dataset)]
        assert all_ids(files) == all_ids(dataset)
    finally:
        memory.rm("/unimo-test", recursive=True)


# -- order, sharding, determinism ----------------------------------------------------------------


@pytest.mark.parametrize("mode", [ROW_GROUPS, ROWS])
@pytest.mark.parametrize("epoch", [0, 1])
def test_units_cover_every_row_once(layouts, mode, epoch):
    files = layouts[mode]
    config = dataclasses.replace(CONFIG, num_workers=2)
    keys = []
    for rank in range(2):
        stream = ShardStream(files, config, stage=1, seed=7, rank=rank, world_size=2)
        assert stream.assignment == mode
        stream.set_epoch(epoch)
        for worker in range(2):
            plan = stream.plan(worker)
            assert len(plan) == stream.rows_per_unit()[rank * 2 + worker]
            keys.extend(plan)
    assert len(keys) == sum(FILE_ROWS) == len(set(keys))
    assert set(keys) == all_keys(files)


@pytest.mark.parametrize("mode", [ROW_GROUPS, ROWS])
def test_real_workers_and_ranks_yield_disjoint_complete_rows(layouts, mode):
    files = layouts[mode]
    config = dataclasses.replace(CONFIG, num_workers=2)
    ids = []
    for rank in range(2):
        ids.extend(loader_ids(ShardStream(files, config, stage=2, seed=1, rank=rank, world_size=2), batch_size=1))
    assert len(ids) == len(set(ids)) == sum(FILE_ROWS)
    assert set(ids) == all_ids(files)


def test_order_is_deterministic_and_seeded(dataset):
    def order(seed, epoch):
        stream = ShardStream(dataset, CONFIG, stage=2, seed=seed)
        stream.set_epoch(epoch)
        return [(s.id, s.prompt) for s in stream]

    first = order(3, 0)
    assert first == order(3, 0)
    assert [i for i, _ in first] != [i for i, _ in order(4, 0)]
    assert [i for i, _ in first] != [i for i, _ in order(3, 1)]
    assert {i for i, _ in first} == {i for i, _ in order(4, 0)}


@pytest.mark.parametrize("mode", [ROW_GROUPS, ROWS])
def test_steps_per_epoch_equal_across_ranks(layouts, mode):
    config = dataclasses.replace(CONFIG, num_workers=2)
    streams = [ShardStream(layouts[mode], config, stage=1, rank=r, world_size=2) for r in range(2)]
    assert {s.assignment for s in streams} == {mode}
    # "row_groups": seven groups of 2 rows and one of 1 dealt to 4 units; "rows": 15 rows dealt one by one
    assert streams[0].rows_per_unit() == streams[1].rows_per_unit() == [4, 4, 4, 3]
    assert {s.steps_per_epoch(2) for s in streams} == {2 * (3 // 2)}


# -- row-group assignment ---------------------------------------------------------------------------


def test_deal_row_groups_ranks_then_deals_round_robin():
    # ranked by size, ties in index order: 4 (3 rows), 0, 2, 3 (2 rows), 1 (1 row)
    assert deal_row_groups([2, 1, 2, 2, 3], 2) == [[1, 2, 4], [0, 3]]
    assert dealt_rows([2, 1, 2, 2, 3], 2) == [6, 4]
    assert deal_row_groups([5, 5], 3) == [[0], [1], []]


def test_dealt_rows_are_balanced_within_one_row_group_whatever_the_order():
    rng = random.Random(0)
    for _ in range(200):
        sizes = [rng.choice([0, 1, 7, 64, 64, 64, 100]) for _ in range(rng.randrange(1, 40))]
        units = rng.randrange(1, 12)
        dealt = deal_row_groups(sizes, units)
        assert sorted(index for mine in dealt for index in mine) == list(range(len(sizes)))
        rows = dealt_rows(sizes, units)
        assert rows == sorted(rows, reverse=True) and rows[0] - rows[-1] <= max(sizes)
        assert dealt_rows(rng.sample(sizes, len(sizes)), units) == rows  # the same every epoch


@pytest.mark.parametrize(
    "sizes, units, expected",
    [
        ([2] * 8, 4, ROW_GROUPS),
        ([2, 2, 1, 2, 2, 2, 2, 2], 4, ROW_GROUPS),  # the `dataset` fixture: units of 4, 4, 4, 3 rows
        ([2, 2, 2], 4, ROWS),  # a unit would get no row group
        ([15], 2, ROWS),
        ([4, 4, 1], 3, ROWS),  # the smallest unit: 1 row, under half the mean of 3
        ([4, 4, 2], 3, ROW_GROUPS),  # 2 rows, at least half the mean of 3.33
        ([0, 0], 2, ROWS),
        ([15], 1, ROW_GROUPS),
    ],
)
def test_choose_assignment(sizes, units, expected):
    assert choose_assignment(sizes, units) == expected


def test_epoch_row_groups_keep_files_together_in_file_order():
    groups = epoch_row_groups(GROUP_ROWS, [2, 0, 1], random.Random(3))
    assert [file for file, _ in groups] == [2, 2, 2, 0, 0, 0, 1, 1]
    assert sorted(groups) == [(file, group) for file, counts in enumerate(GROUP_ROWS) for group in range(len(counts))]
    orders = {tuple(epoch_row_groups(GROUP_ROWS, [2, 0, 1], random.Random(seed))) for seed in range(10)}
    assert len(orders) > 1  # the groups of a file are permuted too


def test_row_group_order_gives_each_unit_whole_row_groups_of_its_own():
    groups = epoch_row_groups(GROUP_ROWS, [1, 2, 0], random.Random(0))
    starts = [np.cumsum([0, *counts]).tolist() for counts in GROUP_ROWS]
    seen: dict[tuple[int, int], int] = {}
    keys = []
    for unit in range(3):
        order = row_group_order(GROUP_ROWS, groups, unit, 3, 0, random.Random(0))
        mine = [groups[index] for index in deal_row_groups([GROUP_ROWS[f][g] for f, g in groups], 3)[unit]]
        # no shuffle buffer: the unit's row groups in the epoch's order, each one's rows in turn
        assert order == [(f, row) for f, g in mine for row in range(starts[f][g], starts[f][g + 1])]
        for group in mine:
            assert seen.setdefault(group, unit) == unit
        keys.extend(order)
        assert sorted(order) == sorted(row_group_order(GROUP_ROWS, groups, unit, 3, 4, random.Random(1)))
    assert sorted(keys) == [(f, row) for f, count in enumerate(FILE_ROWS) for row in range(count)]


def test_unit_order_deals_rows_one_by_one():
    assert unit_order([3, 4], [1, 0], 1, 3, 0, random.Random(0)) == [(1, 1), (0, 0)]


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_every_unit_reads_row_groups_no_other_unit_touches(dataset, epoch):
    config = dataclasses.replace(CONFIG, num_workers=2)
    owner: dict[tuple[str, int], int] = {}
    for rank in range(2):
        stream = ShardStream(dataset, config, stage=1, seed=11, rank=rank, world_size=2)
        assert stream.assignment == ROW_GROUPS
        stream.set_epoch(epoch)
        for worker in range(2):
            unit = rank * 2 + worker
            plan = stream.plan(worker)
            groups = {group_of(*key) for key in plan}
            for group in groups:
                assert owner.setdefault(group, unit) == unit, f"{group} read by units {owner[group]} and {unit}"
            # whole row groups: the unit yields every row of every row group it reads
            assert set(plan) == {key for key in all_keys(dataset) if group_of(*key) in groups}
    assert len(owner) == sum(len(counts) for counts in GROUP_ROWS)


def test_row_groups_move_between_units_across_epochs(dataset):
    config = dataclasses.replace(CONFIG, num_workers=2)
    stream = ShardStream(dataset, config, stage=1, seed=11)
    assignments = set()
    for epoch in range(4):
        stream.set_epoch(epoch)
        assert [len(stream.plan(worker)) for worker in range(2)] == stream.rows_per_unit() == [8, 7]
        assignments.add(frozenset(group_of(*key) for key in stream.plan(0)))
    assert len(assignments) > 1


def test_tiny_set_falls_back_to_rows(one_group, dataset):
    config = dataclasses.replace(CONFIG, num_workers=2)
    stream = ShardStream(one_group, config, stage=1, seed=11, rank=1, world_size=2)
    assert stream.assignment == ROWS
    assert sorted(row for _, row in stream.plan(1)) == list(range(3, 15, 4))  # rows g with g % 4 == 3
    few = ShardStream(dataset[:1], config, stage=1, rank=1, world_size=2)  # 3 row groups for 4 units
    assert few.assignment == ROWS and few.rows_per_unit() == [2, 1, 1, 1]
    assert few.steps_per_epoch(1) == 2


def _read_row_groups(files, monkeypatch, world_size) -> tuple[list[set], list[int], list[int]]:
    """Per rank of `world_size` (one unit each): the row groups read, the rows they hold, the rows yielded."""
    groups, read, used = [], [], []
    real_load = data_module._RowReader._load

    def spy(reader, file, group):
        groups[-1].add((reader.stream.files[file], group))
        return real_load(reader, file, group)

    monkeypatch.setattr(data_module._RowReader, "_load", spy)
    for rank in range(world_size):
        stream = ShardStream(files, CONFIG, stage=1, seed=4, rank=rank, world_size=world_size)
        groups.append(set())
        used.append(len(list(stream)))
        assert stream.stats["row_groups_read"] == len(groups[-1])
        read.append(stream.stats["rows_read"])
    return groups, read, used


def test_each_unit_reads_only_its_own_row_groups(dataset, monkeypatch):
    groups, read, used = _read_row_groups(dataset, monkeypatch, world_size=4)
    assert used == [4, 4, 4, 3] and read == used  # every row read is used
    assert sum(len(mine) for mine in groups) == len(set().union(*groups)) == 8  # each row group read once
    monkeypatch.setattr(data_module, "MIN_UNIT_SHARE", 2.0)  # no assignment passes: rows one by one
    groups, read, used = _read_row_groups(dataset, monkeypatch, world_size=4)
    assert used == [4, 4, 4, 3] and sum(read) > sum(used)
    assert sum(len(mine) for mine in groups) > 8  # row groups shared by units are read by each


# -- resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [ROW_GROUPS, ROWS])
def test_resume_mid_epoch_gives_the_rest(layouts, mode):
    files = layouts[mode]
    config = dataclasses.replace(CONFIG, num_workers=2, shuffle_buffer=3)
    batch = 1
    stream = ShardStream(files, config, stage=2, seed=5)
    assert stream.assignment == mode
    stream.set_epoch(1)
    steps = stream.steps_per_epoch(batch)
    full = loader_ids(stream, batch, steps)
    assert len(full) == steps * batch == 14
    for done in (1, 4, 5):
        state = stream.state_dict(done, batch)
        assert state["assignment"] == mode
        resumed = ShardStream(files, config, stage=2, seed=5)
        resumed.load_state_dict(state)
        assert resumed.epoch == 1
        assert loader_ids(resumed, batch, steps - done) == full[done * batch :]


def test_resume_replays_without_decoding(dataset, monkeypatch):
    stream = ShardStream(dataset, CONFIG, stage=1, seed=2)
    full = [s.id for s in stream]
    decoded = []
    real_open = data_module.open_image
    monkeypatch.setattr(data_module, "open_image", lambda *a: decoded.append(1) or real_open(*a))
    resumed = ShardStream(dataset, CONFIG, stage=1, seed=2)
    resumed.load_state_dict(stream.state_dict(3, 3))  # 9 samples consumed
    assert [s.id for s in resumed] == full[9:]
    assert len(decoded) == len(full) - 9


def test_resume_point_is_dropped_for_another_epoch(dataset):
    stream = ShardStream(dataset, CONFIG, stage=1, seed=2)
    resumed = ShardStream(dataset, CONFIG, stage=1, seed=2)
    resumed.load_state_dict(stream.state_dict(2, 2))
    resumed.set_epoch(1)
    stream.set_epoch(1)
    assert [s.id for s in resumed] == [s.id for s in stream]


def test_resume_refuses_a_changed_stream(dataset):
    state = ShardStream(dataset, CONFIG, stage=1, seed=2).state_dict(1, 2)
    with pytest.raises(ValueError, match="seed"):
        ShardStream(dataset, CONFIG, stage=1, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="files"):
        ShardStream(dataset[:2], CONFIG, stage=1, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="num_workers"):
        ShardStream(dataset, dataclasses.replace(CONFIG, num_workers=2), stage=1, seed=2).load_state_dict(state)


def test_resume_refuses_another_assignment(dataset, monkeypatch):
    row_groups = ShardStream(dataset, CONFIG, stage=1, seed=2)
    monkeypatch.setattr(data_module, "MIN_UNIT_SHARE", 2.0)
    rows = ShardStream(dataset, CONFIG, stage=1, seed=2)
    assert (row_groups.assignment, rows.assignment) == (ROW_GROUPS, ROWS)
    with pytest.raises(ValueError, match="assignment: saved 'rows', now 'row_groups'"):
        row_groups.load_state_dict(rows.state_dict(1, 2))
    with pytest.raises(ValueError, match="assignment: saved 'row_groups', now 'rows'"):
        rows.load_state_dict(row_groups.state_dict(1, 2))
    # a state saved before assignments were recorded resumes a "rows" stream only (its only order then)
    legacy = {k: v for k, v in rows.state_dict(1, 2).items() if k != "assignment"}
    rows.load_state_dict(legacy)
    with pytest.raises(ValueError, match="assignment"):
        row_groups.load_state_dict(legacy)


def test_worker_count_must_match_the_config(dataset):
    stream = ShardStream(dataset, dataclasses.replace(CONFIG, num_workers=2), stage=1)
    with pytest.raises(RuntimeError, match="make_loader"):
        next(iter(stream))


# -- corrupt and foreign shards ---------------------------------------------------------------------


def test_truncated_shard_names_the_file(tmp_path):
    files = write_dataset(tmp_path, [3, 3])
    Path(files[1]).write_bytes(Path(files[1]).read_bytes()[:-40])
    with pytest.raises(ShardError, match="part-00001.parquet"):
        ShardStream(files, CONFIG, stage=1)
    stream = ShardStream(files, dataclasses.replace(CONFIG, skip_corrupt=True), stage=1)
    assert stream.skipped_files == [files[1]] and stream.stats["skipped_files"] == 1
    assert len(list(stream)) == 3


def test_undecodable_row_names_file_and_row(tmp_path):
    rows = [make_row(0), make_row(1, image=b"\x89PNG not really"), make_row(2)]
    file = write_shard(tmp_path / "bad.parquet", rows)
    with pytest.raises(ShardError, match=rf"bad.parquet: row 1 \(id {rows[1]['id']}\)"):
        list(ShardStream([file], CONFIG, stage=1))
    stream = ShardStream([file], dataclasses.replace(CONFIG, skip_corrupt=True), stage=1)
    assert {s.id for s in stream} == {rows[0]["id"], rows[2]["id"]}
    assert stream.stats["skipped_rows"] == 1


def test_oversized_image_is_refused_before_decoding(tmp_path):
    file = write_shard(tmp_path / "big.parquet", [make_row(0, width=48, height=40)])
    with pytest.raises(ShardError, match="too_many_pixels"):
        list(ShardStream([file], dataclasses.replace(CONFIG, max_pixels=48 * 40 - 1), stage=1))


def test_future_schema_version_is_refused(tmp_path):
    file = write_shard(tmp_path / "future.parquet", [make_row(0)], version=99)
    for skip in (False, True):
        with pytest.raises(SchemaVersionError, match=r"future.parquet.*version 99"):
            ShardStream([file], dataclasses.replace(CONFIG, skip_corrupt=skip), stage=1)


# -- samples ------------------------------------------------------------------------------------------


def red_left_row(width: int, height: int, red_width: int, orientation: int = 1) -> ShardRow:
    """A target whose left `red_width` columns are red (as displayed), with their mask as entity 0.

    With EXIF orientation 6 the stored pixels are rotated; the mask is in the displayed frame.
    """
    shown = np.full((height, width, 3), 200, dtype=np.uint8)
    shown[:, :red_width] = (255, 0, 0)
    mask = np.zeros((height, width), bool)
    mask[:, :red_width] = True
    image = Image.fromarray(shown)
    if orientation == 6:  # viewers rotate 90 degrees clockwise to display
        exif = Image.Exif()
        exif[0x0112] = 6
        target = encode_image(image.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif.tobytes())
    else:
        target = encode_image(image)
    row = make_row(0, num_entities=1, width=width, height=height)
    row["image"] = target
    row["entities"][0]["mask"] = dataclasses.asdict(encode_mask(mask))
    return shard_row(row)


@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize("size", [(90, 60, 30), (40, 100, 13)])
def test_mask_transformed_like_the_image(size, orientation):
    width, height, red_width = size
    config = DataConfig(resolution=32, substitute_prob=1.0, text_only_prob=0.0, num_workers=0)
    sample = build_sample(red_left_row(width, height, red_width, orientation), config, 2, random.Random(0))
    pixels, masks = sample.pixel_values, sample.entity_masks
    assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.float32
    assert -1.0 <= pixels.min() and pixels.max() <= 1.0
    assert masks.shape == (1, 32, 32) and 0.0 <= masks.min() and masks.max() <= 1.0
    red = (pixels[0] > 0.5) & (pixels[1] < -0.5)  # (R, R)
    _, (left, _, _, _) = resize_crop_box(width, height, 32)
    expected_columns = red_width * 32 / min(width, height) - left
    assert abs(int(red[0].sum()) - expected_columns) <= 1
    disagree = red != (masks[0] > 0.5)
    assert disagree.sum() <= 32  # at most the one column on the boundary
    assert not disagree[:, : int(expected_columns) - 1].any() and not disagree[:, int(expected_columns) + 1 :].any()


def test_stage1_is_the_caption_alone(dataset):
    for sample in ShardStream(dataset[:1], CONFIG, stage=1):
        assert sample.prompt == (PromptPart(text=sample.caption),)
        assert sample.entity_images == [] and sample.entity_masks.shape == (0, 16, 16)


def test_stage2_text_only_share(tmp_path):
    files = write_dataset(tmp_path, [60], num_entities=2, width=16, height=16)
    config = DataConfig(resolution=8, substitute_prob=1.0, text_only_prob=0.25, shuffle_buffer=0, num_workers=0)
    samples = list(ShardStream(files, config, stage=2, seed=0))
    text_only = [s for s in samples if not s.entity_images]
    assert 6 <= len(text_only) <= 24  # 15 expected of 60
    assert all(s.prompt == (PromptPart(text=s.caption),) for s in text_only)
    assert all(len(s.entity_images) == 2 for s in samples if s.entity_images)
    none = list(ShardStream(files, dataclasses.replace(config, text_only_prob=0.0), stage=2, seed=0))
    assert all(len(s.entity_images) == 2 for s in none)


def test_stage2_substitution_renumbers_entities(tmp_path):
    width, height = 40, 40
    files = write_dataset(tmp_path, [24], num_entities=3, width=width, height=height)
    config = DataConfig(resolution=40, substitute_prob=0.5, text_only_prob=0.0, shuffle_buffer=0, num_workers=0)
    seen_partial = False
    for sample in ShardStream(files, config, stage=2, seed=1):
        parts = sample.prompt
        references = [p.entity for p in parts if p.entity is not None]
        assert references == list(range(len(sample.entity_images)))  # 0..K-1 in order
        # which objects were substituted: their phrases are gone from the text
        text = "".join(p.text for p in parts if p.text is not None)
        kept = [k for k, (name, _, _) in enumerate(OBJECTS) if name not in text]
        assert len(kept) == len(references)
        seen_partial |= 0 < len(kept) < 3 and kept != list(range(len(kept)))
        for j, k in enumerate(kept):
            name, colour, frac = OBJECTS[k]
            assert np.asarray(sample.entity_images[j]).reshape(-1, 3)[0].tolist() == list(colour)
            x0, y0, x1, y1 = rectangle(width, height, frac)
            mask = sample.entity_masks[j]  # same size: resize is the identity
            assert mask[y0:y1, x0:x1].min() > 0.99 and mask.sum() == pytest.approx((x1 - x0) * (y1 - y0), abs=0.5)
    assert seen_partial  # some sample substituted a later entity without the earlier ones


def test_stage2_samples_repeat_for_a_seed_and_epoch(dataset):
    def prompts(stream, epoch):
        stream.set_epoch(epoch)
        return {s.id: s.prompt for s in stream}

    first = prompts(ShardStream(dataset, CONFIG, stage=2, seed=9), 0)
    assert any(part.entity is not None for parts in first.values() for part in parts)  # substitutions drawn
    again = ShardStream(dataset, CONFIG, stage=2, seed=9)
    second_epoch = prompts(again, 1)
    assert prompts(again, 0) == first  # another stream, back at epoch 0 after epoch 1
    assert second_epoch.keys() == first.keys() and second_epoch != first
    assert prompts(ShardStream(dataset, CONFIG, stage=2, seed=10), 0) != first


def test_collate_pads_entities(dataset):
    config = dataclasses.replace(CONFIG, substitute_prob=1.0, text_only_prob=0.0)
    samples = list(ShardStream(dataset[:1], config, stage=2))[:2]
    stage1 = list(ShardStream(dataset[:1], config, stage=1))[:1]
    batch = collate(samples + stage1)
    assert batch.pixel_values.shape == (3, 3, 16, 16)
    assert batch.entity_masks.shape == (3, 2, 16, 16)
    assert batch.entity_valid.tolist() == [[True, True], [True, True], [False, False]]
    assert (batch.entity_masks[2] == 0).all()
    assert torch.equal(batch.entity_masks[0], samples[0].entity_masks)
    assert batch.ids == [s.id for s in samples + stage1]
    assert len(batch.prompts) == len(batch.entity_images) == 3


def test_pinning_a_batch_pins_its_tensors_and_keeps_the_rest(dataset, monkeypatch):
    batch = collate(list(ShardStream(dataset[:1], CONFIG, stage=2))[:2])
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor: pinned.append(tensor) or tensor.clone())
    copy = batch.pin_memory()  # what DataLoader(pin_memory=True) calls
    assert type(copy) is type(batch) and len(pinned) == 3  # pixel_values, entity_masks, entity_valid
    assert torch.equal(copy.pixel_values, batch.pixel_values) and copy.pixel_values is not batch.pixel_values
    assert copy.ids is batch.ids and copy.entity_images is batch.entity_images


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"resolution": 4}, "resolution"),
        ({"shuffle_buffer": -1}, "shuffle_buffer"),
        ({"substitute_prob": 1.5}, "substitute_prob"),
        ({"text_only_prob": -0.1}, "text_only_prob"),
        ({"compose_mode": "prepend"}, "compose_mode"),
        ({"max_entities": -1}, "max_entities"),
        ({"num_workers": -1}, "num_workers"),
        ({"max_pixels": 0}, "max_pixels"),
    ],
)
def test_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        DataConfig(**changes)


def test_stream_arguments_are_checked(dataset):
    with pytest.raises(ValueError, match="stage"):
        ShardStream(dataset, CONFIG, stage=3)
    with pytest.raises(ValueError, match="rank"):
        ShardStream(dataset, CONFIG, stage=1, rank=2, world_size=2)


def test_open_image_composites_transparency_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = data_module.open_image(encode_image(rgba), max_pixels=16)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 0, 0) and image.getpixel((3, 3)) == (255, 255, 255)
