import numpy as np
import pytest

from unimo_g.records import Mask
from unimo_g.rle import decode_mask, encode_mask, mask_area


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 48), (123, 301)])
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_round_trip(shape, density):
    mask = np.random.default_rng(0).random(shape) < density
    rle = encode_mask(mask)
    assert isinstance(rle, Mask) and rle.size == shape and isinstance(rle.counts, str)
    decoded = decode_mask(rle.size, rle.counts)
    assert decoded.dtype == bool and decoded.shape == shape
    np.testing.assert_array_equal(decoded, mask)
    assert mask_area(rle.size, rle.counts) == int(mask.sum())


def test_column_major_and_geometry():
    mask = np.zeros((4, 6), bool)
    mask[1:3, 0:2] = True  # a 2x2 block at the left, rows 1-2
    rle = encode_mask(mask)
    assert rle.size == (4, 6)
    # column-major runs: 1 background, 2 fg, 2 bg, 2 fg, then the rest background
    assert decode_mask([4, 6], rle.counts.encode("ascii"))[1:3, 0:2].all()
    assert decode_mask(rle.size, rle.counts).sum() == 4


def test_counts_for_another_size_are_refused():
    rle = encode_mask(np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="4x5"):
        decode_mask((4, 5), rle.counts)


@pytest.mark.parametrize("size", [(0, 3), (3,), (2, -1)])
def test_bad_size_is_refused(size):
    with pytest.raises(ValueError, match="size"):
        decode_mask(size, "0")


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="alphabet"):
        decode_mask((2, 2), "\x01")


def test_encode_refuses_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        encode_mask(np.zeros((2, 2, 2), bool))
