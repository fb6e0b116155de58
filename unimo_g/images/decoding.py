"""Bounded, validated image decoding: untrusted bytes in, an RGB pixel array or a named rejection out.

Every size check runs on the header before any pixel is decoded, so a decompression bomb costs a
header parse. The output frame is the EXIF-transposed image: every box and mask downstream is in
pixels of `DecodedImage.pixels`.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unimo_g.pipeline_config import DecodeConfig

# Formats opened by default: the ones image crawls contain (JPEG includes multi-picture MPO files).
# Others (EPS runs Ghostscript, PSD, ...) are refused as `not_an_image`; pass `formats=None` to
# `decode_image` to allow every plugin. Formats this Pillow build lacks (AVIF) are skipped.
DEFAULT_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

# What Pillow's decoders raise on malformed input (Pillow's own fuzz tests list OSError, SyntaxError,
# ValueError, NotImplementedError, MemoryError; the rest come from plugin parsers of bad headers).
_DECODER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    NotImplementedError,
    MemoryError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)

_WHITE = 255.0
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MAX = 65535
_SIXTEEN_TO_EIGHT = 257.0  # 65535 / 255


class ImageRejected(Exception):
    """Bytes that do not decode to a usable image.

    `reason` is a short stable token counted in metrics and the manifest: `empty_file`,
    `not_an_image`, `truncated`, `corrupt`, `bad_exif`, `unsupported_mode`, `too_many_pixels`,
    `too_small`, `aspect_ratio`. `detail` is free text for people.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, eq=False)  # eq=False: pixel arrays do not compare with ==
class DecodedImage:
    """A decoded image: `pixels` is (H, W, 3) uint8 RGB of the EXIF-transposed image.

    `format` is the container format Pillow identified (e.g. "JPEG", "PNG").
    """

    pixels: np.ndarray  # (H, W, 3) uint8
    format: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def check_size(width: int, height: int, config: DecodeConfig) -> None:
    """Raise `ImageRejected` when a (width, height) fails the pixel, side or aspect limits.

    The checks do not depend on orientation, so they run on the header size, before EXIF transpose.
    """
    if width * height > config.max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height} > {config.max_pixels} pixels")
    if min(width, height) < config.min_side:
        raise ImageRejected("too_small", f"{width}x{height}: a side is under {config.min_side} pixels")
    aspect = max(width, height) / min(width, height)
    if aspect > config.max_aspect_ratio:
        raise ImageRejected("aspect_ratio", f"{width}x{height}: aspect {aspect:.2f} > {config.max_aspect_ratio}")


def _available(formats: Sequence[str]) -> tuple[str, ...]:
    Image.init()
    return tuple(name for name in formats if name.upper() in Image.OPEN)


def _open(data: bytes, formats: Sequence[str] | None, config: DecodeConfig) -> Image.Image:
    if formats is not None:
        formats = _available(formats)
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as err:  # Pillow's own limit: say which limit refused it
        size = re.search(r"\((\d+) pixels\)", str(err))
        pixels = int(size.group(1)) if size else None
        if pixels is None or pixels > config.max_pixels:
            raise ImageRejected("too_many_pixels", f"{pixels or 'the header size in'} pixels > {config.max_pixels} "
                                                   f"pixels") from None
        raise ImageRejected("too_many_pixels", f"{pixels} pixels: over Pillow's decompression-bomb limit "
                                               f"({2 * Image.MAX_IMAGE_PIXELS} pixels; decode.max_pixels allows "
                                               f"{config.max_pixels}: raise PIL.Image.MAX_IMAGE_PIXELS too)") from None
    except UnidentifiedImageError:
        allowed = "any Pillow format" if formats is None else ", ".join(formats)
        raise ImageRejected("not_an_image", f"not an image of a readable format ({allowed})") from None
    except _DECODER_ERRORS as err:
        raise _decoder_rejection(err) from None


def _decoder_rejection(err: Exception) -> ImageRejected:
    """Name a decoder exception: data ending early is `truncated`, anything else `corrupt`."""
    message = f"{type(err).__name__}: {err}"
    truncated = isinstance(err, EOFError) or "truncated" in str(err).lower()
    return ImageRejected("truncated" if truncated else "corrupt", message)


def _load(image: Image.Image) -> None:
    """Decode every pixel of the current frame (the first frame for animations)."""
    try:
        image.load()
    except _DECODER_ERRORS as err:
        raise _decoder_rejection(err) from None


def _transpose(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except _DECODER_ERRORS as err:
        raise ImageRejected("bad_exif", f"{type(err).__name__}: {err}") from None


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA -> (H, W, 3) uint8 RGB composited over white."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0  # (H, W, 1)
    rgb = rgba[..., :3].astype(np.float32)  # (H, W, 3)
    return np.rint(rgb * alpha + _WHITE * (1.0 - alpha)).astype(np.uint8)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB.

    Transparent pixels (alpha channel, palette or `tRNS` transparency) are composited on white;
    16/32-bit integer images are scaled from the 16-bit range to 8 bits; float images are clipped
    to [0, 255]; CMYK, YCbCr, LAB, grayscale and 1-bit go through Pillow's conversion.
    """
    mode = image.mode
    if mode == "RGB":
        return np.array(image, dtype=np.uint8)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.float64)  # (H, W)
        gray = np.rint(np.clip(values, 0, _SIXTEEN_BIT_MAX) / _SIXTEEN_TO_EIGHT).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray = np.rint(np.clip(np.asarray(image, dtype=np.float64), 0, 255)).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in _ALPHA_MODES or image.has_transparency_data:
        try:
            rgba = image.convert("RGBA")
        except ValueError as err:
            raise ImageRejected("unsupported_mode", f"{mode}: {err}") from None
        return _composite_on_white(np.array(rgba, dtype=np.uint8))
    try:
        return np.array(image.convert("RGB"), dtype=np.uint8)
    except ValueError as err:
        raise ImageRejected("unsupported_mode", f"{mode}: {err}") from None


def decode_image(
    data: bytes, config: DecodeConfig, formats: Sequence[str] | None = DEFAULT_FORMATS
) -> DecodedImage:
    """Decode untrusted bytes into (H, W, 3) uint8 RGB of the EXIF-transposed image.

    Order: header (format, size) -> size limits from `config` -> full decode of the first frame ->
    EXIF transpose -> RGB. Animated images keep their first frame. Raises only `ImageRejected`
    on bad input.
    """
    if not data:
        raise ImageRejected("empty_file", "0 bytes")
    image = _open(data, formats, config)
    with image:
        image_format = image.format or "UNKNOWN"
        width, height = image.size
        check_size(width, height, config)
        _load(image)
        upright = _transpose(image)
        try:
            pixels = to_rgb(upright)  # (H, W, 3)
        except _DECODER_ERRORS as err:
            raise _decoder_rejection(err) from None
    return DecodedImage(pixels=pixels, format=image_format)


def encode_image(pixels: np.ndarray, fmt: str = "PNG", quality: int = 90) -> bytes:
    """Encode (H, W, 3) or (H, W, 4) uint8 pixels, or (H, W) grayscale, as `fmt` ("PNG", "JPEG", "WEBP").

    `quality` applies to lossy formats only.
    """
    array = np.asarray(pixels)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"encode_image expects (H, W[, 3|4]) uint8 pixels, got {array.shape} {array.dtype}")
    fmt = fmt.upper()
    if fmt == "JPEG" and array.ndim == 3 and array.shape[2] == 4:
        raise ValueError("JPEG has no alpha channel: composite the RGBA pixels first")
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


# Perceptual hash: imagehash's DCT `phash` (64 bits) of the grey image. The hash only sees a 32x32
# resize, so JPEGs are decoded at a reduced scale (Pillow's `draft`: 1/2 to 1/8 in the DCT domain)
# to at least twice that size; every caller (near-duplicate keys, the row's `phash`, resume,
# evaluation images) goes through `perceptual_hash`, so values always agree. Other formats have no
# reduced decode: their hash is `hash_pixels` of exactly what `decode_image` returns, so a caller
# holding those pixels need not decode again (`hashes_decoded_pixels`).
PHASH_DRAFT_SIDE = 64
DRAFT_FORMATS = ("JPEG", "MPO")  # formats whose decoder `draft` can reduce (MPO: multi-picture JPEG)


def hash_pixels(pixels: np.ndarray) -> str:
    """`perceptual_hash` of (H, W, 3) uint8 RGB pixels: 16 hex digits."""
    import imagehash  # only the hash needs it (and scipy behind it)

    return str(imagehash.phash(Image.fromarray(pixels).convert("L")))


def hashes_decoded_pixels(image_format: str) -> bool:
    """Whether `perceptual_hash` of an image of `image_format` equals `hash_pixels` of its
    `decode_image` pixels (true unless the format has a reduced-size decode)."""
    return image_format not in DRAFT_FORMATS


def perceptual_hash(data: bytes, config: DecodeConfig, formats: Sequence[str] | None = DEFAULT_FORMATS) -> str:
    """64-bit DCT perceptual hash of the EXIF-transposed image as 16 hex digits (`imagehash.phash`).

    Bounded like `decode_image`: the header's size passes `config`'s limits before any pixel is
    decoded. Transparent pixels are composited on white first, as at decode. Raises only
    `ImageRejected` on bad input.
    """
    if not data:
        raise ImageRejected("empty_file", "0 bytes")
    image = _open(data, formats, config)
    with image:
        check_size(*image.size, config)
        try:
            image.draft("RGB", (PHASH_DRAFT_SIDE, PHASH_DRAFT_SIDE))  # JPEG only; a no-op elsewhere
        except _DECODER_ERRORS as err:
            raise _decoder_rejection(err) from None
        _load(image)
        upright = _transpose(image)
        try:
            return hash_pixels(to_rgb(upright))
        except _DECODER_ERRORS as err:
            raise _decoder_rejection(err) from None


def hash_distance(first: str, second: str) -> int:
    """Hamming distance of two perceptual hashes (hex strings of `perceptual_hash`)."""
    return (int(first, 16) ^ int(second, 16)).bit_count()
