import dataclasses

import numpy as np
import pytest

from grounding.boxes import (
    box_area,
    box_iou,
    boxes_per_phrase,
    cxcywh_to_xyxy,
    nms,
    select_boxes,
    select_boxes_with_reasons,
    shape_mask,
)
from unimo_g.pipeline_config import GroundingConfig

OPEN = GroundingConfig(min_box_area_ratio=0.0, max_box_area_ratio=1.0, min_box_aspect_ratio=0.01,
                       max_box_aspect_ratio=100.0, nms_iou=0.5)


def test_cxcywh_to_xyxy_scales_and_clamps():
    boxes = np.array([[0.5, 0.5, 0.5, 0.5], [0.0, 1.0, 0.4, 0.4], [0.5, 0.5, 2.0, 2.0]])
    out = cxcywh_to_xyxy(boxes, width=200, height=100)
    np.testing.assert_allclose(out, [[50, 25, 150, 75], [0, 80, 40, 100], [0, 0, 200, 100]])


def test_area_and_iou():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]])
    b = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 5, 5]])
    np.testing.assert_allclose(box_area(np.array([[0, 0, 10, 5], [3, 3, 1, 1]])), [50, 0])
    np.testing.assert_allclose(box_iou(a, b), [[1, 0, 0], [25 / 175, 0, 0]])


def test_nms_greedy_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = np.array([0.5, 0.9, 0.3, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 1.0).tolist() == [1, 3, 0, 2]  # nothing suppressed
    assert nms(boxes, scores, 1.0, limit=2).tolist() == [1, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_shape_mask_area_and_aspect():
    boxes = np.array([
        [0, 0, 10, 10],  # 1% of the image
        [0, 0, 50, 50],  # 25%
        [0, 0, 100, 90],  # 90%
        [0, 0, 100, 5],  # width / height 20
        [10, 10, 10, 60],  # zero width
        [0, 0, 10, 40],  # width / height 0.25
    ])
    keep = shape_mask(boxes, 100, 100, min_area_ratio=0.01, max_area_ratio=0.7, min_aspect_ratio=0.3,
                      max_aspect_ratio=3.0)
    assert keep.tolist() == [True, True, False, False, False, False]
    assert shape_mask(boxes, 100, 100, 0.0, 1.0, 0.2, 30.0).tolist() == [True, True, True, True, False, True]


def test_default_selection_bounds():
    config = GroundingConfig()
    assert (config.min_box_aspect_ratio, config.max_box_aspect_ratio) == (0.3, 3.0)
    assert (config.min_box_area_ratio, config.max_box_area_ratio) == (0.08, 0.7)
    assert (config.same_object_iou, config.max_entities, config.plural, config.max_boxes_per_phrase) == (
        0.75, 8, "top1", 1)


def test_plural_and_max_boxes_must_agree():
    with pytest.raises(ValueError, match="plural all needs max_boxes_per_phrase >= 2"):
        GroundingConfig(plural="all", max_boxes_per_phrase=1)
    with pytest.raises(ValueError, match="plural top1 keeps one box"):
        GroundingConfig(plural="top1", max_boxes_per_phrase=3)
    with pytest.raises(ValueError, match="min_box_aspect_ratio"):
        GroundingConfig(min_box_aspect_ratio=4.0)


def test_boxes_per_phrase_rule():
    assert boxes_per_phrase(True, "top1", 3) == 1
    assert boxes_per_phrase(False, "all", 3) == 1
    assert boxes_per_phrase(True, "all", 3) == 3
    with pytest.raises(ValueError):
        boxes_per_phrase(True, "some", 3)


def candidates():
    # phrase 0 (plural): three separate objects and a duplicate of the best one
    # phrase 1 (singular): two boxes, the best overlapping phrase 0's best
    phrase_ids = np.array([0, 0, 0, 0, 1, 1])
    boxes = np.array([
        [0, 0, 20, 20], [30, 0, 50, 20], [60, 0, 80, 20], [1, 0, 21, 20],
        [0, 0, 20, 19], [0, 50, 40, 90],
    ], dtype=float)
    scores = np.array([0.9, 0.7, 0.6, 0.85, 0.8, 0.4])
    return phrase_ids, boxes, scores


def test_plural_top1_keeps_one_box_per_phrase():
    ids, boxes, scores = candidates()
    keep, reasons = select_boxes_with_reasons(ids, boxes, scores, [True, False], 100, 100, OPEN)
    # phrase 1's best box is phrase 0's better box of the same object (IoU 0.95): it goes
    assert keep.tolist() == [0] and reasons == {1: "same_object"}


def test_plural_all_keeps_distinct_boxes_up_to_the_limit():
    ids, boxes, scores = candidates()
    config = dataclasses.replace(OPEN, plural="all", max_boxes_per_phrase=3)
    assert select_boxes(ids, boxes, scores, [True, False], 100, 100, config).tolist() == [0, 1, 2]
    # the duplicate (index 3) never takes a slot; the singular phrase still keeps one box at most
    two = dataclasses.replace(config, max_boxes_per_phrase=2)
    assert select_boxes(ids, boxes, scores, [True, False], 100, 100, two).tolist() == [0, 1]
    singular = select_boxes(ids, boxes, scores, [False, False], 100, 100, config)
    assert singular.tolist() == [0]


def test_shape_filter_runs_before_the_pick():
    ids, boxes, scores = candidates()
    config = dataclasses.replace(OPEN, min_box_area_ratio=0.05)  # 20x20 boxes are 4% of the image
    keep, reasons = select_boxes_with_reasons(ids, boxes, scores, [True, False], 100, 100, config)
    # phrase 1's best box fails; it falls back to its 40x40 box. Phrase 0 has no passing box.
    assert keep.tolist() == [5] and reasons == {0: "shape_filter"}


def test_nested_entities_are_kept_unless_the_same_object():
    ids = np.array([0, 1, 2])
    boxes = np.array([[10, 10, 60, 90], [15, 25, 55, 90], [11, 10, 60, 88]], dtype=float)  # woman, dress, person
    scores = np.array([0.8, 0.7, 0.6])
    keep, reasons = select_boxes_with_reasons(ids, boxes, scores, [False] * 3, 100, 100, OPEN)
    assert box_iou(boxes[0], boxes[1])[0, 0] == pytest.approx(0.65)  # above the 0.5 NMS of old
    assert box_iou(boxes[0], boxes[2])[0, 0] > 0.75
    assert keep.tolist() == [0, 1] and reasons == {2: "same_object"}


def test_entity_cap_keeps_the_best_scores():
    ids = np.array([0, 1, 2, 3])
    boxes = np.array([[0, 0, 20, 20], [30, 0, 50, 20], [60, 0, 80, 20], [0, 50, 20, 70]], dtype=float)
    scores = np.array([0.5, 0.9, 0.3, 0.7])
    config = dataclasses.replace(OPEN, max_entities=2)
    keep, reasons = select_boxes_with_reasons(ids, boxes, scores, [False] * 4, 100, 100, config)
    assert keep.tolist() == [1, 3] and reasons == {0: "entity_cap", 2: "entity_cap"}


def test_output_sorted_by_phrase_then_score():
    ids = np.array([1, 0, 1, 0])
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], dtype=float)
    scores = np.array([0.2, 0.3, 0.9, 0.8])
    config = dataclasses.replace(OPEN, plural="all", max_boxes_per_phrase=2)
    assert select_boxes(ids, boxes, scores, [True, True], 100, 100, config).tolist() == [3, 1, 2, 0]
    assert select_boxes(ids[:0], boxes[:0], scores[:0], [], 100, 100, config).tolist() == []
