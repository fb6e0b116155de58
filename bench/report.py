"""Does `unimo-g report` run in bounded memory? Peak RSS and rows/s over N and over FACTOR x N rows.

    python -m bench.report [--n 1000] [--factor 10] [--image-kib 32] [--json FILE]

Writes a synthetic pipeline output of N rows and one of FACTOR x N rows (real schema-v2 shards:
images of about --image-kib KiB of incompressible pixels, 0 to 5 entities with masks and entity
images, phrase outcomes, 256-row row groups, rejects of three reasons; `write_synthetic_output`),
then reports each in a fresh process (`--child`), so the two peaks do not mix. Peak: the kernel's
high-water mark of that process (`ru_maxrss`), also shown above its value once the libraries are
imported (what the report itself adds). Printed: both peaks, their ratio (target: at most 1.2) and rows/s.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from pycocotools import mask as mask_utils

from bench.results import write_json
from bench.rss import _RUSAGE_UNIT
from unimo_g.schema import OUTCOME_ENTITY, VERSION_KEY, prompt_text, reject_schema, sample_id, shard_schema

TARGET_RATIO = 1.2
ENTITY_PATTERN = (0, 1, 1, 1, 2, 2, 3, 4, 5)  # entities per row, cycled
REJECT_REASONS = (("decode", "image_too_small"), ("phrases", "no_phrases"), ("grounding", "no_boxes"))
# Outcome of each row's one phrase without an entity (row i: MISSED_OUTCOMES[i % len]); schema.PHRASE_OUTCOMES
MISSED_OUTCOMES = ("below_threshold", "shape_filter", "same_object", "below_threshold", "mask_score", "entity_cap")
MARKUP_EVERY = 3  # every 3rd row's caption arrived with HTML markup (`caption_original`) that cleaning removed
ROWS_PER_FILE = 2048
ROW_GROUP_ROWS = 256  # the pipeline's default write.row_group_rows
_MIB = 1024 * 1024


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class _Parts:
    """Images, masks and entity crops shared between rows (making them is the slow part)."""

    def __init__(self, image_kib: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        side = max(16, int((image_kib * 1024 / 3) ** 0.5))  # random RGB pixels barely compress
        self.sizes = [(side + 8 * k, side - 4 * k) for k in range(4)]  # (W, H)
        self._rng = rng
        self.crop = _png(np.full((16, 16, 3), 200, np.uint8))
        self._masks: dict = {}

    def image(self, size_index: int) -> bytes:
        """A new image of size `sizes[size_index]` (unique bytes, as real shards have)."""
        w, h = self.sizes[size_index]
        return _png(self._rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    def mask(self, size_index: int, box: tuple) -> tuple[dict, int]:
        key = (size_index, box)
        if key not in self._masks:
            w, h = self.sizes[size_index]
            mask = np.zeros((h, w), np.uint8)
            x1, y1, x2, y2 = (int(v) for v in box)
            mask[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1] = 1
            rle = mask_utils.encode(np.asfortranarray(mask))
            self._masks[key] = ({"size": [h, w], "counts": rle["counts"].decode()}, int(mask.sum()))
        return self._masks[key]


def synthetic_row(i: int, parts: _Parts, entity_pattern: Sequence[int] = ENTITY_PATTERN) -> dict:
    """Row i of a synthetic shard: a schema-v2 row dict with entity_pattern[i % len] entities and one more
    phrase than entities, whose outcome is MISSED_OUTCOMES[i % len]; entity k's box is a (W/4, H/4) box
    at (k·W/8, k·H/8). Every MARKUP_EVERY-th row's `caption_original` is its caption in `<b>` tags."""
    n = entity_pattern[i % len(entity_pattern)]
    size_index = i % len(parts.sizes)
    w, h = parts.sizes[size_index]
    words = [f"thing{k}" for k in range(n + 1)]
    caption = "a photo of " + " and ".join(words) + f" number {i}"
    phrases, entities, outcomes, prompt = [], [], [], [{"text": "a photo of ", "entity": None}]
    start = len("a photo of ")
    for k, word in enumerate(words):
        phrases.append({"text": word, "start": start, "end": start + len(word)})
        outcomes.append(OUTCOME_ENTITY if k < n else MISSED_OUTCOMES[i % len(MISSED_OUTCOMES)])
        if k < n:
            box = (k * w // 8, k * h // 8, k * w // 8 + w // 4, k * h // 8 + h // 4)
            mask, area = parts.mask(size_index, box)
            entities.append({
                "phrase": k, "text": word, "start": start, "end": start + len(word), "box": [float(v) for v in box],
                "box_score": 0.3 + 0.1 * k, "mask": mask, "mask_area": area, "mask_score": 0.9,
                "image": parts.crop, "image_format": "PNG",
            })  # fmt: skip
            prompt.append({"text": None, "entity": k})
        else:
            prompt.append({"text": word, "entity": None})
        prompt.append({"text": " and " if k < n else f" number {i}", "entity": None})
        start += len(word) + len(" and ")
    image = parts.image(size_index)
    return {
        "id": sample_id(image, caption), "source_key": f"{i:09d}", "url": None,
        "sha256": "0" * 64, "image": image, "image_format": "PNG", "width": w, "height": h, "caption": caption,
        "phrases": phrases, "entities": entities, "prompt": prompt, "prompt_text": prompt_text(prompt),
        "caption_original": f"<b>{caption}</b>" if i % MARKUP_EVERY == 0 else caption, "phrase_outcomes": outcomes,
    }  # fmt: skip


def write_synthetic_output(root: Path, rows: int, rejects: int = 0, image_kib: int = 32,
                           rows_per_file: int = ROWS_PER_FILE, row_group_rows: int = ROW_GROUP_ROWS,
                           random_weights: bool = True) -> Path:
    """A pipeline output folder (shards/, rejects/, manifest.json) of synthetic schema-v2 rows."""
    parts = _Parts(image_kib)
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    (root / "rejects").mkdir(exist_ok=True)
    schema = shard_schema({"random_weights": random_weights})
    for file_index, first in enumerate(range(0, max(rows, 1), rows_per_file)):
        with pq.ParquetWriter(root / "shards" / f"part-{file_index:05d}.parquet", schema) as writer:
            for low in range(first, min(first + rows_per_file, rows), row_group_rows):
                batch = [synthetic_row(i, parts) for i in range(low, min(low + row_group_rows, first + rows_per_file,
                                                                          rows))]
                writer.write_table(pa.Table.from_pylist(batch, schema=schema), row_group_size=row_group_rows)
    reject_rows = [
        {"id": f"r{i}", "source": f"{rows + i:09d}", "stage": REJECT_REASONS[i % 3][0],
         "reason": REJECT_REASONS[i % 3][1], "detail": f"synthetic reject {i}"}
        for i in range(rejects)
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(reject_rows, schema=reject_schema()), root / "rejects" / "part-00000.parquet")
    manifest = {
        "config": {"name": "synthetic"}, "config_hash": "0" * 16, "random_weights": random_weights,
        "schema_version": int(schema.metadata[VERSION_KEY]), "wall_time_s": 1.0,
        "counts": {"inputs": rows + rejects, "rows": rows, "rejects": rejects, "accounted": True},
    }  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def child(output_dir: str) -> dict:
    """Report one output in this process; its peak RSS, seconds and rows/s."""
    from pipelines.outputs.report.main import build_report

    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RUSAGE_UNIT / _MIB  # libraries loaded
    started = time.perf_counter()
    _, collected = build_report(output_dir)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RUSAGE_UNIT / _MIB
    return {"rows": collected.stats.rows, "seconds": seconds, "rows_per_s": collected.stats.rows / seconds,
            "peak_mib": peak, "imports_mib": imported}


def run_child(output_dir: Path) -> dict:
    result = subprocess.run([sys.executable, "-m", "bench.report", "--child", str(output_dir)], check=True,
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="rows of the small output")
    parser.add_argument("--factor", type=int, default=10, help="the large output has FACTOR x N rows")
    parser.add_argument("--image-kib", type=int, default=32, help="size of each image (KiB)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        runs = {}
        for label, rows in (("n", args.n), ("factor_n", args.n * args.factor)):
            folder = write_synthetic_output(Path(tmp) / label, rows, rejects=max(3, rows // 100),
                                            image_kib=args.image_kib)
            runs[label] = {**run_child(folder), "shard_mib": sum(
                p.stat().st_size for p in (folder / "shards").glob("*.parquet")) / _MIB}
    ratio = runs["factor_n"]["peak_mib"] / runs["n"]["peak_mib"]
    for label, run in runs.items():
        print(f"{label:>8}: {run['rows']:>7} rows ({run['shard_mib']:.0f} MiB of shards) in {run['seconds']:.1f} s, "
              f"{run['rows_per_s']:.0f} rows/s, peak RSS {run['peak_mib']:.0f} MiB "
              f"({run['peak_mib'] - run['imports_mib']:.0f} MiB above the {run['imports_mib']:.0f} MiB after imports)")
    verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
    print(f"peak RSS ratio {args.factor}·N / N: {ratio:.3f} (target <= {TARGET_RATIO}: {verdict})")
    if args.json:
        write_json(args.json, {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                               "args": vars(args), "runs": runs, "ratio": ratio})
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
