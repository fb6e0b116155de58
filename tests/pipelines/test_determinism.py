"""Rows do not depend on the batch: with `forward: image` (the default) every model forward sees one
image, so every tensor shape and value depends on that image alone and its row is bit-identical in
any batch. Checked at the published input sizes (Grounding DINO 800 / 1333 on its canvases, SAM
1024) with tiny weights: the full-size models cost minutes per batch on CI's CPUs
(`python -m bench.determinism --preset full` measures those, BENCHMARKS.md)."""

import dataclasses

import numpy as np
import pytest

from grounding.detect import ground_batch_with_reasons
from grounding.models import canvas_buckets, load_grounding_model
from grounding.tiny import grounding_dino_tiny_image_processor
import torch
from transformers import SamModel

from segmentation.models import load_segmentation_model, sam_vit_base_processor, tiny_sam_config
from segmentation.segment import segment_batch
from tests.grounding.test_detect import OPEN, natural_image, phrases_of, random_image
from unimo_g.pipeline_config import SegmentationConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAPTION = "two dogs and a cat near an old wooden table under the green trees"
PHRASES = phrases_of(CAPTION, "two dogs", "a cat", "an old wooden table", "the green trees")
# square, 4:3, 16:9, portrait 3:4, 2:1: every canvas but the tall one, 16:9 and 2:1 sharing 800 x 1333
SHAPES = [(300, 300), (240, 320), (180, 320), (320, 240), (160, 320)]


@pytest.fixture(scope="module")
def published_grounding():
    """Tiny Grounding DINO weights behind the published preprocessing (shortest 800, longest 1333)."""
    model = load_grounding_model(OPEN)
    processor = grounding_dino_tiny_image_processor()
    resize, canvases = canvas_buckets(processor.size, OPEN.canvas_aspects)
    return dataclasses.replace(model, image_processor=processor, resize=resize, canvases=canvases)


def _batch_sizes(module, run):
    sizes = []
    handle = module.register_forward_pre_hook(
        lambda _, args, kwargs: sizes.append((args[0] if args else kwargs["pixel_values"]).shape), with_kwargs=True
    )
    try:
        return run(), sizes
    finally:
        handle.remove()


def test_grounding_rows_are_bit_identical_in_any_batch(published_grounding):
    images = [natural_image(*shape) if k % 2 else random_image(k, *shape) for k, shape in enumerate(SHAPES)]
    phrases = [PHRASES] * len(images)
    together, sizes = _batch_sizes(
        published_grounding.model, lambda: ground_batch_with_reasons(published_grounding, images, phrases, None, OPEN)
    )
    assert all(shape[0] == 1 for shape in sizes) and len(sizes) == len(images)  # one image per forward
    assert {tuple(shape[2:]) for shape in sizes} == {(800, 800), (800, 1067), (1067, 800), (800, 1333)}
    assert sum(len(found) for found, _ in together) > 0
    for i, image in enumerate(images):
        assert ground_batch_with_reasons(published_grounding, [image], [PHRASES], None, OPEN) == [together[i]]
    # forward: canvas batches each canvas group: fewer forwards, one per canvas
    canvas = dataclasses.replace(OPEN, forward="canvas")
    _, grouped = _batch_sizes(
        published_grounding.model, lambda: ground_batch_with_reasons(published_grounding, images, phrases, None, canvas)
    )
    assert sorted(shape[0] for shape in grouped) == [1, 1, 1, 2]


def test_sam_masks_are_bit_identical_in_any_batch():
    config = SegmentationConfig(model="tiny", seed=0)
    assert config.forward == "image"
    sam_config = tiny_sam_config()  # tiny widths on SAM's published 1024 px canvas (a 64 x 64 grid)
    sam_config.vision_config.image_size = sam_config.prompt_encoder_config.image_size = 1024
    sam_config.prompt_encoder_config.image_embedding_size = 1024 // 16
    torch.manual_seed(0)
    model = dataclasses.replace(
        load_segmentation_model(config), model=SamModel(sam_config).eval(), processor=sam_vit_base_processor()
    )
    images = [random_image(10 + k, *shape) for k, shape in enumerate(SHAPES[1:4])]
    boxes = [np.array([[10, 10, 100, 90], [50, 40, 150, 120]], dtype=np.float32)] * len(images)
    together, sizes = _batch_sizes(model.model.vision_encoder, lambda: segment_batch(model, images, boxes, config))
    assert [shape[0] for shape in sizes] == [1] * len(images)  # one image per encoder forward
    batch = dataclasses.replace(config, forward="batch")
    _, batched = _batch_sizes(model.model.vision_encoder, lambda: segment_batch(model, images, boxes, batch))
    assert [shape[0] for shape in batched] == [len(images)]
    for i, image in enumerate(images):
        [alone] = segment_batch(model, [image], [boxes[i]], config)
        for a, b in zip(together[i], alone, strict=True):
            assert np.array_equal(a.mask, b.mask) and a.score == b.score
