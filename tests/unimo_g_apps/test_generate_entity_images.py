"""Generation prepares a user's entity image exactly as the training data's entity images were made:
the encoder sees the same inputs on both paths for a non-square entity."""

import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from segmentation.entity_image import entity_image
from tests.trainers.shard_fixtures import make_row, shard_row
from trainers import train
from trainers.data import DataConfig, build_sample
from unimo_g.checkpoint_format import read_latest, read_model_spec
from unimo_g.inference import load_entity_image
from unimo_g.models.encoder import EncoderConfig, build_encoder
from unimo_g.pipeline_config import EntityImageConfig
from unimo_g.records import PromptPart
from unimo_g.schema import shard_schema

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BOX = (8.0, 12.0, 56.0, 28.0)  # xyxy: a wide entity, 48 x 16 pixels


@pytest.fixture(scope="module")
def encoder():
    return build_encoder(EncoderConfig(family="llava", model="tiny"), "cpu")


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """(40, 64, 3) uint8 textured image and the (40, 64) mask of an ellipse inside BOX."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(40, 64, 3), dtype=np.uint8)
    rows, cols = np.mgrid[0:40, 0:64]
    mask = ((cols - 32) / 24) ** 2 + ((rows - 20) / 8) ** 2 <= 1.0
    return pixels, mask


def _training_path(config: EntityImageConfig) -> Image.Image:
    """The entity image the trainer hands the encoder: the pipeline's segment, stored in a row."""
    pixels, mask = _scene()
    row = make_row(0, num_entities=1)
    row["entities"][0]["image"] = entity_image(pixels, mask, BOX, config)
    data = DataConfig(resolution=16, substitute_prob=1.0, text_only_prob=0.0)
    return build_sample(shard_row(row), data, 2, random.Random(0)).entity_images[0]


def _user_file(tmp_path) -> str:
    """What a user passes: the entity cut out to its box on white, not square (48 x 16)."""
    pixels, mask = _scene()
    x0, y0, x1, y1 = (int(v) for v in BOX)
    cut = np.where(mask[y0:y1, x0:x1, None], pixels[y0:y1, x0:x1], np.uint8(255))
    path = tmp_path / "entity.png"
    Image.fromarray(cut).save(path)
    return str(path)


def _encoder_inputs(encoder, image: Image.Image) -> torch.Tensor:
    return encoder.processor.image_processor([image], return_tensors="pt")["pixel_values"]


@pytest.mark.parametrize("config", [EntityImageConfig(size=48), EntityImageConfig(size=24, format="WEBP")])
def test_the_encoder_sees_the_same_inputs_on_both_paths(encoder, tmp_path, config):
    trained = _training_path(config)
    user = load_entity_image(_user_file(tmp_path), config)
    assert user.size == trained.size == (config.size, config.size)
    assert np.array_equal(np.asarray(user), np.asarray(trained))
    assert torch.equal(_encoder_inputs(encoder, user), _encoder_inputs(encoder, trained))
    prompt = (PromptPart(text="a "), PromptPart(entity=0), PromptPart(text=" on grass"))
    assert torch.equal(encoder([prompt], [[user]]).hidden, encoder([prompt], [[trained]]).hidden)
    # as read, without the preparation, the centre crop of the vision tower cuts the wide entity
    raw = load_entity_image(_user_file(tmp_path))
    assert not torch.equal(_encoder_inputs(encoder, raw), _encoder_inputs(encoder, trained))


def test_the_trainer_records_the_datas_entity_image_config(tmp_path):
    rows = [make_row(i, num_entities=1) for i in range(4)]
    lineage = {"config": {"entity_image": {"size": 40, "format": "WEBP", "webp_quality": 80}}}
    path = tmp_path / "data" / "shards" / "part-00000.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=shard_schema(lineage)), path)
    output = tmp_path / "run"
    argv = ["--config", "train_tiny", "--stage", "2", "--data", str(tmp_path / "data"), "--output", str(output),
            "--max-steps", "1", "--set", "data.resolution=32"]
    assert train.main(argv) == 0
    spec = read_model_spec(read_latest(output))
    assert spec.entity_image == EntityImageConfig(size=40, format="WEBP", webp_quality=80)
