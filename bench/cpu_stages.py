"""CPU time per sample of the pipeline's work outside the model forwards: how fast one worker can
feed a GPU.

    python -m bench.cpu_stages [--n 48] [--preset full] [--threads 1] [--repeats 3] [--json FILE]

On a GPU the model forwards take milliseconds per image, and what the worker's CPU does per sample
sets its pace: decoding, spaCy, each model's image preprocessing, SAM's mask post-processing,
entity images and RLE. Each stage runs on its own, on `n` samples of `bench.inputs`, timed as the
best of `--repeats` passes (ms per sample); both preprocessing settings (`runtime.preprocess`:
`processor`, the transformers processors; `tensor`, the default, which on a GPU leaves the CPU only
the upload) and a few entity-image encodings are timed side by side. Boxes and masks are made up
(an ellipse in the middle 60% of the image per phrase, at most `--boxes` per image): their values do
not change the cost. The models are the preset's (`full`: Grounding DINO-T / SAM ViT-B layouts).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from bench.inputs import make_inputs
from bench.pipeline import PRESETS
from bench.results import write_json
from grounding.detect import Grounding
from grounding.models import load_grounding_model
from grounding.phrases.noun_phrases import extract_phrase_set, load_nlp
from grounding.preprocess import image_canvas
from grounding.preprocess import preprocess_images as grounding_tensors
from pipelines.prompts.assemble import assemble_sample
from pipelines.prompts.decode import DecodedSample, decode_sample
from pipelines.prompts.work_item import WorkItem
from segmentation.models import load_segmentation_model
from segmentation.preprocess import canvas_of, mask_logits_at_original_size
from segmentation.preprocess import preprocess_images as sam_tensors
from segmentation.segment import MaskPrediction
from unimo_g.config_tools import load_config
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.records import RawSample

ENTITY_ENCODINGS = {"PNG level 1 (default)": {"format": "PNG", "png_compress_level": 1},
                    "PNG level 6 (Pillow's default)": {"format": "PNG", "png_compress_level": 6},
                    "WEBP q90": {"format": "WEBP"}}


def best_ms_per_sample(work: Callable[[], object], samples: int, repeats: int) -> float:
    """Best of `repeats` timed passes of `work` (after one untimed pass), in ms per sample."""
    work()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best / samples * 1e3


def read_inputs(folder: Path) -> list[RawSample]:
    """The `bench.inputs` folder as RawSamples (key, image bytes, caption)."""
    return [RawSample(p.stem, p.read_bytes(), p.with_suffix(".txt").read_text("utf-8"))
            for p in sorted(folder.rglob("*.jpg"))]


def decode_all(raws: Sequence[RawSample], config: PipelineConfig) -> list[DecodedSample]:
    """The inputs as the pipeline decodes them."""
    return [decode_sample(raw, config.decode, config.phrases.max_caption_chars) for raw in raws]


def made_up_work_item(sample: DecodedSample, nlp, config: PipelineConfig, boxes: int) -> WorkItem:
    """The sample's real phrases with a made-up box and elliptic mask for each of the first `boxes`."""
    found = extract_phrase_set(nlp(sample.caption), config.phrases)
    phrases = found.phrases
    height, width = sample.pixels.shape[:2]
    x1, y1, x2, y2 = 0.2 * width, 0.2 * height, 0.8 * width, 0.8 * height
    yy, xx = np.mgrid[:height, :width]
    ellipse = ((xx - width / 2) / (0.3 * width)) ** 2 + ((yy - height / 2) / (0.3 * height)) ** 2 <= 1.0
    chosen = range(min(boxes, len(phrases)))
    return WorkItem(
        sample=sample,
        phrases=tuple(phrases),
        plural=found.plural,
        set_aside=found.set_aside,
        groundings=tuple(Grounding(phrase=k, box=(x1, y1, x2, y2), score=0.9) for k in chosen),
        masks=tuple(MaskPrediction(mask=ellipse, score=0.95) for _ in chosen),
    )


def measure(config: PipelineConfig, folder: Path, boxes: int, repeats: int) -> dict:
    """ms per sample of every stage (see the module docstring)."""
    raws = read_inputs(folder)
    samples = decode_all(raws, config)
    n = len(samples)
    images = [s.pixels for s in samples]
    nlp = load_nlp(config.phrases.spacy_model)
    grounding, sam = load_grounding_model(config.grounding), load_segmentation_model(config.segmentation)
    chunk = config.grounding.runtime.batch_size
    chunks = [images[i:i + chunk] for i in range(0, n, chunk)]
    # each chunk's images by their own padding canvas, as ground_batch groups them
    grounding_groups = []
    for part in chunks:
        by_canvas: dict = {}
        for image in part:
            by_canvas.setdefault(image_canvas(grounding, image), []).append(image)
        grounding_groups.extend(by_canvas.items())

    def grounding_processor():
        for canvas, part in grounding_groups:
            grounding.image_processor(part, size=grounding.resize, do_pad=True,
                                      pad_size={"height": canvas[0], "width": canvas[1]},
                                      input_data_format="channels_last", return_tensors="pt")

    def sam_processor():
        for part in chunks:
            sam.processor.image_processor(part, return_tensors="pt", input_data_format="channels_last")

    _, sam_sizes = sam_tensors(sam, images)
    logits = torch.randn(boxes, 1, 256, 256, generator=torch.Generator().manual_seed(0))  # (N, 1, 4h', 4w')
    originals = [tuple(image.shape[:2]) for image in images]

    def post_processor():
        for size, original in zip(sam_sizes, originals):
            sam.processor.post_process_masks([logits], [original], [size], mask_threshold=0.0)[0].numpy()

    def post_tensor():
        for size, original in zip(sam_sizes, originals):
            (mask_logits_at_original_size(logits, canvas_of(sam), size, original) > 0.0).numpy()

    items = [made_up_work_item(s, nlp, config, boxes) for s in samples]
    stages = {
        "decode": lambda: decode_all(raws, config),
        "phrases (spaCy)": lambda: [extract_phrase_set(nlp(s.caption), config.phrases) for s in samples],
        "grounding preprocess, processor": grounding_processor,
        "grounding preprocess, tensor": lambda: [grounding_tensors(grounding, part, canvas)
                                                  for canvas, part in grounding_groups],
        "SAM preprocess, processor": sam_processor,
        "SAM preprocess, tensor": lambda: [sam_tensors(sam, part) for part in chunks],
        "SAM masks to original size, processor": post_processor,
        "SAM masks to original size, tensor": post_tensor,
    }
    for name, settings in ENTITY_ENCODINGS.items():
        encoded = dataclasses.replace(config, entity_image=dataclasses.replace(config.entity_image, **settings))
        stages[f"entity images + RLE, {name}"] = lambda c=encoded: [assemble_sample(item, c) for item in items]
    ms = {name: best_ms_per_sample(work, n, repeats) for name, work in stages.items()}
    entities = sum(len(item.groundings) for item in items) / n
    return {"samples": n, "entities_per_sample": entities, "ms_per_sample": ms}


def worker_budget(ms: dict) -> dict:
    """ms of CPU per sample for one worker with the default settings, on a GPU (the tensor paths
    then only upload bytes: counted as 0 here) and on a CPU device, and the samples/s they allow."""
    common = ms["decode"] + ms["phrases (spaCy)"] + ms["entity images + RLE, PNG level 1 (default)"]
    on_cpu = common + ms["grounding preprocess, tensor"] + ms["SAM preprocess, tensor"] + ms[
        "SAM masks to original size, tensor"]
    before = ms["decode"] + ms["phrases (spaCy)"] + ms["entity images + RLE, PNG level 6 (Pillow's default)"] + ms[
        "grounding preprocess, processor"] + ms["SAM preprocess, processor"] + ms["SAM masks to original size, processor"]
    return {
        "gpu_worker_ms": common, "gpu_worker_samples_per_s": 1e3 / common,
        "processor_worker_ms": before, "processor_worker_samples_per_s": 1e3 / before,
        "cpu_device_worker_ms": on_cpu,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--boxes", type=int, default=2, help="made-up boxes per image (at most its phrases)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a worker's share of the cores)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = load_config(PipelineConfig, PRESETS[args.preset])
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as folder:
        result = measure(config, make_inputs(Path(folder), args.n), args.boxes, args.repeats)
    result.update(worker_budget(result["ms_per_sample"]))
    result.update({"date": datetime.date.today().isoformat(), "preset": args.preset, "threads": args.threads,
                   "command": " ".join(["python -m bench.cpu_stages", *(sys.argv[1:] if argv is None else argv)])})
    print(f"CPU ms per sample, {result['samples']} samples of bench.inputs, {result['entities_per_sample']:.2f} "
          f"entities each, preset {args.preset}, {args.threads} torch thread(s), best of {args.repeats}")
    for name, value in result["ms_per_sample"].items():
        print(f"  {name:<48} {value:7.2f}")
    print(f"one worker feeding a GPU (decode + spaCy + entity images; pre/post-processing on the device): "
          f"{result['gpu_worker_ms']:.1f} ms/sample = {result['gpu_worker_samples_per_s']:.0f} samples/s; "
          f"with the processors and PNG level 6: {result['processor_worker_ms']:.1f} ms = "
          f"{result['processor_worker_samples_per_s']:.0f} samples/s")
    if args.json is not None:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
