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
`boxes.select_boxes_with_reasons` then applies the shape filters, the plural rule, the same-object
rule across phrases and the entity cap, and says why a phrase kept no box.

Images keep the published resize (shortest edge 800, longest 1333) and are padded to a canvas chosen
from their own resized shape (`preprocess.image_canvas`); each canvas group (or, with
`forward: image`, each image) runs as its own forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from grounding.boxes import cxcywh_to_xyxy, select_boxes_with_reasons
from grounding.models import GroundingModel
from grounding.preprocess import image_canvas, preprocess_images
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


# Why a phrase kept no box, besides `boxes.select_boxes_with_reasons`'s reasons.
REASON_NO_QUERY = "no_query"  # the phrase has no token in any query (blank once lowercased and cleaned)
REASON_BELOW_THRESHOLD = "below_threshold"  # no detection passed box_threshold and text_threshold


def _pixels(model: GroundingModel, images: Sequence[np.ndarray], canvas: tuple[int, int], preprocess: str):
    """`pixel_values` `(B, 3, H, W)` in `model.dtype` and `pixel_mask` `(B, H, W)` on `model.device`,
    every image padded to `canvas = (H, W)`: by torch ops on the device (`tensor`) or by the
    transformers image processor on the CPU (`processor`); the two are equal byte for byte."""
    if preprocess == "tensor":
        return preprocess_images(model, images, canvas)
    height, width = canvas
    pixels = model.image_processor(
        list(images), size=model.resize, do_pad=True, pad_size={"height": height, "width": width},
        input_data_format="channels_last", return_tensors="pt",
    )
    return pixels["pixel_values"].to(model.device, model.dtype), pixels["pixel_mask"].to(model.device)


def _forward(model: GroundingModel, images: Sequence[np.ndarray], canvas: tuple[int, int], row_image: list[int],
             texts: list[str], config):
    """Run the model on `len(texts)` rows; row r pairs `images[row_image[r]]` with `texts[r]`, every
    image padded to `canvas`.

    Returns probs `(R, Q, T)` (sigmoid of the logits of the T text positions), boxes `(R, Q, 4)`
    normalised cxcywh of the unpadded image, and offsets `(R, T, 2)`.
    """
    pixel_values, pixel_mask = _pixels(model, images, canvas, config.runtime.preprocess)  # (B, 3, H, W), (B, H, W)
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
    return [(probs[r], boxes[r], offsets[r]) for r in range(len(texts))]


def _row_candidates(query: TextQuery, probs: np.ndarray, offsets: np.ndarray, config: GroundingConfig):
    """Candidates of one query row: (phrase ids, slot ids, scores); `probs` is `(Q, T)`."""
    token_map = positive_map(offsets, query.spans, probs.shape[1])  # (P, T)
    masked = np.where(token_map[None, :, :], probs[:, None, :], -np.inf)  # (Q, P, T)
    phrase_score = masked.max(axis=2)  # (Q, P); -inf for a phrase truncated away
    slot_score = phrase_score.max(axis=1)  # (Q,)
    keep = (slot_score > config.box_threshold)[:, None] & (phrase_score > config.text_threshold)
    slots, local = np.nonzero(keep)
    return np.asarray(query.phrases, dtype=np.int64)[local], slots, phrase_score[slots, local]


def _forward_groups(model: GroundingModel, images: Sequence[np.ndarray], rows, config: GroundingConfig) -> list:
    """Per row of `rows` ((image index, TextQuery)), its (probs, boxes, offsets): one forward per
    canvas group of images (`forward: canvas`) or per image (`forward: image`)."""
    groups: dict[tuple, list[int]] = {}
    for row, (image_index, _) in enumerate(rows):
        canvas = image_canvas(model, images[image_index])
        key = canvas if config.forward == "canvas" else (canvas, image_index)
        groups.setdefault(key, []).append(row)
    results: list = [None] * len(rows)
    for key, members in groups.items():
        canvas = key if config.forward == "canvas" else key[0]
        active = sorted({rows[r][0] for r in members})
        position = {image_index: k for k, image_index in enumerate(active)}
        outputs = _forward(
            model, [images[i] for i in active], canvas, [position[rows[r][0]] for r in members],
            [rows[r][1].text for r in members], config,
        )
        for row, output in zip(members, outputs):
            results[row] = output
    return results


def ground_batch_with_reasons(
    model: GroundingModel,
    images: Sequence[np.ndarray],
    phrases: Sequence[tuple[Phrase, ...]],
    plural: Sequence[Sequence[bool]] | None,
    config: GroundingConfig,
) -> list[tuple[list[Grounding], dict[int, str]]]:
    """`ground_batch`, with {phrase: reason} per image for each phrase that kept no box: `no_query`,
    `below_threshold` or a reason of `boxes.select_boxes_with_reasons`."""
    flags = _check_inputs(images, phrases, plural)
    rows: list[tuple[int, TextQuery]] = []
    for image_index, image_phrases in enumerate(phrases):
        for query in build_queries([p.text for p in image_phrases], model.tokenizer, config.max_text_len):
            rows.append((image_index, query))
    results: list[tuple[list[Grounding], dict[int, str]]] = [
        ([], {k: REASON_NO_QUERY for k in range(len(p))}) for p in phrases
    ]
    if not rows:
        return results
    outputs = _forward_groups(model, images, rows, config)
    per_image: dict[int, list] = {}
    for (image_index, query), (probs, boxes, offsets) in zip(rows, outputs):
        phrase_ids, slots, scores = _row_candidates(query, probs, offsets, config)
        height, width = images[image_index].shape[:2]
        parts = per_image.setdefault(image_index, [[], []])
        parts[0].extend(query.phrases)
        parts[1].append((phrase_ids, cxcywh_to_xyxy(boxes[slots], width, height), scores))
    for image_index, (queried, parts) in per_image.items():
        phrase_ids, xyxy, scores = (np.concatenate(column) for column in zip(*parts))
        height, width = images[image_index].shape[:2]
        keep, reasons = select_boxes_with_reasons(phrase_ids, xyxy, scores, flags[image_index], width, height, config)
        for phrase in set(queried) - set(phrase_ids.tolist()):
            reasons[phrase] = REASON_BELOW_THRESHOLD
        for phrase in range(len(phrases[image_index])):
            if phrase not in queried:
                reasons[phrase] = REASON_NO_QUERY
        groundings = [
            Grounding(
                phrase=int(phrase_ids[k]),
                box=tuple(round(float(v), config.box_decimals) for v in xyxy[k]),
                score=round(float(scores[k]), config.score_decimals),
            )
            for k in keep
        ]
        results[image_index] = (groundings, dict(sorted(reasons.items())))
    return results


def ground_batch(
    model: GroundingModel,
    images: Sequence[np.ndarray],
    phrases: Sequence[tuple[Phrase, ...]],
    plural: Sequence[Sequence[bool]] | None,
    config: GroundingConfig,
) -> list[list[Grounding]]:
    """Ground every image's phrases; one list of `Grounding` per image, sorted by (phrase, -score).

    `images[i]`: `(H, W, 3)` uint8 RGB, EXIF-transposed; `phrases[i]`: its caption's phrases;
    `plural[i][k]`: whether phrase k's head noun is plural (None: all singular). The text queries
    of the images of one canvas (or of one image, with `forward: image`) run in one forward (an image
    whose phrases need two queries appears twice); each image's canvas follows from its own shape,
    so results do not depend on the batch. Images without phrases get `[]` and enter no forward.

    `config` supplies the text limit, thresholds, box rules, forward grouping and the image
    preprocessing (`runtime.preprocess`); the model, device, dtype and canvases were fixed by
    `load_grounding_model`.
    """
    return [found for found, _ in ground_batch_with_reasons(model, images, phrases, plural, config)]
