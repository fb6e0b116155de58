import io

import numpy as np
import pytest
from PIL import Image

from segmentation.entity_image import crop_geometry, entity_image
from unimo_g.pipeline_config import EntityImageConfig

RED = (200, 30, 10)


def _decode(data: bytes) -> tuple[Image.Image, np.ndarray]:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image, np.asarray(image.convert("RGB")).astype(int)


def test_interior_box_without_margin_is_its_own_crop():
    assert crop_geometry([10, 10, 30, 20], (100, 50), 0.0) == ((10, 10, 30, 20), 20, (0, 5))


def test_fractional_boxes_round_outwards():
    assert crop_geometry([1.2, 2.7, 5.5, 6.1], (10, 10), 0.0) == ((1, 2, 6, 7), 5, (0, 0))


def test_margin_is_a_fraction_of_the_longer_side_and_clamps_to_the_image():
    # pad = 0.25 * 20 = 5 on each side
    assert crop_geometry([10, 10, 30, 20], (100, 50), 0.25) == ((5, 5, 35, 25), 30, (0, 5))
    # pad = 10 reaches past the top-left corner
    assert crop_geometry([5, 5, 25, 15], (100, 50), 0.5) == ((0, 0, 35, 25), 35, (0, 5))
    assert crop_geometry([0, 0, 100, 50], (100, 50), 0.2) == ((0, 0, 100, 50), 100, (0, 25))


def test_tall_and_wide_boxes_are_centred_in_the_square():
    assert crop_geometry([40, 0, 50, 50], (100, 50), 0.0) == ((40, 0, 50, 50), 50, (20, 0))
    assert crop_geometry([0, 20, 99, 30], (100, 50), 0.0) == ((0, 20, 99, 30), 99, (0, 44))


@pytest.mark.parametrize(
    "box, expected",
    [
        ([5, 5, 5, 10], (5, 5, 6, 10)),  # zero width
        ([5.2, 5, 5.2, 5], (5, 5, 6, 6)),  # a point
        ([100, 10, 100, 20], (99, 10, 100, 20)),  # on the right edge
        ([150, 60, 170, 80], (99, 49, 100, 50)),  # entirely outside, bottom right
        ([-20, -20, -10, -10], (0, 0, 1, 1)),  # entirely outside, top left
        ([8, 8, 3, 3], (8, 8, 9, 9)),  # inverted
    ],
)
def test_degenerate_boxes_give_at_least_one_pixel(box, expected):
    crop, side, offset = crop_geometry(box, (100, 50), 0.0)
    assert crop == expected
    assert side == max(crop[2] - crop[0], crop[3] - crop[1])
    assert offset == ((side - (crop[2] - crop[0])) // 2, (side - (crop[3] - crop[1])) // 2)


def test_random_boxes_keep_the_crop_invariants():
    rng = np.random.default_rng(0)
    width, height = 37, 23
    for _ in range(500):
        x1, x2 = np.sort(rng.uniform(-10, width + 10, 2))
        y1, y2 = np.sort(rng.uniform(-10, height + 10, 2))
        margin = float(rng.uniform(0, 1))
        (cx0, cy0, cx1, cy1), side, (dx, dy) = crop_geometry([x1, y1, x2, y2], (width, height), margin)
        assert 0 <= cx0 < cx1 <= width and 0 <= cy0 < cy1 <= height
        assert cx0 <= max(x1, 0) or cx0 == width - 1
        assert cx1 >= min(x2, width) or cx1 == 1
        assert side == max(cx1 - cx0, cy1 - cy0)
        assert 0 <= dx and dx + (cx1 - cx0) <= side and 0 <= dy and dy + (cy1 - cy0) <= side


def _red_image_left_half_masked():
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:] = RED
    mask = np.zeros((40, 60), bool)
    mask[:, :30] = True
    return pixels, mask


@pytest.mark.parametrize("level", [1, 6, 9])
def test_unresized_png_is_exact_at_every_compress_level(level):
    pixels, mask = _red_image_left_half_masked()
    # box 20 wide, 10 high: square of 20, content on rows 5..14, left 10 columns on the mask
    config = EntityImageConfig(size=20, format="PNG", png_compress_level=level)
    data = entity_image(pixels, mask, [20, 10, 40, 20], config)
    image, out = _decode(data)
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (20, 20)
    expected = np.full((20, 20, 3), 255)
    expected[5:15, :10] = RED
    np.testing.assert_array_equal(out, expected)


def test_png_compress_level_is_checked():
    with pytest.raises(ValueError, match="png_compress_level"):
        EntityImageConfig(png_compress_level=10)


@pytest.mark.parametrize("fmt, tolerance", [("PNG", 1), ("WEBP", 12)])
def test_resized_output_is_white_off_the_mask(fmt, tolerance):
    pixels, mask = _red_image_left_half_masked()
    config = EntityImageConfig(size=64, format=fmt, webp_quality=95)
    image, out = _decode(entity_image(pixels, mask, [20, 10, 40, 20], config))
    assert image.format == fmt and image.size == (64, 64)
    assert out.shape == (64, 64, 3)
    # far from any edge: masked-in content, masked-out content, and square padding
    np.testing.assert_allclose(out[32, 8], RED, atol=tolerance)
    np.testing.assert_allclose(out[32, 56], (255, 255, 255), atol=tolerance)
    np.testing.assert_allclose(out[4, 8], (255, 255, 255), atol=tolerance)
    np.testing.assert_allclose(out[60, 8], (255, 255, 255), atol=tolerance)


def test_degenerate_box_with_margin_expands_by_the_longer_side():
    assert crop_geometry([5, 5, 5, 10], (100, 50), 0.2) == ((4, 4, 6, 11), 7, (2, 0))


def test_margin_shows_masked_context_and_whitens_the_rest():
    pixels, mask = _red_image_left_half_masked()
    # zero-width box, 10 high; pad = 0.5 * 10 = 5: crop x 25..35, y 15..35 -> 10 x 20, offset (5, 0)
    config = EntityImageConfig(size=20, format="PNG", margin=0.5)
    _, out = _decode(entity_image(pixels, mask, [30, 20, 30, 30], config))
    expected = np.full((20, 20, 3), 255)
    expected[:, 5:10] = RED  # image columns 25..29 lie on the mask, 30..34 do not
    np.testing.assert_array_equal(out, expected)


def test_entity_size_follows_config_and_bad_inputs_raise():
    pixels, mask = _red_image_left_half_masked()
    for size in (1, 7, 100):
        image, _ = _decode(entity_image(pixels, mask, [0, 0, 60, 40], EntityImageConfig(size=size)))
        assert image.size == (size, size)
    with pytest.raises(ValueError, match="does not match"):
        entity_image(pixels, mask[:, :-1], [0, 0, 10, 10], EntityImageConfig())
    with pytest.raises(ValueError, match="uint8"):
        entity_image(pixels.astype(np.float32), mask, [0, 0, 10, 10], EntityImageConfig())
