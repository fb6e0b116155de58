import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from grounding.detect import ground_batch
from grounding.models import GroundingModel, fixed_canvas, load_grounding_model
from grounding.preprocess import preprocess_images, resized_size
from grounding.tiny import grounding_dino_tiny_image_processor, tiny_image_processor
from tests.grounding.test_detect import phrases_of
from unimo_g.config_tools import load_config
from unimo_g.pipeline_config import PipelineConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
TINY = load_config(PipelineConfig, ROOT / "configs" / "tiny.yaml").grounding
PROCESSOR = dataclasses.replace(TINY, runtime=dataclasses.replace(TINY.runtime, preprocess="processor"))
# (H, W): tiny, odd, square, large aspect ratios both ways, already at the target size
SHAPES = [(1, 1), (7, 5), (33, 33), (99, 1000), (1000, 99), (20, 101), (128, 192), (192, 128), (800, 1067), (531, 797)]
RESIZES = [
    {"shortest_edge": 128, "longest_edge": 192},
    {"shortest_edge": 800, "longest_edge": 1333},
    {"shortest_edge": 800, "longest_edge": 800},
    {"max_height": 150, "max_width": 90},
    {"height": 64, "width": 48},
]


def random_image(seed, height, width):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def cpu_model(image_processor, pad_size=None, dtype=torch.float32) -> GroundingModel:
    """The preprocessing half of a loaded model (no network needed)."""
    resize, canvas = fixed_canvas(image_processor.size, pad_size)
    return GroundingModel(
        model=None, image_processor=image_processor, tokenizer=None, device=torch.device("cpu"), dtype=dtype,
        resize=resize, canvas=canvas, name="preprocessing-only",
    )


def processor_pixels(model, images):
    height, width = model.canvas
    out = model.image_processor(
        images, size=model.resize, do_pad=True, pad_size={"height": height, "width": width},
        input_data_format="channels_last", return_tensors="pt",
    )
    return out["pixel_values"], out["pixel_mask"]


@pytest.mark.parametrize("resize", RESIZES, ids=lambda r: "-".join(f"{k}{v}" for k, v in r.items()))
def test_resized_size_equals_the_processor(resize):
    processor = tiny_image_processor()
    images = [np.zeros((height, width, 3), np.uint8) for height, width in SHAPES]
    out = processor(
        images, size=resize, do_pad=False, do_rescale=False, do_normalize=False, input_data_format="channels_last"
    )
    for (height, width), pixels in zip(SHAPES, out["pixel_values"]):
        assert resized_size(height, width, resize) == tuple(pixels.shape[1:]), (height, width)


def test_unknown_resize_raises():
    with pytest.raises(ValueError, match="unsupported resize"):
        resized_size(10, 10, {"shortest_edge": 5})


@pytest.mark.parametrize("preset", ["tiny", "grounding-dino-tiny"])
def test_pixels_equal_the_processor_byte_for_byte(preset):
    if preset == "tiny":
        model = cpu_model(tiny_image_processor())
        shapes = [(150, 200), (300, 120), (40, 60), (128, 192), (481, 641)]
    else:  # the published model's settings with the benchmark's 800 px canvas
        model = cpu_model(grounding_dino_tiny_image_processor(), pad_size=800)
        shapes = [(300, 451), (512, 341), (600, 800), (97, 130)]
    images = [random_image(i, *shape) for i, shape in enumerate(shapes)]
    expected_pixels, expected_mask = processor_pixels(model, images)
    pixels, mask = preprocess_images(model, images)
    assert pixels.dtype == torch.float32 and mask.dtype == expected_mask.dtype
    assert torch.equal(pixels, expected_pixels)  # max abs difference 0
    assert torch.equal(mask, expected_mask)


def test_each_image_is_preprocessed_alone():
    model = cpu_model(tiny_image_processor())
    images = [random_image(10, 150, 200), random_image(11, 300, 120), random_image(12, 40, 60)]
    together, mask = preprocess_images(model, images)
    for i, image in enumerate(images):
        alone, alone_mask = preprocess_images(model, [image])
        assert torch.equal(alone[0], together[i]) and torch.equal(alone_mask[0], mask[i])


@pytest.fixture(scope="module")
def model():
    return load_grounding_model(TINY)


def test_ground_batch_is_the_same_with_either_preprocessing(model):
    assert TINY.runtime.preprocess == "tensor"
    caption = "a red ball and a brown box on the green grass"
    phrases = phrases_of(caption, "a red ball", "a brown box", "the green grass")
    images = [random_image(20, 150, 200), random_image(21, 300, 120), random_image(22, 40, 60)]
    tensor = ground_batch(model, images, [phrases] * 3, None, TINY)
    assert sum(len(g) for g in tensor) > 0
    assert tensor == ground_batch(model, images, [phrases] * 3, None, PROCESSOR)
    for i, image in enumerate(images):  # batch of 3 == each alone
        assert ground_batch(model, [image], [phrases], None, TINY) == [tensor[i]]


def test_bf16_tensor_pixels_are_the_processor_pixels_cast():
    model = cpu_model(tiny_image_processor(), dtype=torch.bfloat16)
    images = [random_image(30, 90, 70)]
    pixels, _ = preprocess_images(model, images)
    expected, _ = processor_pixels(model, images)
    assert pixels.dtype == torch.bfloat16 and torch.equal(pixels, expected.to(torch.bfloat16))
