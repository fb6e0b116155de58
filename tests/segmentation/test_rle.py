import numpy as np
import pytest
from pycocotools import mask as coco_mask

from segmentation.rle import decode_mask, encode_mask, mask_area
from unimo_g.records import Mask


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (5, 3), (17, 31), (64, 48)])
def test_round_trip_is_exact_for_odd_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    for mask in (np.zeros(shape, bool), np.ones(shape, bool), rng.random(shape) > 0.5):
        rle = encode_mask(mask)
        assert isinstance(rle, Mask)
        assert rle.size == shape
        assert isinstance(rle.counts, str) and rle.counts.isascii()
        decoded = decode_mask(rle)
        assert decoded.dtype == bool and decoded.shape == shape
        np.testing.assert_array_equal(decoded, mask)
        assert mask_area(rle) == mask_area(mask) == int(mask.sum())


def test_counts_are_coco_column_major():
    mask = np.zeros((2, 3), bool)
    mask[1, 0] = True  # column-major order: (0,0) off, (1,0) on, then 4 off
    expected = coco_mask.frPyObjects({"size": [2, 3], "counts": [1, 1, 4]}, 2, 3)
    assert encode_mask(mask).counts == expected["counts"].decode("ascii")


def test_non_contiguous_views_encode_their_values():
    base = np.random.default_rng(0).random((6, 9)) > 0.5
    view = base.T[::2]  # (5, 6) strided view
    np.testing.assert_array_equal(decode_mask(encode_mask(view)), view)


def test_empty_and_wrong_rank_masks_are_refused():
    with pytest.raises(ValueError, match="at least one pixel"):
        encode_mask(np.zeros((0, 4), bool))
    with pytest.raises(ValueError, match="2-D"):
        encode_mask(np.zeros((2, 2, 1), bool))
