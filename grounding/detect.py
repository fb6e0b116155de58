"""Images + phrases -> per-phrase boxes with Grounding DINO, many images per forward.

Scoring follows the original Grounding DINO `predict` (sigmoid of the token logits; a box is
kept when its maximum over the text tokens passes `box_threshold`; a box belongs to a phrase when
that phrase's tokens pass `text_threshold`), made span-exact: tokens are tied to phrases by
character offsets (`queries.positive_map`), not by decoding labels. For detection slot `q` of a
query and phrase `k` of that query:

    phrase_score[q, k] = max over the tokens t of phrase k of sigmoid(logits[q, t])
    candidate (q, k)  <=>  max_k' phrase_score[q, k'] > box_threshold   (over the query's phrase
                                                                         tokens; delimiters,
                                                                         [CLS], [SEP] excluded)
                      and  phrase_score[q, k] > text_threshold

A candidate's score is `phrase_score[q, k]`. One box may be a candidate of several phrases;
`boxes.select_boxes` then applies the plural rule, the shape filters and NMS across phrases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from grounding.boxes import cxcywh_to_xyxy, select_boxes
from grounding.models import GroundingModel
from grounding.preprocess import preprocess_images
from grounding.queries import TextQuery, build_queries, positive_map
from unimo_g.pipeline_config import GroundingConfig
from unimo_g.records import Phrase


@dataclass(frozen=True)
class Grounding:
    """One box for one phrase: `phrase` indexes the image's phrases; `box` is xyxy in pixels of
    the EXIF-transposed original image; `score` in [0, 1]."""

    phrase: int
    box: tuple[float, float, float, float]
    score: float


def _check_inputs(images, phrases, plural) -> list[tuple[bool, ...]]:
    if len(images) != len(phrases):
        raise ValueError(f"{len(images)} images but {len(phrases)} phrase lists")
    for index, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {index}: expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    if plural is None:
        return [(False,) * len(p) for p in phrases]
    if len(plural) != len(phrases) or any(len(f) != len(p) for f, p in zip(plural, phrases)):
        raise ValueError("plural must hold one flag per phrase of every image")
    return [tuple(bool(x) for x in flags) for flags in plural]


def _pixels(model: GroundingModel, images: Sequence[np.ndarray], preprocess: str):
    """`pixel_values` `(B, 3, H, W)` in `model.dtype` and `pixel_mask` `(B, H, W)` on `model.device`,
    every image padded to `model.canvas = (H, W)`: by torch ops on the device (`tensor`) or by the
    transformers image processor on the CPU (`processor`); the two are equal byte for byte."""
    if preprocess == "tensor":
        return preprocess_images(model, images)
    height, width = model.canvas
    pixels = model.image_processor(
        list(images), size=model.resize, do_pad=True, pad_size={"height": height, "width": width},
        input_data_format="channels_last", return_tensors="pt",
    )
    return pixels["pixel_values"].to(model.device, model.dtype), pixels["pixel_mask"].to(model.device)


def _forward(model: GroundingModel, images: Sequence[np.ndarray], row_image: list[int], texts: list[str], config):
    """Run the model on `len(texts)` rows; row r pairs `images[row_image[r]]` with `texts[r]`.

    Returns probs `(R, Q, T)` (sigmoid of the logits of the T text positions), boxes `(R, Q, 4)`
    normalised cxcywh of the unpadded image, and offsets `(R, T, 2)`.
    """
    pixel_values, pixel_mask = _pixels(model, images, config.runtime.preprocess)  # (B, 3, H, W), (B, H, W)
    index = torch.as_tensor(row_image, dtype=torch.long, device=model.device)
    text = model.tokenizer(
        texts, padding="longest", truncation=True, max_length=config.max_text_len,
        return_offsets_mapping=True, return_tensors="pt",
    )
    offsets = text.pop("offset_mapping").numpy()  # (R, T, 2)
    num_tokens = offsets.shape[1]
    with torch.inference_mode():
        outputs = model.model(
            pixel_values=pixel_values[index],  # (R, 3, H, W)
            pixel_mask=pixel_mask[index],  # (R, H, W)
            **{key: value.to(model.device) for key, value in text.items()},
        )
        # float64: float32 sigmoid saturates to exact ties at 1.0 from logits of ~17 on
        probs = torch.sigmoid(outputs.logits[:, :, :num_tokens].double()).cpu().numpy()  # (R, Q, T)
        boxes = outputs.pred_boxes.float().cpu().numpy()  # (R, Q, 4)
    return probs, boxes, offsets


def _row_candidates(query: TextQuery, probs: np.ndarray, offsets: np.ndarray, config: GroundingConfig):
    """Candidates of one query row: (phrase ids, slot ids, scores); `probs` is `(Q, T)`."""
    token_map = positive_map(offsets, query.spans, probs.shape[1])  # (P, T)
    masked = np.where(token_map[None, :, :], probs[:, None, :], -np.inf)  # (Q, P, T)
    phrase_score = masked.max(axis=2)  # (Q, P); -inf for a phrase truncated away
    slot_score = phrase_score.max(axis=1)  # (Q,)
    keep = (slot_score > config.box_threshold)[:, None] & (phrase_score > config.text_threshold)
    slots, local = np.nonzero(keep)
    return np.asarray(query.phrases, dtype=np.int64)[local], slots, phrase_score[slots, local]


def ground_batch(
    model: GroundingModel,
    images: Sequence[np.ndarray],
    phrases: Sequence[tuple[Phrase, ...]],
    plural: Sequence[Sequence[bool]] | None,
    config: GroundingConfig,
) -> list[list[Grounding]]:
    """Ground every image's phrases; one list of `Grounding` per image, sorted by (phrase, -score).

    `images[i]`: `(H, W, 3)` uint8 RGB, EXIF-transposed; `phrases[i]`: its caption's phrases;
    `plural[i][k]`: whether phrase k's head noun is plural (None: all singular). All text queries of
    all images run in one forward (an image whose phrases need two queries appears twice); every
    image is padded to the model's fixed canvas, so results do not depend on the batch. Images
    without phrases get `[]` and do not enter the forward.

    `config` supplies the text limit, thresholds, box rules and the image preprocessing
    (`runtime.preprocess`); the model, device, dtype and canvas (`pad_size`) were fixed by
    `load_grounding_model`.
    """
    flags = _check_inputs(images, phrases, plural)
    rows: list[tuple[int, TextQuery]] = []
    for image_index, image_phrases in enumerate(phrases):
        for query in build_queries([p.text for p in image_phrases], model.tokenizer, config.max_text_len):
            rows.append((image_index, query))
    results: list[list[Grounding]] = [[] for _ in images]
    if not rows:
        return results
    active = sorted({image_index for image_index, _ in rows})
    position = {image_index: k for k, image_index in enumerate(active)}
    probs, boxes, offsets = _forward(
        model, [images[i] for i in active], [position[i] for i, _ in rows], [q.text for _, q in rows], config
    )
    per_image: dict[int, list] = {i: [] for i in active}
    for row, (image_index, query) in enumerate(rows):
        phrase_ids, slots, scores = _row_candidates(query, probs[row], offsets[row], config)
        height, width = images[image_index].shape[:2]
        per_image[image_index].append((phrase_ids, cxcywh_to_xyxy(boxes[row][slots], width, height), scores))
    for image_index, parts in per_image.items():
        phrase_ids, xyxy, scores = (np.concatenate(column) for column in zip(*parts))
        height, width = images[image_index].shape[:2]
        keep = select_boxes(phrase_ids, xyxy, scores, flags[image_index], width, height, config)
        results[image_index] = [
            Grounding(
                phrase=int(phrase_ids[k]),
                box=tuple(round(float(v), config.box_decimals) for v in xyxy[k]),
                score=round(float(scores[k]), config.score_decimals),
            )
            for k in keep
        ]
    return results
