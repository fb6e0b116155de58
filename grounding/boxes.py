"""Box math for grounding, pure numpy.

Unless stated otherwise boxes are `(N, 4)` float arrays, xyxy in pixels of the EXIF-transposed
original image of size `width` x `height`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from unimo_g.pipeline_config import GroundingConfig


def cxcywh_to_xyxy(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised `(cx, cy, w, h)` in [0, 1] -> xyxy pixels of a `width` x `height` image, clamped.

    `boxes`: `(N, 4)`, fractions of the (unpadded) image. Returns `(N, 4)` float64.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy, w, h = boxes.T
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)  # (N, 4)
    xyxy *= np.array([width, height, width, height], dtype=np.float64)
    np.clip(xyxy[:, 0::2], 0.0, float(width), out=xyxy[:, 0::2])
    np.clip(xyxy[:, 1::2], 0.0, float(height), out=xyxy[:, 1::2])
    return xyxy


def box_area(boxes: np.ndarray) -> np.ndarray:
    """`(N,)` areas; boxes with x2 < x1 or y2 < y1 have area 0."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`(N, M)` intersection over union of two box sets (0 where the union is empty)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)  # (N, M)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def shape_mask(
    boxes: np.ndarray,
    width: int,
    height: int,
    min_area_ratio: float,
    max_area_ratio: float,
    min_aspect_ratio: float,
    max_aspect_ratio: float,
) -> np.ndarray:
    """`(N,)` bool: boxes with positive width and height, box area / image area within
    `[min_area_ratio, max_area_ratio]` and box width / height within `[min_aspect_ratio, max_aspect_ratio]`."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    valid = (w > 0) & (h > 0)
    ratio = box_area(boxes) / float(width * height)
    aspect = np.where(valid, w, 1.0) / np.where(valid, h, 1.0)
    return (
        valid & (ratio >= min_area_ratio) & (ratio <= max_area_ratio)
        & (aspect >= min_aspect_ratio) & (aspect <= max_aspect_ratio)
    )


def _score_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties keep input order (deterministic)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, by descending score.

    A box is dropped when its IoU with a kept, higher-scoring box is above `iou_threshold`
    (1.0 keeps everything). Stops after `limit` boxes when given.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    kept: list[int] = []
    for index in _score_order(scores):
        if limit is not None and len(kept) == limit:
            break
        if kept and box_iou(boxes[index], boxes[kept]).max() > iou_threshold:
            continue
        kept.append(int(index))
    return np.asarray(kept, dtype=np.int64)


# Why a phrase with detections kept no box (the outcome tokens of `unimo_g.records.PHRASE_OUTCOMES`).
REASON_SHAPE = "shape_filter"  # every candidate box failed the area or aspect bounds
REASON_SAME_OBJECT = "same_object"  # its boxes were another phrase's better-scoring boxes of the same object
REASON_CAP = "entity_cap"  # the image already had `max_entities` better-scoring entities


def boxes_per_phrase(plural: bool, mode: str, max_boxes_per_phrase: int) -> int:
    """How many boxes a phrase may keep: 1, or `max_boxes_per_phrase` for a plural head in mode `all`."""
    if mode not in ("top1", "all"):
        raise ValueError(f"plural mode must be top1 or all, got {mode!r}")
    return max_boxes_per_phrase if plural and mode == "all" else 1


def _drop_same_objects(picks: np.ndarray, phrase_ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                       iou_threshold: float) -> np.ndarray:
    """Picks (indices) by descending score, without those whose IoU with a better pick of ANOTHER
    phrase reaches `iou_threshold`."""
    kept: list[int] = []
    for index in picks[_score_order(scores[picks])]:
        rivals = [k for k in kept if phrase_ids[k] != phrase_ids[index]]
        if rivals and box_iou(boxes[index], boxes[rivals]).max() >= iou_threshold:
            continue
        kept.append(int(index))
    return np.asarray(kept, dtype=np.int64)


def select_boxes_with_reasons(
    phrase_ids: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    plural: Sequence[bool],
    width: int,
    height: int,
    config: GroundingConfig,
) -> tuple[np.ndarray, dict[int, str]]:
    """Candidate boxes of one image -> (indices of the boxes kept, sorted by (phrase, -score);
    {phrase: reason} for each phrase with candidates that kept none).

    `phrase_ids`: `(N,)` phrase index of each candidate; `boxes`: `(N, 4)` xyxy pixels;
    `scores`: `(N,)`; `plural[k]`: whether phrase `k`'s head noun is plural. In order:
    1. shape filters (`shape_mask` with the area and aspect bounds of `config`) on every candidate,
       so a phrase whose best box fails them falls back to its best passing box (else `shape_filter`);
    2. each phrase keeps its best passing box, or for a plural phrase with `plural: all` up to
       `max_boxes_per_phrase` boxes that do not overlap each other above `nms_iou`;
    3. across phrases, a box whose IoU with a better-scoring box of another phrase reaches
       `same_object_iou` is the same object and goes (`same_object`); nested entities stay;
    4. at most `max_entities` boxes, best scores first (`entity_cap`).
    """
    phrase_ids = np.asarray(phrase_ids, dtype=np.int64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    passing = shape_mask(
        boxes, width, height, config.min_box_area_ratio, config.max_box_area_ratio,
        config.min_box_aspect_ratio, config.max_box_aspect_ratio,
    )
    reasons: dict[int, str] = {}
    picks: list[int] = []
    for phrase in np.unique(phrase_ids).tolist():
        members = np.flatnonzero((phrase_ids == phrase) & passing)
        if len(members) == 0:
            reasons[phrase] = REASON_SHAPE
            continue
        limit = boxes_per_phrase(bool(plural[phrase]), config.plural, config.max_boxes_per_phrase)
        picks.extend(members[nms(boxes[members], scores[members], config.nms_iou, limit)].tolist())
    picked = np.asarray(sorted(picks), dtype=np.int64)
    distinct = _drop_same_objects(picked, phrase_ids, boxes, scores, config.same_object_iou)
    kept = distinct[: config.max_entities]
    kept_phrases = set(phrase_ids[kept].tolist())
    for phrase in set(phrase_ids[picked].tolist()) - kept_phrases:
        reasons[phrase] = REASON_CAP if phrase in set(phrase_ids[distinct].tolist()) else REASON_SAME_OBJECT
    return kept[np.lexsort((-scores[kept], phrase_ids[kept]))], reasons


def select_boxes(
    phrase_ids: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    plural: Sequence[bool],
    width: int,
    height: int,
    config: GroundingConfig,
) -> np.ndarray:
    """The kept indices of `select_boxes_with_reasons`."""
    return select_boxes_with_reasons(phrase_ids, boxes, scores, plural, width, height, config)[0]
