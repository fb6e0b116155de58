import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from grounding.detect import ground_batch
from grounding.models import GroundingModel, canvas_buckets, load_grounding_model
from grounding.preprocess import image_canvas, preprocess_images, resized_size
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


def cpu_model(image_processor, aspects=(1.0, 4 / 3), dtype=torch.float32) -> GroundingModel:
    """The preprocessing half of a loaded model (no network needed)."""
    resize, canvases = canvas_buckets(image_processor.size, aspects)
    return GroundingModel(
        model=None, image_processor=image_processor, tokenizer=None, device=torch.device("cpu"), dtype=dtype,
        resize=resize, canvases=canvases, name="preprocessing-only",
    )


def largest_canvas(model, images):
    """The smallest canvas holding every image's own canvas (for comparing a batch with the processor)."""
    canvases = [image_canvas(model, image) for image in images]
    return max(c[0] for c in canvases), max(c[1] for c in canvases)


def processor_pixels(model, images, canvas=None):
    height, width = canvas or largest_canvas(model, images)
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
    else:  # the published model's settings
        model = cpu_model(grounding_dino_tiny_image_processor())
        shapes = [(300, 451), (512, 341), (600, 800), (97, 130)]
    images = [random_image(i, *shape) for i, shape in enumerate(shapes)]
    canvas = largest_canvas(model, images)
    expected_pixels, expected_mask = processor_pixels(model, images, canvas)
    pixels, mask = preprocess_images(model, images, canvas)
    assert pixels.dtype == torch.float32 and mask.dtype == expected_mask.dtype
    assert torch.equal(pixels, expected_pixels)  # max abs difference 0
    assert torch.equal(mask, expected_mask)


def test_each_image_is_preprocessed_alone():
    model = cpu_model(tiny_image_processor())
    images = [random_image(10, 150, 200), random_image(11, 300, 120), random_image(12, 40, 60)]
    canvas = largest_canvas(model, images)
    together, mask = preprocess_images(model, images, canvas)
    for i, image in enumerate(images):
        alone, alone_mask = preprocess_images(model, [image], canvas)
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
    pixels, _ = preprocess_images(model, images, image_canvas(model, images[0]))
    expected, _ = processor_pixels(model, images)
    assert pixels.dtype == torch.bfloat16 and torch.equal(pixels, expected.to(torch.bfloat16))


# (H, W) of photos of each shape -> (h, w) the published processor (shortest 800, longest 1333) makes
# of them, and the canvas each is padded to.
PUBLISHED = {
    "square": ((640, 640), (800, 800), (800, 800)),
    "4:3": ((480, 640), (800, 1066), (800, 1067)),
    "16:9": ((720, 1280), (750, 1333), (800, 1333)),
    "2:1": ((500, 1000), (666, 1333), (800, 1333)),
    "portrait 3:4": ((640, 480), (1066, 800), (1067, 800)),
    "portrait 9:16": ((1280, 720), (1333, 750), (1333, 800)),
}


@pytest.mark.parametrize("shape", list(PUBLISHED), ids=str)
def test_unpadded_region_is_the_published_processor_output(shape):
    """What the model receives inside its canvas is the published processor's output for the image
    alone (no padding, its own size): the image is never shrunk to fit a smaller canvas."""
    (height, width), resized, canvas = PUBLISHED[shape]
    model = cpu_model(grounding_dino_tiny_image_processor())
    image = random_image(40, height, width)
    assert image_canvas(model, image) == canvas
    published = model.image_processor(  # the processor as published: size 800 / 1333, no canvas
        [image], do_pad=False, input_data_format="channels_last", return_tensors="pt"
    )["pixel_values"][0]
    assert tuple(published.shape[1:]) == resized
    pixels, mask = preprocess_images(model, [image], canvas)
    h, w = resized
    assert torch.equal(pixels[0, :, :h, :w], published)
    assert int(mask[0].sum()) == h * w and not pixels[0, :, h:, :].any() and not pixels[0, :, :, w:].any()
