"""Model FLOPs per image of the pipeline's two models, and model FLOP utilisation (MFU).

    python -m bench.flops [--preset full] [--json FILE]     # Grounding DINO FLOPs per padding canvas

Counted with `torch.utils.flop_counter.FlopCounterMode` on one real batch through the pipeline's own
calls (`ground_batch`, `segment_batch`), on any device. FlopCounterMode counts matrix products,
convolutions and attention kernels (2 FLOPs per multiply-add); elementwise work, normalisation,
`grid_sample` (Grounding DINO's deformable attention sampling) and interpolation are not counted, so
the figures are the usual "model FLOPs" that MFU is defined on.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.loops import Models, boxes_of
from bench.results import write_json
from grounding.detect import ground_batch
from grounding.models import GroundingModel, load_grounding_model
from pipelines.prompts.work_item import WorkItem
from segmentation.segment import segment_batch
from unimo_g.config_tools import load_config
from unimo_g.pipeline_config import GroundingConfig, PipelineConfig
from unimo_g.records import Phrase

# Dense bf16/fp16 tensor-core peaks from the vendors' spec sheets, FLOP/s, matched by device name.
PEAK_FLOPS_16BIT = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("A100", 312e12),
)


def count_flops(fn: Callable, *args, **kwargs) -> tuple[int, object]:
    """(FLOPs counted while `fn(*args, **kwargs)` ran, its return value)."""
    with FlopCounterMode(display=False) as counter:
        value = fn(*args, **kwargs)
    return int(counter.get_total_flops()), value


def pipeline_flops(models: Models, items: list[WorkItem], config: PipelineConfig) -> dict:
    """FLOPs per image of Grounding DINO and SAM on `items` (one batch, phrases filled in).

    SAM's count covers the image encoder for every image with a box and the prompt encoder + mask
    decoder for every box; `sam_encoder_per_image` isolates the encoder. `total_per_image` is what
    one sample costs the pipeline in model FLOPs at this batch's boxes per image.
    """
    if not items:
        raise ValueError("pipeline_flops needs at least one item")
    grounding_flops, found = count_flops(
        ground_batch, models.grounding, [i.sample.pixels for i in items], [i.phrases for i in items],
        [i.plural for i in items], config.grounding,
    )
    grounded = [replace(item, groundings=tuple(g)) for item, g in zip(items, found)]
    boxes = [boxes_of(item) for item in grounded]
    sam_flops, _ = count_flops(
        segment_batch, models.segmentation, [i.sample.pixels for i in grounded], boxes, config.segmentation
    )
    with_boxes = [item for item, b in zip(grounded, boxes) if len(b)]
    encoder_flops = 0
    if with_boxes:
        sam = models.segmentation
        pixels = sam.processor.image_processor(
            [item.sample.pixels for item in with_boxes], return_tensors="pt", input_data_format="channels_last"
        )["pixel_values"].to(device=sam.device, dtype=sam.dtype)  # (B, 3, S, S)
        with torch.inference_mode():
            encoder_flops, _ = count_flops(sam.model.get_image_embeddings, pixels)
    images = len(items)
    num_boxes = sum(len(b) for b in boxes)
    return {
        "images": images,
        "boxes": num_boxes,
        "grounding_per_image": grounding_flops / images,
        "sam_per_image": sam_flops / images,
        "sam_encoder_per_image": encoder_flops / max(1, len(with_boxes)),
        "sam_decoder_per_box": (sam_flops - encoder_flops) / max(1, num_boxes),
        "total_per_image": (grounding_flops + sam_flops) / images,
    }


def canvas_flops(model: GroundingModel, config: GroundingConfig, caption: str = "a dog on a sofa") -> dict:
    """Grounding DINO FLOPs of one image per padding canvas: `{"HxW": flops}` for every canvas of
    `model.canvases`, each on a random image of exactly the canvas's size (which the published resize
    leaves as it is), with the query of `caption`'s two phrases."""
    phrases = (Phrase("a dog", 0, 5), Phrase("a sofa", 9, 15))
    assert caption[0:5] == "a dog" and caption[9:15] == "a sofa"
    results = {}
    for height, width in model.canvases:
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        results[f"{height}x{width}"], _ = count_flops(ground_batch, model, [image], [phrases], None, config)
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Grounding DINO FLOPs per image on each padding canvas")
    parser.add_argument("--preset", choices=("full", "tiny"), default="full")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    config = load_config(PipelineConfig, root / "configs" / ("bench_full.yaml" if args.preset == "full" else "tiny.yaml"))
    model = load_grounding_model(config.grounding)
    flops = canvas_flops(model, config.grounding)
    for canvas, value in flops.items():
        print(f"{canvas:>10s}  {value / 1e9:8.1f} GFLOP")
    if args.json:
        write_json(args.json, {"preset": args.preset, "grounding_flops_per_canvas": flops})
    return 0


def peak_flops(device: torch.device, dtype: torch.dtype) -> Optional[float]:
    """The card's dense 16-bit peak FLOP/s when known and `dtype` is bf16/fp16; None otherwise (CPU too)."""
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    name = torch.cuda.get_device_name(device)
    for pattern, peak in PEAK_FLOPS_16BIT:
        if pattern in name:
            return peak
    return None


def utilisation(flops_per_image: float, images_per_s: float, peak: Optional[float]) -> Optional[float]:
    """Model FLOP utilisation: achieved model FLOP/s over the peak (None without a peak)."""
    return None if peak is None else flops_per_image * images_per_s / peak


if __name__ == "__main__":
    sys.exit(main())
