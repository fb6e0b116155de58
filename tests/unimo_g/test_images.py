import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from unimo_g.images.decoding import DecodedImage, ImageRejected, decode_image, encode_image
from unimo_g.pipeline_config import DecodeConfig

CONFIG = DecodeConfig(max_pixels=1_000_000, min_side=1, max_aspect_ratio=8.0)


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _gradient(width=40, height=30) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)  # (H, W)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2))


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    return _save(_gradient(40, 30), "JPEG", exif=exif)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 20), color) for color in [(255, 0, 0), (0, 0, 255)]]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (10, 0, 20, 20))  # right half: palette index 1, opaque green
    return _save(image, "PNG", transparency=0)  # left half: index 0, transparent


def _rgba_png() -> bytes:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :5, 3] = 0  # left half transparent
    rgba[:, 5:, 3] = 255
    return _save(Image.fromarray(rgba), "PNG")


def _gray16_png() -> bytes:
    values = np.full((12, 16), 65535, np.uint16)
    values[:, :8] = 257 * 100  # 100 on the 8-bit scale
    return _save(Image.fromarray(values), "PNG")


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature, a valid IHDR chunk claiming width x height, and the start of an IDAT chunk."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    signature = b"\x89PNG\r\n\x1a\n"
    idat_start = struct.pack(">I", 64) + b"IDAT"
    return signature + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + idat_start


def _corrupt_png_data() -> bytes:
    data = bytearray(_save(_gradient(), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 2 : start + 40] = b"\xff" * 38  # garbage inside the zlib stream, CRC left stale
    return bytes(data)


def _cmyk_jpeg() -> bytes:
    return _save(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG", quality=95)  # red


# name -> (bytes, expected reason, or expected (H, W) of the decoded image)
CASES = {
    "zero_bytes": (b"", "empty_file"),
    "text_with_jpg_name": (b"this is not an image, just text\n" * 4, "not_an_image"),
    "garbage_after_jpeg_magic": (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "not_an_image"),
    "corrupt_png_data": (_corrupt_png_data(), "corrupt"),
    "truncated_jpeg_header": (_save(_gradient(), "JPEG")[:300], "truncated"),
    "truncated_jpeg_data": (_save(_gradient(), "JPEG")[:-10], "truncated"),
    "truncated_png": (_save(_gradient(), "PNG")[:-30], "truncated"),
    "eps_not_allowed": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not_an_image"),
    "rgb_jpeg": (_save(_gradient(), "JPEG"), (30, 40)),
    "cmyk_jpeg": (_cmyk_jpeg(), (20, 20)),
    "gray16_png": (_gray16_png(), (12, 16)),
    "rgba_png": (_rgba_png(), (10, 10)),
    "palette_transparency_png": (_palette_with_transparency(), (20, 20)),
    "grayscale_png": (_save(Image.new("L", (9, 7), 128), "PNG"), (7, 9)),
    "one_bit_png": (_save(Image.new("1", (9, 7), 1), "PNG"), (7, 9)),
    "la_png": (_save(Image.new("LA", (9, 7), (0, 0)), "PNG"), (7, 9)),
    "animated_gif": (_animated_gif(), (20, 20)),
    "exif_rotated_jpeg": (_exif_rotated_jpeg(), (40, 30)),  # 40x30 stored, 30x40 displayed
    "one_pixel": (_save(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), (1, 1)),
    "webp": (_save(_gradient(), "WEBP"), (30, 40)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_input_ends_as_image_or_named_rejection(name):
    data, expected = CASES[name]
    if isinstance(expected, str):
        with pytest.raises(ImageRejected) as info:
            decode_image(data, CONFIG)
        assert info.value.reason == expected, info.value.detail
    else:
        decoded = decode_image(data, CONFIG)
        assert isinstance(decoded, DecodedImage)
        assert decoded.pixels.dtype == np.uint8
        assert decoded.pixels.shape == (*expected, 3)
        assert (decoded.height, decoded.width) == expected


def test_exif_transpose_swaps_width_and_height_and_rotates_content():
    decoded = decode_image(_exif_rotated_jpeg(), CONFIG)
    assert (decoded.width, decoded.height) == (30, 40)
    upright = np.asarray(_gradient(40, 30).transpose(Image.Transpose.ROTATE_270)).astype(int)
    assert np.abs(decoded.pixels.astype(int) - upright).mean() < 8  # JPEG noise only


def test_transparency_is_composited_on_white():
    rgba = decode_image(_rgba_png(), CONFIG).pixels
    assert (rgba[:, :5] == 255).all()
    assert (rgba[:, 5:] == [200, 0, 0]).all()
    palette = decode_image(_palette_with_transparency(), CONFIG).pixels
    assert (palette[:, :10] == 255).all()
    assert (palette[:, 10:] == [0, 255, 0]).all()


def test_modes_convert_to_sensible_rgb():
    gray16 = decode_image(_gray16_png(), CONFIG).pixels
    assert (gray16[:, :8] == 100).all() and (gray16[:, 8:] == 255).all()
    cmyk = decode_image(_cmyk_jpeg(), CONFIG)
    assert cmyk.format == "JPEG"
    red, green, blue = cmyk.pixels.reshape(-1, 3).mean(0)
    assert red > 200 and green < 60 and blue < 60
    gif = decode_image(_animated_gif(), CONFIG)
    assert gif.format == "GIF"
    assert (gif.pixels[0, 0] == [255, 0, 0]).all()  # first frame


@pytest.mark.parametrize(
    "size, config, reason",
    [
        ((200, 100), DecodeConfig(max_pixels=19_999, min_side=1), "too_many_pixels"),
        ((90, 10), DecodeConfig(max_pixels=10**6, min_side=1, max_aspect_ratio=8.0), "aspect_ratio"),
        ((10, 90), DecodeConfig(max_pixels=10**6, min_side=1, max_aspect_ratio=8.0), "aspect_ratio"),
        ((1, 1), DecodeConfig(min_side=2), "too_small"),
    ],
)
def test_size_limits(size, config, reason):
    with pytest.raises(ImageRejected) as info:
        decode_image(_save(Image.new("RGB", size), "PNG"), config)
    assert info.value.reason == reason


def test_pixel_limit_is_checked_before_decoding():
    # A PNG header claiming 50000 x 50000 pixels followed by no data: the header check must
    # refuse it; decoding would fail differently (truncated) or allocate gigabytes.
    with pytest.raises(ImageRejected) as info:
        decode_image(_png_header(50000, 50000), DecodeConfig(max_pixels=10**6, min_side=1))
    assert info.value.reason == "too_many_pixels"


def test_pillow_decompression_bomb_error_becomes_a_rejection():
    # 4e8 pixels > 2 * Image.MAX_IMAGE_PIXELS: Pillow itself raises inside Image.open
    assert 20000 * 20000 > 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageRejected) as info:
        decode_image(_png_header(20000, 20000), DecodeConfig(max_pixels=10**9, min_side=1))
    assert info.value.reason == "too_many_pixels"
    assert f"over Pillow's decompression-bomb limit ({2 * Image.MAX_IMAGE_PIXELS} pixels" in str(info.value)
    assert "decode.max_pixels allows 1000000000" in str(info.value)


def test_the_rejection_names_the_configured_limit_when_it_binds():
    with pytest.raises(ImageRejected, match=r"too_many_pixels: 400000000 pixels > 64000000 pixels$"):
        decode_image(_png_header(20000, 20000), DecodeConfig(max_pixels=64_000_000, min_side=1))


def test_random_bytes_never_raise_anything_else():
    rng = np.random.default_rng(0)
    valid = _save(_gradient(), "PNG")
    for _ in range(50):
        flipped = bytearray(valid)
        for index in rng.integers(8, len(flipped), size=4):
            flipped[index] = int(rng.integers(0, 256))
        try:
            decode_image(bytes(flipped), CONFIG)
        except ImageRejected as err:
            assert err.reason


def test_encode_image_round_trips():
    pixels = np.asarray(_gradient())
    png = encode_image(pixels, "PNG")
    assert (decode_image(png, CONFIG).pixels == pixels).all()
    assert decode_image(encode_image(pixels, "JPEG", quality=80), CONFIG).format == "JPEG"
    assert decode_image(encode_image(pixels, "WEBP"), CONFIG).format == "WEBP"
    with pytest.raises(ValueError):
        encode_image(pixels.astype(np.float32))


def test_pillow_floor_covers_the_apis_the_code_calls():
    """`Image.has_transparency_data` (used by `to_rgb`) first shipped in Pillow 10.1."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    floor = re.search(r'"pillow>=([0-9.]+)', text).group(1)
    assert tuple(int(part) for part in floor.split(".")) >= (10, 1)
    decoding = Path(__file__).resolve().parents[2] / "unimo_g" / "images" / "decoding.py"
    assert "has_transparency_data" in decoding.read_text()
