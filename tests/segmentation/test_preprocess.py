import dataclasses

import numpy as np
import pytest
import torch

from segmentation.models import (
    SegmentationModel,
    load_segmentation_model,
    sam_vit_base_processor,
    tiny_sam_processor,
)
from segmentation.preprocess import canvas_of, mask_logits_at_original_size, preprocess_images, resized_size
from segmentation.segment import segment_batch
from unimo_g.pipeline_config import ModelRuntimeConfig, SegmentationConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TENSOR = SegmentationConfig(model="tiny", seed=0, runtime=ModelRuntimeConfig(batch_size=4))
PROCESSOR = dataclasses.replace(TENSOR, runtime=ModelRuntimeConfig(batch_size=4, preprocess="processor"))
# (H, W): tiny, odd, square, large aspect ratios both ways, already at the longest edge
SHAPES = [(1, 1), (7, 5), (33, 33), (13, 1000), (1000, 13), (20, 101), (128, 128), (128, 77), (333, 1024), (767, 1023)]


def random_image(seed, height, width):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def cpu_model(processor, dtype=torch.float32) -> SegmentationModel:
    """The pre- and post-processing half of a loaded model."""
    return SegmentationModel(model=None, processor=processor, device=torch.device("cpu"), dtype=dtype)


@pytest.mark.parametrize("build", [tiny_sam_processor, sam_vit_base_processor])
def test_resized_size_equals_the_processor(build):
    image_processor = build().image_processor
    longest_edge = image_processor.size["longest_edge"]
    images = [np.zeros((height, width, 3), np.uint8) for height, width in SHAPES]
    out = image_processor(
        images, do_rescale=False, do_normalize=False, do_pad=False, input_data_format="channels_last"
    )
    for (height, width), expected in zip(SHAPES, out["reshaped_input_sizes"]):
        assert resized_size(height, width, longest_edge) == tuple(int(v) for v in expected), (height, width)


@pytest.mark.parametrize("build, shapes", [
    (tiny_sam_processor, [(40, 60), (77, 33), (128, 128), (300, 451)]),
    (sam_vit_base_processor, [(300, 451), (512, 341), (97, 130)]),
])
def test_pixels_equal_the_processor_byte_for_byte(build, shapes):
    model = cpu_model(build())
    images = [random_image(i, *shape) for i, shape in enumerate(shapes)]
    expected = model.processor.image_processor(images, return_tensors="pt", input_data_format="channels_last")
    pixels, sizes = preprocess_images(model, images)
    assert pixels.dtype == torch.float32
    assert torch.equal(pixels, expected["pixel_values"])  # max abs difference 0
    assert sizes == [tuple(int(v) for v in size) for size in expected["reshaped_input_sizes"]]
    for i in range(len(images)):  # each image is preprocessed alone
        alone, _ = preprocess_images(model, images[i : i + 1])
        assert torch.equal(alone[0], pixels[i])


@pytest.mark.parametrize("build, low_res", [(tiny_sam_processor, 32), (sam_vit_base_processor, 256)])
def test_mask_post_processing_equals_post_process_masks(build, low_res):
    processor = build()
    model = cpu_model(processor)
    longest_edge = processor.image_processor.size["longest_edge"]
    generator = torch.Generator().manual_seed(0)
    for original in [(40, 60), (77, 33), (7, 5), (300, 451), (1000, 999)]:
        logits = torch.randn(3, 1, low_res, low_res, generator=generator) * 4  # (N, 1, h', w')
        resized = resized_size(*original, longest_edge)
        for threshold in (0.0, 0.5):
            expected = processor.post_process_masks([logits], [original], [resized], mask_threshold=threshold)[0]
            got = mask_logits_at_original_size(logits, canvas_of(model), resized, original) > threshold
            assert got.shape == (3, 1, *original) and torch.equal(got, expected)


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    return load_segmentation_model(TENSOR)


def test_segment_batch_is_the_same_with_either_preprocessing(model):
    images = [random_image(1, 40, 60), random_image(2, 77, 33), random_image(3, 128, 128)]
    boxes = [np.array([[5, 5, 30, 30], [0, 0, 60, 40]], float), np.array([[3, 10, 30, 70.5]]), np.array([[9, 9, 99, 80]])]
    tensor = segment_batch(model, images, boxes, TENSOR)
    processor = segment_batch(model, images, boxes, PROCESSOR)
    assert any(0 < p.mask.mean() < 1 for predictions in tensor for p in predictions)
    for got, expected in zip(tensor, processor):
        assert len(got) == len(expected)
        for p, q in zip(got, expected):
            np.testing.assert_array_equal(p.mask, q.mask)
            assert p.score == q.score
    for i in range(len(images)):  # batch of 3 == each alone
        [alone] = segment_batch(model, images[i : i + 1], boxes[i : i + 1], TENSOR)
        for p, q in zip(alone, tensor[i]):
            np.testing.assert_array_equal(p.mask, q.mask)
            assert p.score == q.score


# (H, W) of photos of each shape -> (h, w) at SAM's published longest side 1024
PUBLISHED = {
    "square": ((640, 640), (1024, 1024)),
    "4:3": ((480, 640), (768, 1024)),
    "16:9": ((720, 1280), (576, 1024)),
    "2:1": ((500, 1000), (512, 1024)),
    "portrait": ((640, 480), (1024, 768)),
}


@pytest.mark.parametrize("shape", list(PUBLISHED), ids=str)
def test_unpadded_region_is_the_published_sam_processor_output(shape):
    (height, width), resized = PUBLISHED[shape]
    model = cpu_model(sam_vit_base_processor())
    image = random_image(50, height, width)
    published = model.processor.image_processor(  # longest side 1024, no padding
        [image], do_pad=False, input_data_format="channels_last", return_tensors="pt"
    )["pixel_values"][0]
    assert tuple(published.shape[1:]) == resized
    pixels, sizes = preprocess_images(model, [image])
    h, w = resized
    assert sizes == [resized] and canvas_of(model) == (1024, 1024)
    assert torch.equal(pixels[0, :, :h, :w], published)
    assert not pixels[0, :, h:, :].any() and not pixels[0, :, :, w:].any()
