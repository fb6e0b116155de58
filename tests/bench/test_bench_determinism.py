"""`bench.determinism.compare` counts what differs between two runs' rows."""

import dataclasses

import numpy as np

from bench.determinism import compare
from unimo_g.records import Entity, Sample
from unimo_g.rle import encode_mask


def _entity(phrase, box, mask):
    return Entity(phrase=phrase, text="x", start=0, end=1, box=box, box_score=0.5, mask=encode_mask(mask),
                  mask_area=int(mask.sum()), mask_score=0.5, image=b"", image_format="PNG")


def test_compare_counts_boxes_masks_and_entities():
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:6, 2:6] = True
    moved = mask.copy()
    moved[6, 2] = True
    row = Sample(id="a", source_key="a", url=None, sha256="", image=b"", image_format="PNG", width=8, height=8,
                 caption="x", entities=(_entity(0, (1.0, 1.0, 6.0, 6.0), mask), _entity(1, (0.0, 0.0, 4.0, 4.0), mask)))
    other = dataclasses.replace(row, entities=(_entity(0, (1.0, 1.0, 6.01, 6.0), moved), _entity(2, (0, 0, 4, 4), mask)))
    assert compare([row], [row])["rows_not_identical"] == 0
    figures = compare([row], [other])
    assert figures["rows_not_identical"] == 1 and figures["entities_matched"] == 1
    assert figures["boxes_differ"] == 1 and figures["max_box_diff_px"] == 0.01
    assert figures["masks_differ"] == 1 and figures["mask_pixels_differ_total"] == 1
    assert figures["entities_lost_in_batch"] == 1 and figures["entities_gained_in_batch"] == 1
