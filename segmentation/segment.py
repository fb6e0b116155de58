"""Box-prompted segmentation with SAM: images + boxes -> one mask and score per box.

Boxes are xyxy in pixels of the EXIF-transposed original image; images are (H, W, 3) uint8 RGB
in that frame; masks come back at that size. The image encoder runs once per image (batched over
the images that have boxes); each image's boxes are then decoded together in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from segmentation.models import SegmentationModel
from segmentation.preprocess import canvas_of, mask_logits_at_original_size, preprocess_images
from unimo_g.pipeline_config import SegmentationConfig


@dataclass(frozen=True)
class MaskPrediction:
    """SAM's answer to one box: `mask` (H, W) bool at the original image size; `score` its predicted IoU."""

    mask: np.ndarray
    score: float


def _check_inputs(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> None:
    if len(images) != len(boxes):
        raise ValueError(f"got {len(images)} images but {len(boxes)} box arrays")
    for index, (image, image_boxes) in enumerate(zip(images, boxes)):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {index} must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if len(image_boxes) == 0:  # [] and (0, 4) both mean "no boxes"
            continue
        shape = np.shape(image_boxes)
        if len(shape) != 2 or shape[1] != 4:
            raise ValueError(f"boxes of image {index} must be (N, 4) xyxy, got shape {shape}")
        if not np.all(np.isfinite(image_boxes)):
            raise ValueError(f"boxes of image {index} must be finite, got {image_boxes!r}")


def scale_boxes(boxes: np.ndarray, original_size: tuple[int, int], resized_size: tuple[int, int]) -> np.ndarray:
    """Boxes (N, 4) xyxy from original pixels (size (H, W)) to the processor's resized frame (size (h, w))."""
    (height, width), (new_height, new_width) = original_size, resized_size
    scale = np.array([new_width / width, new_height / height] * 2, dtype=np.float64)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale  # (N, 4)


def _pixels(
    model: SegmentationModel, images: Sequence[np.ndarray], preprocess: str
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """`pixel_values` `(B, 3, S, S)` in `model.dtype` on `model.device` and each image's resized
    `(h, w)`: by torch ops on the device (`tensor`) or by the transformers image processor on the
    CPU (`processor`); the two are equal byte for byte."""
    if preprocess == "tensor":
        return preprocess_images(model, images)
    encoding = model.processor.image_processor(images, return_tensors="pt", input_data_format="channels_last")
    sizes = [tuple(int(v) for v in size) for size in encoding["reshaped_input_sizes"]]
    return encoding["pixel_values"].to(device=model.device, dtype=model.dtype), sizes


def _decode_boxes(
    model: SegmentationModel,
    embedding: torch.Tensor,
    boxes: np.ndarray,
    original_size: tuple[int, int],
    resized_size: tuple[int, int],
    config: SegmentationConfig,
) -> list[MaskPrediction]:
    """All boxes of one image in one decoder call. `embedding` (1, C, h', w') from the image encoder."""
    scaled = scale_boxes(boxes, original_size, resized_size)
    input_boxes = torch.as_tensor(scaled, dtype=torch.float32, device=model.device)[None]  # (1, N, 4)
    outputs = model.model(image_embeddings=embedding, input_boxes=input_boxes, multimask_output=False)
    low_res = outputs.pred_masks[0].float()  # (N, 1, 4h', 4w') logits
    if config.runtime.preprocess == "tensor":
        logits = mask_logits_at_original_size(low_res, canvas_of(model), resized_size, original_size)
        masks = logits > config.mask_threshold  # (N, 1, H, W) bool, on the device
    else:
        masks = model.processor.post_process_masks(
            [low_res], [original_size], [resized_size], mask_threshold=config.mask_threshold
        )[0]  # (N, 1, H, W) bool
    masks = masks[:, 0].cpu().numpy()  # (N, H, W)
    scores = outputs.iou_scores[0, :, 0].float().cpu().tolist()  # (N,)
    return [MaskPrediction(mask=mask, score=round(score, config.score_decimals)) for mask, score in zip(masks, scores)]


def segment_batch(
    model: SegmentationModel,
    images: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    config: SegmentationConfig,
) -> list[list[MaskPrediction]]:
    """One `MaskPrediction` per box, in box order, per image.

    `images[i]` (H_i, W_i, 3) uint8 RGB; `boxes[i]` (N_i, 4) float xyxy pixels of that image.
    Images without boxes get [] and are not encoded. Every image is resized and padded to the
    processor's fixed canvas, so an image's masks do not depend on the other images of the batch;
    the encoder sees at most `config.runtime.batch_size` images at once, or one image at a time with
    `forward: image` (every tensor shape then depends on the image alone). Masks are SAM's single-mask
    output (multimask off), thresholded at `config.mask_threshold` on the logits. Pre- and
    post-processing follow `config.runtime.preprocess` (`tensor`: on the model's device).
    """
    _check_inputs(images, boxes)
    results: list[list[MaskPrediction]] = [[] for _ in images]
    with_boxes = [index for index, image_boxes in enumerate(boxes) if len(image_boxes) > 0]
    chunk_size = 1 if config.forward == "image" else config.runtime.batch_size
    with torch.inference_mode():
        for start in range(0, len(with_boxes), chunk_size):
            chunk = with_boxes[start : start + chunk_size]
            chunk_images = [images[index] for index in chunk]
            pixel_values, resized_sizes = _pixels(model, chunk_images, config.runtime.preprocess)  # (B, 3, S, S)
            embeddings = model.model.get_image_embeddings(pixel_values)  # (B, C, S/16, S/16)
            for row, index in enumerate(chunk):
                original_size = tuple(int(v) for v in images[index].shape[:2])
                results[index] = _decode_boxes(
                    model, embeddings[row : row + 1], boxes[index], original_size, resized_sizes[row], config
                )
    return results
