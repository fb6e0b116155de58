import dataclasses

import numpy as np
import pytest
import torch

from segmentation.models import SegmentationModel, load_segmentation_model
from segmentation.segment import MaskPrediction, scale_boxes, segment_batch
from unimo_g.pipeline_config import ModelRuntimeConfig, SegmentationConfig

CONFIG = SegmentationConfig(model="tiny", seed=0, runtime=ModelRuntimeConfig(batch_size=4))
SIZES = [(40, 60), (77, 33), (50, 50), (20, 90), (64, 64)]  # (H, W)
BOXES = [
    [[5, 5, 30, 30], [0, 0, 60, 40]],
    [],
    [[3, 10, 30, 70.5]],
    [[10, 2, 80, 18], [0, 0, 5, 5], [40.5, 5.25, 60, 15]],
    [[10, 10, 50, 50]],
]


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    return load_segmentation_model(CONFIG)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


@pytest.fixture(scope="module")
def boxes() -> list[np.ndarray]:
    return [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in BOXES]


@pytest.fixture(scope="module")
def together(model, images, boxes) -> list[list[MaskPrediction]]:
    return segment_batch(model, images, boxes, CONFIG)


def _assert_same(a: list[MaskPrediction], b: list[MaskPrediction]) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.mask, q.mask)
        assert p.score == pytest.approx(q.score, abs=1e-5)


def test_one_mask_per_box_at_the_original_size(together, images, boxes):
    assert len(together) == len(images)
    for image, image_boxes, predictions in zip(images, boxes, together):
        assert len(predictions) == len(image_boxes)
        for prediction in predictions:
            assert prediction.mask.dtype == bool and prediction.mask.shape == image.shape[:2]
            assert isinstance(prediction.score, float)
    assert together[1] == []
    # random weights still see the image: some mask is neither empty nor full
    assert any(0 < p.mask.mean() < 1 for predictions in together for p in predictions)


def test_batch_composition_does_not_change_results(model, images, boxes, together):
    for index in range(len(images)):
        _assert_same(segment_batch(model, [images[index]], [boxes[index]], CONFIG)[0], together[index])
    order = [4, 2, 0, 3, 1]
    shuffled = segment_batch(model, [images[i] for i in order], [boxes[i] for i in order], CONFIG)
    for position, index in enumerate(order):
        _assert_same(shuffled[position], together[index])
    small_chunks = dataclasses.replace(CONFIG, runtime=ModelRuntimeConfig(batch_size=1))
    for got, expected in zip(segment_batch(model, images, boxes, small_chunks), together):
        _assert_same(got, expected)


def test_masks_depend_on_the_image(model, images, together):
    other = images[4][::-1].copy()
    flipped = segment_batch(model, [other], [np.array([[10, 10, 50, 50]], float)], CONFIG)[0]
    assert not np.array_equal(flipped[0].mask, together[4][0].mask)


def test_matches_sams_own_single_pass(model, images, boxes, together):
    """Embedding once and decoding per image equals the processor + full forward path."""
    index = 3
    inputs = model.processor(
        images=[images[index]], input_boxes=[boxes[index].tolist()], return_tensors="pt",
        input_data_format="channels_last",
    )
    with torch.inference_mode():
        outputs = model.model(
            pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"].float(), multimask_output=False
        )
    masks = model.processor.post_process_masks(
        outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"], mask_threshold=0.0
    )[0][:, 0].numpy()
    for k, prediction in enumerate(together[index]):
        np.testing.assert_array_equal(prediction.mask, masks[k])
        assert prediction.score == pytest.approx(outputs.iou_scores[0, k, 0].item(), abs=1e-5)


def test_box_scaling_matches_the_processor(model, images, boxes):
    index = 3
    inputs = model.processor(
        images=[images[index]], input_boxes=[boxes[index].tolist()], return_tensors="pt",
        input_data_format="channels_last",
    )
    resized = tuple(int(v) for v in inputs["reshaped_input_sizes"][0])
    ours = scale_boxes(boxes[index], images[index].shape[:2], resized)
    np.testing.assert_allclose(ours, inputs["input_boxes"][0].numpy(), rtol=1e-12)


def test_mask_threshold_is_applied_to_the_logits(model, images, boxes, together):
    strict = segment_batch(model, images, boxes, dataclasses.replace(CONFIG, mask_threshold=0.5))
    never = segment_batch(model, images[:1], boxes[:1], dataclasses.replace(CONFIG, mask_threshold=1e9))
    assert all(not p.mask.any() for p in never[0])
    changed = False
    for loose_predictions, strict_predictions in zip(together, strict):
        for loose, tight in zip(loose_predictions, strict_predictions):
            assert not (tight.mask & ~loose.mask).any()  # a higher threshold only removes pixels
            assert tight.score == loose.score
            changed |= not np.array_equal(tight.mask, loose.mask)
    assert changed


def test_bf16_runs_and_keeps_the_output_types(images, boxes):
    config = dataclasses.replace(CONFIG, runtime=ModelRuntimeConfig(dtype="bf16"))
    result = segment_batch(load_segmentation_model(config), images[:2], boxes[:2], config)
    assert [len(r) for r in result] == [2, 0]
    assert result[0][0].mask.shape == images[0].shape[:2] and isinstance(result[0][0].score, float)


def test_empty_batch_and_bad_inputs(model, images, boxes):
    assert segment_batch(model, [], [], CONFIG) == []
    assert segment_batch(model, images[:1], [np.zeros((0, 4))], CONFIG) == [[]]
    with pytest.raises(ValueError, match="2 images but 1"):
        segment_batch(model, images[:2], boxes[:1], CONFIG)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        segment_batch(model, images[:1], [np.zeros((2, 3))], CONFIG)
    with pytest.raises(ValueError, match="uint8"):
        segment_batch(model, [images[0].astype(np.float32)], boxes[:1], CONFIG)
    with pytest.raises(ValueError, match="finite"):
        segment_batch(model, images[:1], [np.array([[0, 0, np.nan, 5]])], CONFIG)


def test_only_images_with_boxes_are_encoded_in_chunks_of_batch_size(model, images, boxes):
    batch_sizes = []
    hook = model.model.vision_encoder.register_forward_hook(
        lambda module, args, output: batch_sizes.append(args[0].shape[0])
    )
    batched = dataclasses.replace(CONFIG, forward="batch")
    try:
        segment_batch(model, images, boxes, batched)  # 4 of 5 images have boxes, batch_size 4
        segment_batch(model, images, boxes, dataclasses.replace(batched, runtime=ModelRuntimeConfig(batch_size=3)))
        segment_batch(model, images[1:2], boxes[1:2], batched)
        segment_batch(model, images, boxes, CONFIG)  # forward: image (the default), one image per forward
    finally:
        hook.remove()
    assert batch_sizes == [4, 3, 1, 1, 1, 1, 1]
