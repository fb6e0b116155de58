"""What sharing a model across a worker's processes costs per image: each model step's batches run
through the handler with the model called directly (one copy per process) and through Beam's
MultiProcessShared proxy (`runtime.share_model`, the default on CUDA), which pickles every batch's
decoded pixels to the process holding the model and the results back.

    OMP_NUM_THREADS=1 python -m bench.model_sharing [--preset tiny|full] [--n 16] [--batch-size 4]
        [--device cpu] [--upscale 1] [--repeats 3] [--json FILE]

Inputs are `bench.inputs` (the sample photos at web sizes, ~180-1000 px), their pixels resized by
`--upscale` to try larger images. OMP_NUM_THREADS gives the model the same thread count in both
runs (the proxy's server runs the model in a thread of its own, which `torch.set_num_threads` in the
main thread does not reach). Prints ms per image for both, their
ratio and difference, per model step; the difference is the copying that sharing adds, whatever
the device.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from apache_beam.utils.multi_process_shared import MultiProcessShared
from PIL import Image

from bench.inputs import make_inputs
from bench.pipeline import PRESETS
from bench.results import write_json
from pipelines.io.source_formats import group_folder_files, read_folder_group
from pipelines.prompts.decode import decode_sample
from pipelines.prompts.model_handlers import GroundingModelHandler, SegmentationModelHandler
from pipelines.prompts.phrase_stage import ExtractPhrasesFn
from pipelines.prompts.work_item import WorkItem
from unimo_g.config_tools import load_config
from unimo_g.pipeline_config import PipelineConfig


def work_items(n: int, config: PipelineConfig, upscale: float = 1.0) -> list[WorkItem]:
    """`n` decoded samples of `bench.inputs` with their phrases, pixels resized by `upscale`."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_inputs(Path(tmp), n)
        files = [str(path) for path in sorted(root.rglob("*")) if path.is_file()]
        raws = [read_folder_group(group) for group in group_folder_files(str(root), files)]
    phrases = ExtractPhrasesFn(config.phrases)
    phrases.setup()
    items = []
    for raw in raws:
        decoded = decode_sample(raw, config.decode, config.phrases.max_caption_chars)
        if upscale != 1.0:
            height, width = decoded.pixels.shape[:2]
            size = (round(width * upscale), round(height * upscale))
            decoded = dataclasses.replace(decoded, pixels=np.asarray(Image.fromarray(decoded.pixels).resize(size)))
        items.extend(phrases.process(decoded))
    return items


def best_ms_per_image(run: Callable[[], object], images: int, repeats: int) -> float:
    run()  # warm-up (and, through the proxy, the first connection)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return 1000 * best / images


def compare(handler, items: Sequence[WorkItem], batch_size: int, repeats: int) -> dict:
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    direct = handler.load_model()
    proxy = MultiProcessShared(handler.load_model, tag=f"bench-{uuid.uuid4().hex}", always_proxy=True).acquire()

    def run_all(model):
        return [result for batch in batches for result in handler.run_inference(batch, model)]

    direct_ms = best_ms_per_image(lambda: run_all(direct), len(items), repeats)
    shared_ms = best_ms_per_image(lambda: run_all(proxy), len(items), repeats)
    return {"direct_ms_per_image": round(direct_ms, 2), "shared_ms_per_image": round(shared_ms, 2),
            "ratio": round(shared_ms / direct_ms, 3), "added_ms_per_image": round(shared_ms - direct_ms, 2),
            "outputs": run_all(direct)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--upscale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runtime = [f"{stage}.runtime.{key}={value}" for stage in ("grounding", "segmentation")
               for key, value in (("device", args.device), ("batch_size", args.batch_size))]
    config = load_config(PipelineConfig, PRESETS[args.preset], runtime)
    items = work_items(args.n, config, args.upscale)
    megapixels = sum(item.sample.pixels.shape[0] * item.sample.pixels.shape[1] for item in items) / len(items) / 1e6
    report = {"preset": args.preset, "n": len(items), "batch_size": args.batch_size, "device": args.device,
              "upscale": args.upscale, "mean_megapixels": round(megapixels, 3),
              "torch_threads": torch.get_num_threads()}
    print(f"{len(items)} images, mean {megapixels:.2f} MP, batch {args.batch_size}, {args.device}, "
          f"{torch.get_num_threads()} torch threads")
    grounding = compare(GroundingModelHandler(config.grounding), items, args.batch_size, args.repeats)
    grounded = [item for item in grounding.pop("outputs") if isinstance(item, WorkItem)]
    segmentation = compare(SegmentationModelHandler(config.segmentation), grounded, args.batch_size, args.repeats)
    segmentation.pop("outputs")
    report.update(grounding=grounding, segmentation=segmentation)
    for stage in ("grounding", "segmentation"):
        r = report[stage]
        print(f"{stage:13s} direct {r['direct_ms_per_image']:8.2f} ms/image   shared {r['shared_ms_per_image']:8.2f} "
              f"ms/image   ratio {r['ratio']:.3f}   added {r['added_ms_per_image']:+.2f} ms/image")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
