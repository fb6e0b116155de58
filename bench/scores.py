"""Cost per image of the score stage (CLIP similarity, optional aesthetic head) on the CPU.

    python -m bench.scores [--n 32] [--models random-clip-vit-base-patch32,random-clip-vit-large-patch14]
                           [--batch-size 16] [--threads 1] [--repeats 3] [--json FILE]

Each model runs `unimo_g.models.clip_scorer.score_batch` (image processor, image and text towers,
cosine) on `n` samples of `bench.inputs` with their captions, in batches of `--batch-size`, with
`scores.forward` image (the default: one pair per forward) and batch, timed as the best of
`--repeats` passes; with the random LAION-MLP head as well where the embedding is 768
wide (ViT-L/14, what LAION's heads read), and the image preprocessing alone. The random-weight presets
have the published models' dimensions: the same compute as the real weights. The baseline, timed in
the same process, is decoding the same images as the pipeline does: each figure is also printed as a
multiple of it.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.cpu_stages import best_ms_per_sample, decode_all, read_inputs
from bench.inputs import make_inputs
from bench.results import write_json
from unimo_g.models.aesthetic_head import build_head
from unimo_g.models.clip_scorer import load_clip_scorer, preprocess_images, score_batch
from unimo_g.pipeline_config import PipelineConfig, ScoresConfig

DEFAULT_MODELS = ("random-clip-vit-base-patch32", "random-clip-vit-large-patch14")
FORWARDS = ("image", "batch")  # scores.forward: the default (one pair per forward), and batched
LAION_HEAD_WIDTH = 768  # LAION's aesthetic predictors read ViT-L/14 embeddings


def random_laion_mlp(width: int, seed: int = 0) -> torch.nn.Module:
    """improved-aesthetic-predictor's MLP with random weights (its cost does not depend on them)."""
    generator = torch.Generator().manual_seed(seed)
    widths = [width, 1024, 128, 64, 16, 1]
    state = {}
    for index, (a, b) in zip((0, 2, 4, 6, 7), zip(widths, widths[1:])):
        state[f"layers.{index}.weight"] = torch.randn(b, a, generator=generator) / a ** 0.5
        state[f"layers.{index}.bias"] = torch.zeros(b)
    return build_head(state, width)


def gflops_per_image(work, images: int) -> float:
    """Model GFLOPs per image of one call of `work` (torch's FLOP counter: matmuls and convolutions),
    a figure that does not depend on the machine's load."""
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops() / images / 1e9


def measure(models: Sequence[str], folder: Path, batch_size: int, repeats: int) -> dict:
    """ms per image of decoding (the baseline) and of each model's score stage."""
    samples = decode_all(read_inputs(folder), PipelineConfig())
    n = len(samples)
    batches = [samples[i:i + batch_size] for i in range(0, n, batch_size)]
    ms = {"decode (baseline)": best_ms_per_sample(lambda: decode_all(read_inputs(folder), PipelineConfig()), n,
                                                  repeats)}
    gflops = {}
    for name in models:
        scorer = load_clip_scorer(ScoresConfig(enabled=True, model=name, runtime=ScoresConfig().runtime))
        ms[f"{name}: preprocess"] = best_ms_per_sample(
            lambda: [preprocess_images(scorer, [s.pixels for s in part]) for part in batches], n, repeats)
        for forward in FORWARDS:
            ms[f"{name}: similarity, forward {forward}"] = best_ms_per_sample(
                lambda f=forward: [score_batch(scorer, [s.pixels for s in part], [s.caption for s in part], forward=f)
                                   for part in batches], n, repeats)
        first = batches[0]
        gflops[name] = gflops_per_image(
            lambda: score_batch(scorer, [s.pixels for s in first], [s.caption for s in first]), len(first))
        if scorer.embed_dim == LAION_HEAD_WIDTH:
            head = random_laion_mlp(scorer.embed_dim)
            ms[f"{name}: similarity + LAION MLP head, forward image"] = best_ms_per_sample(
                lambda: [score_batch(scorer, [s.pixels for s in part], [s.caption for s in part], head, "image")
                         for part in batches], n, repeats)
        del scorer
    return {"samples": n, "ms_per_sample": ms, "gflops_per_image": gflops}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scores", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated scores.model values")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a worker's share of the cores)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = [m for m in args.models.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="bench-scores-") as folder:
        result = measure(models, make_inputs(Path(folder), args.n), args.batch_size, args.repeats)
    baseline = result["ms_per_sample"]["decode (baseline)"]
    result["x_decode"] = {name: value / baseline for name, value in result["ms_per_sample"].items()}
    result.update({"date": datetime.date.today().isoformat(), "threads": args.threads, "batch_size": args.batch_size,
                   "command": " ".join(["python -m bench.scores", *(sys.argv[1:] if argv is None else argv)])})
    print(f"score stage, CPU ms per image, {result['samples']} images of bench.inputs, batch {args.batch_size}, "
          f"{args.threads} torch thread(s), best of {args.repeats}")
    for name, value in result["ms_per_sample"].items():
        print(f"  {name:<58} {value:8.2f}  ({result['x_decode'][name]:6.1f} x decode)")
    for name, value in result["gflops_per_image"].items():
        print(f"  {name}: {value:.2f} GFLOPs per image (image and caption towers)")
    if args.json is not None:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
