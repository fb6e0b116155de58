"""A folder of hostile inputs through the whole job: every input ends as a row or a reject with its
reason, none crashes the job, none is lost."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.pipelines.test_end_to_end import run_job
from tests.run_outputs import read_rows


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _photo(width: int = 96, height: int = 64, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(width * 1000 + height)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = (200, 40, 40)
    return Image.fromarray(pixels).convert(mode)


def _rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return _encode(_photo(96, 64), "JPEG", exif=exif)


def _animated_gif() -> bytes:
    frames = [_photo(64, 64).convert("P"), _photo(64, 65).resize((64, 64)).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _palette_with_transparency() -> bytes:
    image = _photo(64, 64).convert("P")
    return _encode(image, "PNG", transparency=0)


GOOD_JPEG = _encode(_photo(), "JPEG")
CAPTION = "a red square on a noisy carpet"

# key -> (image bytes or None, caption or None, expected (stage, reason) or None for a row)
CASES: dict[str, tuple] = {
    "good": (GOOD_JPEG, CAPTION, None),
    "corrupt": (GOOD_JPEG[:20] + bytes(range(256)) * 4, CAPTION, ("decode", None)),
    "truncated": (GOOD_JPEG[: len(GOOD_JPEG) // 2], CAPTION, ("decode", "truncated")),
    "zero_bytes": (b"", CAPTION, ("decode", "empty_file")),
    "text_as_jpg": (b"this is not an image at all\n" * 10, CAPTION, ("decode", "not_an_image")),
    "cmyk": (_encode(_photo(mode="CMYK"), "JPEG"), "a cmyk photo of a red square", None),
    "sixteen_bit": (_encode(Image.fromarray((np.arange(64 * 96).reshape(64, 96) * 7).astype(np.uint16)), "PNG"),
                    "a grey gradient with a square", None),
    "rgba": (_encode(_photo(mode="RGBA"), "PNG"), "a translucent square", None),
    "palette": (_palette_with_transparency(), "a palette image of a square", None),
    "animated": (_animated_gif(), "an animated square", None),
    "rotated": (_rotated_jpeg(), "a rotated photo of a red square", None),
    "one_pixel": (_encode(_photo(1, 1), "PNG"), "a single pixel", ("decode", "too_small")),
    "over_limit": (_encode(_photo(700, 400), "PNG"), "a very large image", ("decode", "too_many_pixels")),
    "extreme_aspect": (_encode(_photo(640, 20), "PNG"), "a thin strip", ("decode", "aspect_ratio")),
    "empty_caption": (_encode(_photo(80, 64), "PNG"), "", ("read", "empty_caption")),
    "blank_caption": (_encode(_photo(81, 64), "PNG"), "  \n\t ", ("read", "empty_caption")),
    "long_caption": (_encode(_photo(82, 64), "PNG"), "a dog " * 500, ("read", "caption_too_long")),
    "chinese": (_encode(_photo(83, 64), "PNG"), "一只狗躺在红色的沙发上", None),
    "emoji": (_encode(_photo(84, 64), "PNG"), "a 🐶 dog 🛋️ on a sofa 👍🏽", None),
    "no_caption": (_encode(_photo(85, 64), "PNG"), None, ("read", "missing_caption")),
    "orphan_caption": (None, "a caption with no image", ("read", "missing_image")),
    "dup_a": (_encode(_photo(86, 64), "PNG"), "the same sample twice", None),
    "dup_b": (_encode(_photo(86, 64), "PNG"), "the same sample twice", ("dedupe", "duplicate")),
    "café/über straße": (_encode(_photo(87, 64), "PNG"), "a cup of coffee on a table", None),
    "only_markup": (_encode(_photo(88, 64), "PNG"), "<br/> &nbsp; <p></p>", ("phrases", "empty_after_cleaning")),
    "html": (_encode(_photo(89, 64), "PNG"), "a &lt;b&gt;cup&lt;/b&gt; of coffee &amp; <br/> cake <img> x", None),
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    folder = root / "input"
    for key, (image, caption, _) in CASES.items():
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        ext = ".gif" if key == "animated" else ".png" if image and image[:4] == b"\x89PNG" else ".jpg"
        if image is not None:
            path.with_name(path.name + ext).write_bytes(image)
        if caption is not None:
            path.with_name(path.name + ".txt").write_text(caption, encoding="utf-8")
    out = run_job(root, "out", "--input_format", "folder", "--set", "decode.max_pixels=200000",
                  "--set", "decode.min_side=16",
                  "--set", "near_duplicates.enabled=false",  # flat colour squares: near-duplicates of each other
                  input_path=folder)
    return out


def test_every_bad_input_is_a_row_or_a_reject_with_its_reason(bad_run):
    rows = {r["source_key"]: r for r in read_rows(bad_run)}
    rejects = {r["source"]: r for r in pq.read_table(str(bad_run / "rejects")).to_pylist()}
    assert not set(rows) & set(rejects)
    assert set(rows) | set(rejects) == set(CASES)
    for key, (_, _, expected) in CASES.items():
        if expected is None:
            assert key in rows, f"{key} should be a row, got reject {rejects.get(key)}"
            continue
        assert key in rejects, f"{key} should be rejected"
        stage, reason = expected
        assert rejects[key]["stage"] == stage, rejects[key]
        if reason is not None:
            assert rejects[key]["reason"] == reason, rejects[key]
    counts = json.loads((bad_run / "manifest.json").read_text())["counts"]
    assert counts["inputs"] == len(CASES) and counts["accounted"] is True


def test_converted_images_keep_their_geometry(bad_run):
    rows = {r["source_key"]: r for r in read_rows(bad_run)}
    assert (rows["rotated"]["width"], rows["rotated"]["height"]) == (64, 96)  # EXIF-transposed frame
    assert rows["rotated"]["image"] == CASES["rotated"][0]  # the bytes as received
    for key in ("cmyk", "sixteen_bit", "rgba", "palette", "animated"):
        assert (rows[key]["width"], rows[key]["height"]) == (Image.open(io.BytesIO(CASES[key][0])).size)
    assert rows["emoji"]["caption"] == CASES["emoji"][1]
    assert rows["html"]["caption"] == "a cup of coffee & cake x"  # markup gone, the original kept beside it
    assert rows["html"]["caption_original"] == CASES["html"][1]
    assert all("<img>" not in part["text"] for part in rows["html"]["prompt"] if part["text"])
