import dataclasses
import html
import io
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from pipelines.outputs import gallery
from unimo_g.records import Entity, Mask, Phrase, PromptPart, Reject, Sample
from unimo_g.schema import prompt_text, reject_schema, sample_id, shard_schema

W, H = 96, 72
BOX = (20.0, 10.0, 60.0, 50.0)  # xyxy, pixels
CAPTION = 'a cat & a "dog" <on> a mat'


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _disc_mask() -> np.ndarray:
    """(H, W) bool: a disc of radius 12 centred in BOX, so the box corners lie outside the mask."""
    rows, cols = np.mgrid[0:H, 0:W]
    return (rows - 30) ** 2 + (cols - 40) ** 2 <= 12**2


def _entity(phrase: int, text: str, start: int, end: int, mask: np.ndarray, box) -> Entity:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    crop = _png(Image.new("RGB", (16, 16), (200, 30, 30)))
    return Entity(
        phrase=phrase, text=text, start=start, end=end, box=box, box_score=0.9, mask=Mask(size=(H, W),
        counts=rle["counts"].decode()), mask_area=int(mask.sum()), mask_score=0.8, image=crop, image_format="PNG",
    )  # fmt: skip


def _sample(caption, phrases, entities, prompt, key) -> Sample:
    image = _png(Image.new("RGB", (W, H), (120, 120, 120)))
    return Sample(
        id=sample_id(image, caption), source_key=key, url=f"sample://{key}.png", sha256="0" * 64, image=image,
        image_format="PNG", width=W, height=H, caption=caption, phrases=tuple(phrases), entities=tuple(entities),
        prompt=tuple(prompt), prompt_text=prompt_text(prompt),
    )  # fmt: skip


@pytest.fixture
def output_dir(tmp_path):
    mask = _disc_mask()
    second = np.zeros((H, W), bool)
    second[55:70, 70:90] = True
    phrases = [Phrase("a cat", 0, 5), Phrase('a "dog"', 8, 15), Phrase("a mat", 21, 26)]
    entities = [_entity(0, "a cat", 0, 5, mask, BOX), _entity(1, 'a "dog"', 8, 15, second, (70.0, 55.0, 90.0, 70.0))]
    prompt = [PromptPart(entity=0), PromptPart(text=" & "), PromptPart(entity=1), PromptPart(text=" <on> a mat")]
    rows = [
        _sample(CAPTION, phrases, entities, prompt, "00000/000000001").to_row(),
        _sample("a plain mat", [Phrase("a plain mat", 0, 11)], [], [PromptPart(text="a plain mat")], "k2").to_row(),
    ]
    (tmp_path / "shards").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=shard_schema()), tmp_path / "shards" / "part-00000.parquet")
    reject = Reject("r1", "00000/000000009", "decode", "image_too_small", "12x8 < <min_side>").to_row()
    (tmp_path / "rejects").mkdir()
    pq.write_table(pa.Table.from_pylist([reject], schema=reject_schema()), tmp_path / "rejects" / "part-0.parquet")
    manifest = {"config": {"name": "tiny", "grounding": {"model": "tiny"}}, "inputs": 3}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_main_writes_one_self_contained_page(output_dir):
    before = sorted(p.relative_to(output_dir) for p in output_dir.rglob("*"))
    assert gallery.main([str(output_dir)]) == 0
    after = sorted(p.relative_to(output_dir) for p in output_dir.rglob("*"))
    assert sorted(set(after) - set(before)) == [output_dir.joinpath("gallery.html").relative_to(output_dir)]
    page = (output_dir / "gallery.html").read_text(encoding="utf-8")

    assert html.escape(CAPTION) in page and CAPTION not in page
    prompts = re.findall(r'<p class="prompt">(.*?)</p>', page)
    assert len(prompts) == 2
    assert prompts[0].count("<img") == 2 and "data:image/png;base64," in prompts[0]
    assert html.escape(" <on> a mat") in prompts[0]
    assert prompts[1] == "a plain mat" and "<img" not in prompts[1]
    assert "image_too_small" in page and html.escape("12x8 < <min_side>") in page
    assert "Random weights" in page  # the manifest's config builds tiny random-weight models
    assert "2 rows, 1 rejects" in page
    assert 'src="http' not in page and "src='http" not in page  # every image is inline


def test_out_and_limit(output_dir, tmp_path):
    out = tmp_path / "elsewhere.html"
    gallery.main([str(output_dir), "--out", str(out), "--limit", "1"])
    page = out.read_text(encoding="utf-8")
    assert not (output_dir / "gallery.html").exists()
    assert page.count('<div class="card">') == 1 and "Samples (1 of 2)" in page


def test_no_banner_for_real_weights():
    assert not gallery.says_random_weights({"config": {"name": "default"}})
    assert gallery.says_random_weights({"random_weights": True})
    header = gallery.render_header_html({"config": {"name": "default"}}, 3, [])
    assert "Random weights" not in header and "config default" in header


def test_draw_overlay_tints_the_mask_and_leaves_far_pixels_alone():
    image = Image.new("RGB", (W, H), (120, 120, 120))
    mask = _disc_mask()
    entity = dataclasses.asdict(_entity(0, "a cat", 0, 5, mask, BOX))  # a row dict, as read from a shard
    original = np.asarray(image).astype(int)
    drawn = np.asarray(gallery.draw_overlay(image, [entity])).astype(int)
    assert drawn.shape == original.shape

    color = np.array(gallery.entity_color(0))
    centre = drawn[35, 40]  # inside the disc, below the label
    assert np.abs(centre - original[35, 40]).sum() > 30
    assert np.abs(centre - color).sum() < np.abs(original[35, 40] - color).sum()  # pulled towards the colour
    assert np.array_equal(drawn[47, 23], original[47, 23])  # inside the box, outside the mask: untouched
    assert np.array_equal(drawn[56:, :60], original[56:, :60])  # well below the box
    assert np.array_equal(drawn[30:, :15], original[30:, :15])  # well left of the box, below its label
    assert not np.array_equal(drawn[10, 25:55], original[10, 25:55])  # the top edge is outlined


def test_draw_overlay_refuses_a_mask_of_another_size():
    mask = np.ones((H // 2, W // 2), bool)
    entity = {
        "text": "x", "box": [0, 0, 4, 4], "box_score": 0.5, "mask_score": 0.5,
        "mask": {"size": [H // 2, W // 2],
                 "counts": mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()},
    }  # fmt: skip
    with pytest.raises(ValueError, match="mask is"):
        gallery.draw_overlay(Image.new("RGB", (W, H)), [entity])
