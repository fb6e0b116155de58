import numpy as np
import pytest

from segmentation.geometry import box_area, box_fill, mask_filter_reason
from unimo_g.pipeline_config import SegmentationConfig


def _mask(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def test_box_fill_counts_only_the_mask_inside_the_box():
    mask = _mask((10, 10), slice(2, 6), slice(2, 6))  # 16 px
    assert box_fill(mask, [2, 2, 6, 6]) == 1.0
    assert box_fill(mask, [2, 2, 10, 10]) == pytest.approx(16 / 64)
    assert box_fill(mask, [4, 4, 8, 8]) == pytest.approx(4 / 16)  # half the mask lies outside
    assert box_fill(np.ones((10, 10), bool), [0, 0, 5, 10]) == 1.0


def test_box_fill_weighs_pixels_cut_by_the_box_edge():
    mask = _mask((4, 4), slice(0, 4), slice(0, 1))  # column 0 only
    assert box_fill(mask, [0.5, 0, 2, 4]) == pytest.approx(0.5 / 1.5)
    assert box_fill(np.ones((4, 4), bool), [0.3, 0.7, 2.9, 3.2]) == pytest.approx(1.0)


def test_box_fill_of_empty_or_outside_boxes_is_zero():
    mask = np.ones((5, 5), bool)
    assert box_fill(mask, [2, 2, 2, 4]) == 0.0
    assert box_fill(mask, [3, 3, 1, 1]) == 0.0
    assert box_fill(mask, [10, 10, 12, 12]) == 0.0
    assert box_area([3, 3, 1, 1]) == 0.0


def test_each_filter_reports_its_reason():
    config = SegmentationConfig(min_mask_score=0.5, min_mask_area_ratio=0.1, min_box_fill=0.6)
    box = [0, 0, 10, 10]  # area 100
    assert mask_filter_reason(80, box, 0.9, 800, config) is None
    assert mask_filter_reason(0, box, 0.9, 800, config) == "empty_mask"
    assert mask_filter_reason(80, box, 0.4, 800, config) == "mask_score"
    assert mask_filter_reason(80, box, 0.9, 801, config) == "mask_area"
    assert mask_filter_reason(59, box, 0.9, 500, config) == "box_fill"
    assert mask_filter_reason(0, box, 0.0, 800, config) == "empty_mask"  # first failure wins
    assert mask_filter_reason(59, box, 0.1, 10_000, config) == "mask_score"


def test_thresholds_are_inclusive_minimums():
    config = SegmentationConfig(min_mask_score=0.5, min_mask_area_ratio=0.1, min_box_fill=0.6)
    assert mask_filter_reason(60, [0, 0, 10, 10], 0.5, 600, config) is None


def test_measured_fill_overrides_the_area_ratio():
    config = SegmentationConfig(min_box_fill=0.6)
    # a mask of 90 px of which only 30 lie inside its 100 px box
    assert mask_filter_reason(90, [0, 0, 10, 10], 0.9, 1000, config) is None
    assert mask_filter_reason(90, [0, 0, 10, 10], 0.9, 1000, config, fill=0.3) == "box_fill"
    assert mask_filter_reason(90, [5, 5, 5, 9], 0.9, 1000, config) == "box_fill"  # zero-area box


def test_default_config_passes_only_on_box_fill():
    config = SegmentationConfig()
    assert mask_filter_reason(1, [0, 0, 1, 1], 0.0, 10**6, config) is None
    assert mask_filter_reason(59, [0, 0, 10, 10], 0.0, 10**6, config) == "box_fill"
