import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from grounding.detect import Grounding, ground_batch
from grounding.models import load_grounding_model
from grounding.preprocess import image_canvas
from unimo_g.config_tools import load_config
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.records import Phrase

ROOT = Path(__file__).resolve().parents[2]
TINY = load_config(PipelineConfig, ROOT / "configs" / "tiny.yaml").grounding
# every phrase keeps its best box: no shape filter, no NMS, only identical boxes are one object
OPEN = dataclasses.replace(TINY, min_box_area_ratio=0.0, max_box_area_ratio=1.0, min_box_aspect_ratio=1e-6,
                           max_box_aspect_ratio=1e6, nms_iou=1.0, same_object_iou=1.0)


@pytest.fixture(scope="module")
def model():
    return load_grounding_model(TINY)


def phrases_of(caption, *texts):
    out, cursor = [], 0
    for text in texts:
        start = caption.index(text, cursor)
        out.append(Phrase(text, start, start + len(text)))
        cursor = start + len(text)
    return tuple(out)


def natural_image(height=240, width=320):
    """Sky gradient, grass, a red ball and a brown box."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = 90 + 60 * yy // height
    image[..., 1] = 140 + 80 * xx // width
    image[..., 2] = 235
    image[height * 2 // 3 :] = (60, 150, 50)
    ball = (yy - height * 0.7) ** 2 + (xx - width * 0.3) ** 2 < (height / 8) ** 2
    image[ball] = (210, 30, 30)
    image[height // 3 : height * 3 // 4, width * 6 // 10 : width * 9 // 10] = (120, 80, 40)
    return image


def random_image(seed, height, width):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


CAPTION = "a red ball and a brown box on the green grass"
PHRASES = phrases_of(CAPTION, "a red ball", "a brown box", "the green grass")


def assert_well_formed(groundings, image, num_phrases, config):
    height, width = image.shape[:2]
    for g in groundings:
        assert isinstance(g, Grounding) and isinstance(g.score, float) and 0.0 <= g.score <= 1.0
        assert 0 <= g.phrase < num_phrases
        x1, y1, x2, y2 = g.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        area = (x2 - x1) * (y2 - y1) / (width * height)
        assert config.min_box_area_ratio <= area <= config.max_box_area_ratio
    keys = [(g.phrase, -g.score) for g in groundings]
    assert keys == sorted(keys)


def test_tiny_preset_grounds_a_natural_image(model):
    image = natural_image()
    [groundings] = ground_batch(model, [image], [PHRASES], None, TINY)
    assert len(groundings) >= 1
    assert_well_formed(groundings, image, len(PHRASES), TINY)
    assert len({g.phrase for g in groundings}) == len(groundings)  # top1: one box per phrase


def test_every_phrase_gets_its_best_box_without_filters(model):
    image = random_image(1, 150, 200)
    [groundings] = ground_batch(model, [image], [PHRASES], None, OPEN)
    assert [g.phrase for g in groundings] == [0, 1, 2]
    assert_well_formed(groundings, image, 3, OPEN)


def test_scores_are_the_max_over_each_phrase_own_tokens(model):
    """Recomputed from a raw forward with hand-picked token positions (no positive map)."""
    image = random_image(2, 120, 160)
    phrases = phrases_of("red ball and dog", "red ball", "dog")
    [groundings] = ground_batch(model, [image], [phrases], None, OPEN)
    text = model.tokenizer(["red ball . dog ."], return_tensors="pt")
    tokens = model.tokenizer.convert_ids_to_tokens(text["input_ids"][0])
    assert tokens == ["[CLS]", "red", "ball", ".", "dog", ".", "[SEP]"]
    canvas = image_canvas(model, image)
    assert canvas == (128, 171)  # 120 x 160 resizes to 128 x 170
    pixels = model.image_processor(
        [image], size=model.resize, pad_size={"height": canvas[0], "width": canvas[1]},
        input_data_format="channels_last", return_tensors="pt",
    )
    with torch.inference_mode():
        out = model.model(**pixels, **text)
    probs = torch.sigmoid(out.logits[0].double()).numpy()  # (Q, 256)
    for g, tokens in zip(groundings, ([1, 2], [4])):
        slot_scores = probs[:, tokens].max(axis=1)
        best = int(np.argmax(slot_scores))
        assert g.score == round(float(slot_scores[best]), OPEN.score_decimals)  # rounded for batch invariance
        cx, cy, w, h = out.pred_boxes[0, best].double().numpy()
        corners = [(cx - w / 2) * 160, (cy - h / 2) * 120, (cx + w / 2) * 160, (cy + h / 2) * 120]
        expected = np.clip(corners, 0, [160, 120, 160, 120])
        np.testing.assert_allclose(g.box, expected, atol=10.0**-OPEN.box_decimals)


def normalised(groundings, image):
    height, width = image.shape[:2]
    return (
        [g.phrase for g in groundings],
        np.array([np.array(g.box) / [width, height, width, height] for g in groundings]).reshape(-1, 4),
        np.array([g.score for g in groundings]),
    )


def assert_same(a, b, image):
    ids_a, boxes_a, scores_a = normalised(a, image)
    ids_b, boxes_b, scores_b = normalised(b, image)
    assert ids_a == ids_b
    np.testing.assert_allclose(boxes_a, boxes_b, atol=1e-5)
    np.testing.assert_allclose(scores_a, scores_b, atol=1e-5)


def test_batch_composition_does_not_change_results(model):
    # sizes: landscape, portrait, larger than the canvas, small; one image needs two text queries
    config = dataclasses.replace(TINY, max_text_len=10, plural="all", max_boxes_per_phrase=2)
    images = [random_image(3, 150, 200), natural_image(300, 120), random_image(4, 480, 640), random_image(5, 40, 60)]
    caption = "two dogs and a cat near an old wooden table under the green trees"
    long = phrases_of(caption, "two dogs", "a cat", "an old wooden table", "the green trees")
    phrases = [long, PHRASES[:1], PHRASES, long[1:3]]
    plural = [(True, False, False, True), (False,), (False, False, False), (False, False)]
    together = ground_batch(model, images, phrases, plural, config)
    assert sum(len(g) for g in together) > 0
    for i, image in enumerate(images):
        [alone] = ground_batch(model, [image], [phrases[i]], [plural[i]], config)
        assert_same(together[i], alone, image)
        assert_well_formed(together[i], image, len(phrases[i]), config)
    reordered = ground_batch(model, images[::-1], phrases[::-1], plural[::-1], config)
    for i, image in enumerate(images):
        assert_same(together[i], reordered[len(images) - 1 - i], image)


def test_split_queries_still_ground_every_phrase(model):
    config = dataclasses.replace(OPEN, max_text_len=8)  # one or two phrases per query
    caption = "two dogs and a cat near an old wooden table under the green trees"
    phrases = phrases_of(caption, "two dogs", "a cat", "an old wooden table", "the green trees")
    [groundings] = ground_batch(model, [natural_image()], [phrases], None, config)
    assert [g.phrase for g in groundings] == [0, 1, 2, 3]


def test_plural_phrases_may_keep_several_boxes(model):
    config = dataclasses.replace(OPEN, plural="all", max_boxes_per_phrase=3, nms_iou=0.9)
    phrases = phrases_of("two dogs and a cat", "two dogs", "a cat")
    [groundings] = ground_batch(model, [random_image(6, 200, 200)], [phrases], [(True, False)], config)
    counts = [sum(g.phrase == k for g in groundings) for k in range(2)]
    assert counts == [3, 1]


def test_thresholds_above_every_score_keep_nothing(model):
    config = dataclasses.replace(OPEN, box_threshold=1.0)
    assert ground_batch(model, [natural_image()], [PHRASES], None, config) == [[]]
    config = dataclasses.replace(OPEN, text_threshold=1.0)
    assert ground_batch(model, [natural_image()], [PHRASES], None, config) == [[]]


def test_images_without_phrases(model):
    images = [natural_image(), random_image(7, 64, 64), natural_image(100, 100)]
    results = ground_batch(model, images, [(), PHRASES[:2], ()], None, TINY)
    assert results[0] == [] and results[2] == []
    assert results[1] == ground_batch(model, images[1:2], [PHRASES[:2]], None, TINY)[0]
    # no phrase anywhere: the model is never called
    no_model = dataclasses.replace(model, model=None)
    assert ground_batch(no_model, images[:2], [(), ()], None, TINY) == [[], []]
    assert ground_batch(no_model, [], [], None, TINY) == []


def test_canvas_aspects_set_the_canvases():
    config = dataclasses.replace(TINY, canvas_aspects=(1.0,))
    square = load_grounding_model(config)
    assert square.canvases == ((128, 128), (128, 192), (192, 128))
    assert square.resize == {"shortest_edge": 128, "longest_edge": 192}  # never shrunk
    image = random_image(8, 100, 300)
    assert image_canvas(square, image) == (128, 192)  # resized to 64 x 192
    [groundings] = ground_batch(square, [image], [PHRASES], None, dataclasses.replace(OPEN, canvas_aspects=(1.0,)))
    assert_well_formed(groundings, image, 3, OPEN)


def test_bad_inputs_raise(model):
    image = natural_image()
    with pytest.raises(ValueError, match="2 images but 1"):
        ground_batch(model, [image, image], [PHRASES], None, TINY)
    with pytest.raises(ValueError, match="uint8 RGB"):
        ground_batch(model, [image[..., 0]], [PHRASES], None, TINY)
    with pytest.raises(ValueError, match="one flag per phrase"):
        ground_batch(model, [image], [PHRASES], [(True,)], TINY)
