"""One measured run of one mode, in its own process: `python -m bench.runs --mode MODE ...`.

Every mode runs in a fresh process under the same conditions: the config's models are loaded (timed),
`--warmup-images` images go through both models once (one-time kernel and cache setup, not timed),
then the timed run; all of it on the process's main thread, where Beam's in-memory DirectRunner also
runs its DoFns. A fresh process per run keeps the peaks of resident memory apart, and keeps one
run's threads and caches from speeding up or slowing down the next.

Modes:
- `plain`, `one`: `bench.loops.plain_loop` / `batch_of_one_loop` with the models loaded here;
- `beam`: the models loaded here are dropped after the warm-up, then `beam_runner.run` loads its own
  inside the run; its steady seconds are its wall seconds minus the load seconds measured here. With
  the in-memory runner the two model stages' `run_inference` calls are timed too (`timed_model_stages`),
  so that Beam's time outside the models can be set against the loop's;
- `flops`: `bench.flops.pipeline_flops` on the first `--flops-images` inputs (no timing); the
  `plain` run also counts them, after its timed loop, with the models it already holds.
The result is written as JSON to `--result`.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Sequence

import pyarrow.parquet as pq

from bench.flops import pipeline_flops
from bench.loops import (
    Models,
    batch_of_one_loop,
    ground_items,
    load_models,
    plain_loop,
    prepare_items,
    segment_items,
)
from bench.results import write_json
from bench.rss import PeakRss, rusage_peaks
from pipelines.outputs.manifest import build_lineage
from unimo_g.config_tools import load_config
from unimo_g.pipeline_config import PipelineConfig

MODES = ("plain", "one", "beam", "flops")


def _run_direct(run, argv: list[str], overrides: Sequence[str], running_mode: str, workers: int) -> dict:
    """`run(argv)` (a runner's `run`, which returns its manifest) with `--set` overrides on the
    DirectRunner; wall seconds and counts."""
    for override in overrides:
        argv += ["--set", override]
    argv += ["--runner=DirectRunner", f"--direct_running_mode={running_mode}", f"--direct_num_workers={workers}"]
    started = time.perf_counter()
    manifest = run(argv)
    seconds = time.perf_counter() - started
    counts = manifest["counts"]
    return {"seconds": seconds, "samples": counts["inputs"], "rows": counts["rows"], "rejects": counts["rejects"],
            "runner": manifest.get("runner"), "running_mode": running_mode, "workers": workers}


def run_beam(
    input_dir: Path,
    output_dir: Path,
    config_path: Path,
    overrides: Sequence[str],
    running_mode: str = "in_memory",
    workers: int = 1,
) -> dict:
    """Run the pipeline through `beam_runner.run` with the DirectRunner; wall seconds and counts."""
    import beam_runner  # imports Beam; deferred so that `--help` stays fast

    argv = ["--input", str(input_dir), "--output", str(output_dir), "--input_format", "folder",
            "--config", str(config_path)]
    return _run_direct(beam_runner.run, argv, overrides, running_mode, workers)


def run_features(
    input_dir: Path,
    output_dir: Path,
    config_path: Path,
    overrides: Sequence[str],
    running_mode: str = "in_memory",
    workers: int = 1,
) -> dict:
    """Run the feature job through `features_runner.run` with the DirectRunner; wall seconds and counts."""
    import features_runner  # imports Beam

    argv = ["--input", str(input_dir), "--output", str(output_dir), "--config", str(config_path)]
    return _run_direct(features_runner.run, argv, overrides, running_mode, workers)


@contextmanager
def timed_model_stages():
    """Time every `run_inference` call of the two model handlers made in this process.

    Yields {"ground": [(seconds, batch size), ...], "segment": [...]}, filled as the pipeline runs.
    The handlers' methods are wrapped (the wrapper calls the original) and restored on exit. Only
    calls in this process are seen: the in-memory runner's, not multi_processing workers'.
    """
    from pipelines.prompts.model_handlers import GroundingModelHandler, SegmentationModelHandler

    timings: dict[str, list[tuple[float, int]]] = {"ground": [], "segment": []}
    originals = {}
    for stage, handler in (("ground", GroundingModelHandler), ("segment", SegmentationModelHandler)):
        original = handler.run_inference

        def timed(self, batch, model, inference_args=None, _original=original, _stage=stage):
            started = time.perf_counter()
            result = _original(self, batch, model, inference_args)
            timings[_stage].append((time.perf_counter() - started, len(batch)))
            return result

        originals[handler] = original
        handler.run_inference = timed
    try:
        yield timings
    finally:
        for handler, original in originals.items():
            handler.run_inference = original


def row_digest(row: dict) -> str:
    """Digest of one shard row, every column (ids, prompts, boxes, scores, masks, entity images, ...)."""
    return hashlib.sha256(repr(sorted(row.items())).encode("utf-8")).hexdigest()


def summarize_shards(output_dir: Path) -> dict:
    """Rows, entities and a digest of every row under `output_dir/shards`, all columns (`row_digest`).

    Equal digests mean two runs wrote the same rows (in any order and file split); `digest_boxes`
    covers ids, prompts and boxes only (SAM decoding one box per call moves mask edges by a few pixels against
    decoding an image's boxes together).
    """
    digests, boxes, entities = [], [], 0
    for path in sorted((Path(output_dir) / "shards").glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            digests.append(row_digest(row))
            entities += len(row["entities"])
            boxes.append((row["id"], row["prompt_text"], tuple(tuple(e["box"]) for e in row["entities"])))
    digest = hashlib.sha256("".join(sorted(digests)).encode("utf-8")).hexdigest()[:16]
    digest_boxes = hashlib.sha256(repr(sorted(boxes)).encode("utf-8")).hexdigest()[:16]
    return {"rows": len(digests), "entities": entities, "digest": digest, "digest_boxes": digest_boxes}


def warm_up(models: Models, input_dir: Path, config: PipelineConfig, images: int) -> float:
    """Run the first `images` inputs through both models once; the seconds it took (0 images: skip)."""
    if images < 1:
        return 0.0
    started = time.perf_counter()
    items = prepare_items(models, input_dir, config, images)
    segment_items(ground_items(items, models, config), models, config)
    return time.perf_counter() - started


def run_mode(
    mode: str,
    input_dir: Path,
    output_dir: Path,
    config_path: Path,
    overrides: Sequence[str],
    one_sam: str = "per_box",
    running_mode: str = "in_memory",
    workers: int = 1,
    warmup_images: int = 1,
    flops_images: int = 1,
) -> dict:
    """Load, warm up and run `mode` in this process; the record of what it measured."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    config = load_config(PipelineConfig, config_path, overrides)
    models = load_models(config)
    record: dict = {"mode": mode, "load_seconds": models.load_seconds}
    if mode == "flops":
        items = prepare_items(models, input_dir, config, flops_images)
        return {**record, "flops": pipeline_flops(models, items, config)}
    record["warmup_seconds"] = warm_up(models, input_dir, config, warmup_images)
    if mode == "beam":
        del models  # the run loads its own, as a worker would
        gc.collect()
        with timed_model_stages() as timings, PeakRss() as rss:
            result = run_beam(input_dir, output_dir, config_path, overrides, running_mode, workers)
        result["steady_seconds"] = result["seconds"] - sum(record["load_seconds"].values())
        if running_mode == "in_memory":
            result["stage_seconds"] = {stage: sum(t for t, _ in calls) for stage, calls in timings.items()}
            result["batch_sizes"] = {stage: [size for _, size in calls] for stage, calls in timings.items()}
    else:
        lineage = build_lineage(config)
        with PeakRss() as rss:
            if mode == "plain":
                loop = plain_loop(models, input_dir, output_dir, config, lineage)
            else:
                loop = batch_of_one_loop(models, input_dir, output_dir, config, one_sam, lineage)
        result = loop.as_dict()
        result["steady_seconds"] = result["seconds"]
        result["batch_sizes"] = loop.batch_sizes
        if mode == "plain" and flops_images > 0:
            result["flops"] = pipeline_flops(models, prepare_items(models, input_dir, config, flops_images), config)
    record.update(result)
    record["peak_rss_mib"] = rss.peak_mib
    record["start_rss_mib"] = rss.start_mib
    record["self_maxrss_mib"] = rusage_peaks()["self_mib"]
    record["output"] = summarize_shards(output_dir)
    steady = record["steady_seconds"]
    record["samples_per_s"] = record["samples"] / steady if steady > 0 else None
    return record


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.runs", description="one measured run of one mode")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--one-sam", choices=("per_box", "per_image"), default="per_box")
    parser.add_argument("--direct-running-mode", default="in_memory")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--warmup-images", type=int, default=1)
    parser.add_argument("--flops-images", type=int, default=1, help="0: no FLOP count after a plain run")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--result", type=Path, required=True, help="write the record here (JSON)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for Beam's multi_processing workers
        os.environ["MKL_NUM_THREADS"] = str(args.threads)
    record = run_mode(
        args.mode, args.input, args.output, args.config, args.set, args.one_sam, args.direct_running_mode,
        args.workers, args.warmup_images, args.flops_images,
    )
    write_json(args.result, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
