"""How a row changes with the batch it was computed in: batch size N against batch size 1.

    python -m bench.determinism [--preset full] [--n 5] [--json FILE]

The first `n` sample photos go through the pipeline's own calls (`bench.loops`: spaCy phrases,
`ground_batch_with_reasons`, `segment_batch`, `assemble_sample`) twice: all `n` in one batch, then
each alone. For every forward setting (`grounding.forward` / `segmentation.forward`: `canvas`/`batch`,
one forward per canvas group or batch; `image`, one forward per image) it reports, over the entities
of both runs matched by (phrase, rank within the phrase): the share whose stored box differs and by
how much, the mask pixels that differ, entities gained or lost, and rows that are not identical.
The `full` preset has the published models' dimensions and preprocessing with random weights, whose
logits and mask logits crowd near the thresholds: an upper bound for real weights' flips.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from bench.inputs import make_inputs
from bench.loops import ground_items, load_models, prepare_items, segment_items
from bench.results import write_json
from pipelines.prompts.assemble import assemble_sample
from unimo_g.config_tools import load_config
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.rle import decode_mask

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"full": ROOT / "configs" / "bench_full.yaml", "tiny": ROOT / "configs" / "tiny.yaml"}
SETTINGS = {"batched (forward: canvas / batch)": ("canvas", "batch"), "per image (forward: image)": ("image", "image")}


def _rows(items, models, config):
    grounded = ground_items(items, models, config)
    return [assemble_sample(item, config)[0] for item in segment_items(grounded, models, config)]


def _entities(row) -> dict:
    ranks: dict[int, int] = {}
    keyed = {}
    for entity in row.entities:
        rank = ranks.get(entity.phrase, 0)
        ranks[entity.phrase] = rank + 1
        keyed[(entity.phrase, rank)] = entity
    return keyed


def compare(batched, alone) -> dict:
    """Differences between two lists of rows of the same samples (see the module docstring)."""
    matched = boxes_differ = gained = lost = rows_differ = 0
    max_box_diff = 0.0
    mask_pixels: list[int] = []
    for a, b in zip(batched, alone, strict=True):
        rows_differ += a.to_row() != b.to_row()
        ea, eb = _entities(a), _entities(b)
        lost += len(ea.keys() - eb.keys())
        gained += len(eb.keys() - ea.keys())
        for key in ea.keys() & eb.keys():
            matched += 1
            diff = float(np.max(np.abs(np.subtract(ea[key].box, eb[key].box))))
            boxes_differ += diff > 0
            max_box_diff = max(max_box_diff, diff)
            mask_a = decode_mask(ea[key].mask.size, ea[key].mask.counts)
            mask_b = decode_mask(eb[key].mask.size, eb[key].mask.counts)
            mask_pixels.append(int(np.count_nonzero(mask_a != mask_b)))
    return {
        "rows": len(batched), "rows_not_identical": rows_differ, "entities_matched": matched,
        "boxes_differ": boxes_differ, "max_box_diff_px": round(max_box_diff, 4),
        "masks_differ": sum(p > 0 for p in mask_pixels), "mask_pixels_differ_max": max(mask_pixels, default=0),
        "mask_pixels_differ_total": sum(mask_pixels), "entities_lost_in_batch": lost,
        "entities_gained_in_batch": gained,
    }


def measure(config: PipelineConfig, n: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        make_inputs(Path(folder), n)
        models = load_models(config)
        items = prepare_items(models, Path(folder), config, n)
    results = {}
    for name, (grounding_forward, sam_forward) in SETTINGS.items():
        setting = dataclasses.replace(
            config,
            grounding=dataclasses.replace(config.grounding, forward=grounding_forward),
            segmentation=dataclasses.replace(config.segmentation, forward=sam_forward),
        )
        started = time.perf_counter()
        batched = _rows(items, models, setting)
        alone = [_rows([item], models, setting)[0] for item in items]
        results[name] = {**compare(batched, alone), "seconds": round(time.perf_counter() - started, 1)}
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--n", type=int, default=5, help="samples, all in one batch against one at a time")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    config = load_config(PipelineConfig, PRESETS[args.preset])
    results = measure(config, args.n)
    for name, figures in results.items():
        print(f"{name}:")
        for key, value in figures.items():
            print(f"  {key:28s} {value}")
    if args.json:
        write_json(args.json, {"preset": args.preset, "n": args.n, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
