import dataclasses
import random
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
from PIL import Image

from tests.trainers.shard_fixtures import OBJECTS, encode_image, make_row, rectangle, write_dataset, write_shard
from trainers import data as data_module
from trainers.data import (
    DataConfig,
    ShardError,
    ShardStream,
    build_sample,
    collate,
    list_shards,
    make_loader,
)
from unimo_g.image_transforms import resize_crop_box
from unimo_g.records import PromptPart
from unimo_g.rle import encode_mask
from unimo_g.schema import SchemaVersionError

ROWS = [5, 4, 6]  # rows per file; row groups of 2
CONFIG = DataConfig(resolution=16, shuffle_buffer=4, num_workers=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> list[str]:
    return write_dataset(tmp_path_factory.mktemp("data"), ROWS)


def all_ids(files) -> set[str]:
    stream = ShardStream(files, dataclasses.replace(CONFIG, shuffle_buffer=0), stage=1)
    return {sample["id"] for sample in stream}


def loader_ids(stream: ShardStream, batch_size: int, steps=None) -> list[str]:
    ids = []
    for step, batch in enumerate(make_loader(stream, batch_size)):
        if steps is not None and step == steps:
            break
        ids.extend(batch["ids"])
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


@pytest.mark.parametrize("epoch", [0, 1])
def test_units_cover_every_row_once(dataset, epoch):
    config = dataclasses.replace(CONFIG, num_workers=2)
    keys = []
    for rank in range(2):
        stream = ShardStream(dataset, config, stage=1, seed=7, rank=rank, world_size=2)
        stream.set_epoch(epoch)
        for worker in range(2):
            keys.extend(stream.plan(worker))
    assert len(keys) == sum(ROWS) == len(set(keys))
    assert set(keys) == {(file, row) for file, count in zip(dataset, ROWS) for row in range(count)}


def test_real_workers_and_ranks_yield_disjoint_complete_rows(dataset):
    config = dataclasses.replace(CONFIG, num_workers=2)
    ids = []
    for rank in range(2):
        ids.extend(loader_ids(ShardStream(dataset, config, stage=2, seed=1, rank=rank, world_size=2), batch_size=1))
    assert len(ids) == len(set(ids)) == sum(ROWS)
    assert set(ids) == all_ids(dataset)


def test_order_is_deterministic_and_seeded(dataset):
    def order(seed, epoch):
        stream = ShardStream(dataset, CONFIG, stage=2, seed=seed)
        stream.set_epoch(epoch)
        return [(s["id"], s["prompt"]) for s in stream]

    first = order(3, 0)
    assert first == order(3, 0)
    assert [i for i, _ in first] != [i for i, _ in order(4, 0)]
    assert [i for i, _ in first] != [i for i, _ in order(3, 1)]
    assert {i for i, _ in first} == {i for i, _ in order(4, 0)}


def test_steps_per_epoch_equal_across_ranks(dataset):
    config = dataclasses.replace(CONFIG, num_workers=2)
    streams = [ShardStream(dataset, config, stage=1, rank=r, world_size=2) for r in range(2)]
    assert streams[0].rows_per_unit() == [4, 4, 4, 3]
    assert {s.steps_per_epoch(2) for s in streams} == {2 * (3 // 2)}


# -- resume ---------------------------------------------------------------------------------------


def test_resume_mid_epoch_gives_the_rest(dataset):
    config = dataclasses.replace(CONFIG, num_workers=2, shuffle_buffer=3)
    batch = 1
    stream = ShardStream(dataset, config, stage=2, seed=5)
    stream.set_epoch(1)
    steps = stream.steps_per_epoch(batch)
    full = loader_ids(stream, batch, steps)
    assert len(full) == steps * batch == 14
    for done in (1, 4, 5):
        state = stream.state_dict(done, batch)
        resumed = ShardStream(dataset, config, stage=2, seed=5)
        resumed.load_state_dict(state)
        assert resumed.epoch == 1
        assert loader_ids(resumed, batch, steps - done) == full[done * batch :]


def test_resume_replays_without_decoding(dataset, monkeypatch):
    stream = ShardStream(dataset, CONFIG, stage=1, seed=2)
    full = [s["id"] for s in stream]
    decoded = []
    real_open = data_module.open_image
    monkeypatch.setattr(data_module, "open_image", lambda *a: decoded.append(1) or real_open(*a))
    resumed = ShardStream(dataset, CONFIG, stage=1, seed=2)
    resumed.load_state_dict(stream.state_dict(3, 3))  # 9 samples consumed
    assert [s["id"] for s in resumed] == full[9:]
    assert len(decoded) == len(full) - 9


def test_resume_point_is_dropped_for_another_epoch(dataset):
    stream = ShardStream(dataset, CONFIG, stage=1, seed=2)
    resumed = ShardStream(dataset, CONFIG, stage=1, seed=2)
    resumed.load_state_dict(stream.state_dict(2, 2))
    resumed.set_epoch(1)
    stream.set_epoch(1)
    assert [s["id"] for s in resumed] == [s["id"] for s in stream]


def test_resume_refuses_a_changed_stream(dataset):
    state = ShardStream(dataset, CONFIG, stage=1, seed=2).state_dict(1, 2)
    with pytest.raises(ValueError, match="seed"):
        ShardStream(dataset, CONFIG, stage=1, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="files"):
        ShardStream(dataset[:2], CONFIG, stage=1, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="num_workers"):
        ShardStream(dataset, dataclasses.replace(CONFIG, num_workers=2), stage=1, seed=2).load_state_dict(state)


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
    assert {s["id"] for s in stream} == {rows[0]["id"], rows[2]["id"]}
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


def red_left_row(width: int, height: int, red_width: int, orientation: int = 1) -> dict:
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
    return row


@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize("size", [(90, 60, 30), (40, 100, 13)])
def test_mask_transformed_like_the_image(size, orientation):
    width, height, red_width = size
    config = DataConfig(resolution=32, substitute_prob=1.0, text_only_prob=0.0, num_workers=0)
    sample = build_sample(red_left_row(width, height, red_width, orientation), config, 2, random.Random(0))
    pixels, masks = sample["pixel_values"], sample["entity_masks"]
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
        assert sample["prompt"] == (PromptPart(text=sample["caption"]),)
        assert sample["entity_images"] == [] and sample["entity_masks"].shape == (0, 16, 16)


def test_stage2_text_only_share(tmp_path):
    files = write_dataset(tmp_path, [60], num_entities=2, width=16, height=16)
    config = DataConfig(resolution=8, substitute_prob=1.0, text_only_prob=0.25, shuffle_buffer=0, num_workers=0)
    samples = list(ShardStream(files, config, stage=2, seed=0))
    text_only = [s for s in samples if not s["entity_images"]]
    assert 6 <= len(text_only) <= 24  # 15 expected of 60
    assert all(s["prompt"] == (PromptPart(text=s["caption"]),) for s in text_only)
    assert all(len(s["entity_images"]) == 2 for s in samples if s["entity_images"])
    none = list(ShardStream(files, dataclasses.replace(config, text_only_prob=0.0), stage=2, seed=0))
    assert all(len(s["entity_images"]) == 2 for s in none)


def test_stage2_substitution_renumbers_entities(tmp_path):
    width, height = 40, 40
    files = write_dataset(tmp_path, [24], num_entities=3, width=width, height=height)
    config = DataConfig(resolution=40, substitute_prob=0.5, text_only_prob=0.0, shuffle_buffer=0, num_workers=0)
    seen_partial = False
    for sample in ShardStream(files, config, stage=2, seed=1):
        parts = sample["prompt"]
        references = [p.entity for p in parts if p.entity is not None]
        assert references == list(range(len(sample["entity_images"])))  # 0..K-1 in order
        # which objects were substituted: their phrases are gone from the text
        text = "".join(p.text for p in parts if p.text is not None)
        kept = [k for k, (name, _, _) in enumerate(OBJECTS) if name not in text]
        assert len(kept) == len(references)
        seen_partial |= 0 < len(kept) < 3 and kept != list(range(len(kept)))
        for j, k in enumerate(kept):
            name, colour, frac = OBJECTS[k]
            assert np.asarray(sample["entity_images"][j]).reshape(-1, 3)[0].tolist() == list(colour)
            x0, y0, x1, y1 = rectangle(width, height, frac)
            mask = sample["entity_masks"][j]  # same size: resize is the identity
            assert mask[y0:y1, x0:x1].min() > 0.99 and mask.sum() == pytest.approx((x1 - x0) * (y1 - y0), abs=0.5)
    assert seen_partial  # some sample substituted a later entity without the earlier ones


def test_stage2_samples_repeat_for_a_seed_and_epoch(dataset):
    def prompts(epoch):
        stream = ShardStream(dataset, CONFIG, stage=2, seed=9)
        stream.set_epoch(epoch)
        return {s["id"]: s["prompt"] for s in stream}

    assert prompts(0) == prompts(0)
    assert prompts(0) != prompts(1)


def test_collate_pads_entities(dataset):
    config = dataclasses.replace(CONFIG, substitute_prob=1.0, text_only_prob=0.0)
    samples = list(ShardStream(dataset[:1], config, stage=2))[:2]
    stage1 = list(ShardStream(dataset[:1], config, stage=1))[:1]
    batch = collate(samples + stage1)
    assert batch["pixel_values"].shape == (3, 3, 16, 16)
    assert batch["entity_masks"].shape == (3, 2, 16, 16)
    assert batch["entity_valid"].tolist() == [[True, True], [True, True], [False, False]]
    assert (batch["entity_masks"][2] == 0).all()
    assert torch.equal(batch["entity_masks"][0], samples[0]["entity_masks"])
    assert batch["ids"] == [s["id"] for s in samples + stage1]
    assert len(batch["prompts"]) == len(batch["entity_images"]) == 3


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
