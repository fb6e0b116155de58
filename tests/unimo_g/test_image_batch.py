import numpy as np
import pytest
import torch
from PIL import Image
from transformers import GroundingDinoImageProcessorPil

from unimo_g.images.model_batches import (
    PRECISION_BITS,
    batch_images,
    bilinear_taps,
    processor_value_table,
    resize_bilinear_uint8,
    resize_with_pil,
    value_table,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# (H, W) -> (h, w): shrink, enlarge, mixed, odd, one pixel, same size, one side unchanged,
# large ratios, and an image over 100 times taller than wide (Pillow resizes it vertically first)
RESIZES = [
    ((40, 60), (20, 30)), ((37, 53), (80, 113)), ((50, 20), (31, 77)), ((1, 1), (5, 7)), ((9, 7), (1, 1)),
    ((33, 33), (33, 33)), ((45, 30), (45, 61)), ((45, 30), (17, 30)), ((3, 200), (12, 800)),
    ((400, 500), (25, 31)), ((610, 6), (315, 89)), ((700, 5), (300, 5)), ((500, 4), (600, 9)),
]


def random_image(seed, height, width):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def smooth_image(height, width):
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([yy * 255 // max(height - 1, 1), xx * 255 // max(width - 1, 1), (xx + yy) % 256], -1).astype(
        np.uint8
    )


@pytest.mark.parametrize("source, target", RESIZES)
def test_resize_equals_pillow_byte_for_byte(source, target):
    for image in (random_image(sum(source), *source), smooth_image(*source)):
        expected = np.asarray(Image.fromarray(image).resize(target[::-1], Image.Resampling.BILINEAR))
        got = resize_bilinear_uint8(torch.from_numpy(image), target)
        assert got.dtype == torch.uint8 and tuple(got.shape) == (*target, 3)
        np.testing.assert_array_equal(got.numpy(), expected)
        np.testing.assert_array_equal(resize_with_pil(image, target), expected)


def test_resize_equals_pillow_on_random_shapes():
    rng = np.random.default_rng(0)
    for trial in range(40):
        height, width, new_height, new_width = (int(v) for v in rng.integers(1, 160, 4))
        image = random_image(trial, height, width)
        got = resize_bilinear_uint8(torch.from_numpy(image), (new_height, new_width)).numpy()
        np.testing.assert_array_equal(got, resize_with_pil(image, (new_height, new_width)), err_msg=str(
            (height, width, new_height, new_width)
        ))


def test_taps_are_normalised_fixed_point_weights():
    for in_size, out_size in [(10, 3), (3, 10), (7, 7), (1000, 13), (1, 4)]:
        index, weight = bilinear_taps(in_size, out_size)
        assert index.shape == weight.shape and index.shape[0] == out_size
        assert index.min() >= 0 and index.max() < in_size
        assert (weight >= 0).all()
        np.testing.assert_allclose(weight.sum(axis=1), 1 << PRECISION_BITS, atol=index.shape[1])
    with pytest.raises(ValueError, match=">= 1"):
        bilinear_taps(0, 3)


def test_value_table_equals_the_processor_rescale_and_normalize():
    processor = GroundingDinoImageProcessorPil()
    levels = np.tile(np.arange(256, dtype=np.uint8), (3, 1))[:, None, :]  # (3, 1, 256) channels first
    expected = processor.normalize(processor.rescale(levels, processor.rescale_factor), IMAGENET_MEAN, IMAGENET_STD)
    table = processor_value_table(processor)
    assert table.dtype == np.float32 and table.shape == (3, 256)
    np.testing.assert_array_equal(table, expected[:, 0, :])
    np.testing.assert_array_equal(value_table(None, None, None), np.tile(np.arange(256, dtype=np.float32), (3, 1)))


def test_processor_settings_the_tensor_path_cannot_reproduce_raise():
    for bilinear in (Image.Resampling.BILINEAR, 2, None):
        processor_value_table(GroundingDinoImageProcessorPil(resample=bilinear))
    with pytest.raises(ValueError, match="bilinear"):
        processor_value_table(GroundingDinoImageProcessorPil(resample=Image.Resampling.BICUBIC))
    with pytest.raises(ValueError, match="do_resize"):
        processor_value_table(GroundingDinoImageProcessorPil(do_resize=False))


def test_batch_layout_padding_and_mask():
    images = [random_image(1, 30, 50), random_image(2, 64, 20)]
    sizes = [(24, 40), (64, 20)]
    table = value_table(1 / 255, IMAGENET_MEAN, IMAGENET_STD)
    pixels, mask = batch_images(images, sizes, (64, 48), table, torch.device("cpu"), torch.float32)
    assert pixels.shape == (2, 3, 64, 48) and pixels.dtype == torch.float32
    assert mask.shape == (2, 64, 48) and mask.dtype == torch.int64
    for i, (height, width) in enumerate(sizes):
        resized = resize_with_pil(images[i], (height, width))  # (h, w, 3)
        expected = table[np.arange(3)[:, None, None], resized.transpose(2, 0, 1)]  # (3, h, w)
        np.testing.assert_array_equal(pixels[i, :, :height, :width].numpy(), expected)
        assert (pixels[i, :, height:] == 0).all() and (pixels[i, :, :, width:] == 0).all()
        assert mask[i].sum() == height * width and (mask[i, :height, :width] == 1).all()


def test_torch_resize_gives_the_same_batch_as_pillow_and_batches_are_invariant():
    images = [random_image(3, 45, 70), smooth_image(90, 31), random_image(4, 12, 12)]
    sizes = [(40, 62), (64, 22), (64, 64)]
    table = value_table(1 / 255, IMAGENET_MEAN, IMAGENET_STD)
    args = ((64, 64), table, torch.device("cpu"), torch.float32)
    together, mask = batch_images(images, sizes, *args)
    in_torch, mask_torch = batch_images(images, sizes, *args, pil_on_cpu=False)
    assert torch.equal(together, in_torch) and torch.equal(mask, mask_torch)
    for i in range(len(images)):
        alone, alone_mask = batch_images(images[i : i + 1], sizes[i : i + 1], *args)
        assert torch.equal(alone[0], together[i]) and torch.equal(alone_mask[0], mask[i])


def test_dtype_is_the_float32_values_cast():
    images, sizes = [random_image(5, 20, 30)], [(16, 24)]
    table = value_table(1 / 255, IMAGENET_MEAN, IMAGENET_STD)
    full, _ = batch_images(images, sizes, (16, 24), table, torch.device("cpu"), torch.float32)
    half, _ = batch_images(images, sizes, (16, 24), table, torch.device("cpu"), torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, full.to(torch.bfloat16))


def test_bad_inputs_raise():
    table = value_table(None, None, None)
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="does not fit"):
        batch_images([random_image(6, 10, 10)], [(20, 8)], (16, 16), table, cpu, torch.float32)
    with pytest.raises(ValueError, match="uint8 RGB"):
        batch_images([np.zeros((10, 10), np.uint8)], [(8, 8)], (16, 16), table, cpu, torch.float32)
    with pytest.raises(ValueError, match="2 images but 1"):
        batch_images([random_image(7, 4, 4)] * 2, [(4, 4)], (16, 16), table, cpu, torch.float32)
    with pytest.raises(ValueError, match=">= 1 pixel"):
        resize_bilinear_uint8(torch.zeros((4, 4, 3), dtype=torch.uint8), (0, 3))
