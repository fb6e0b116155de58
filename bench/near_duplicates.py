"""How well do perceptual-hash near-duplicates and evaluation-image exclusion work, and what do they cost?

    python -m bench.near_duplicates [--photos 10] [--photos-dir DIR] [--repeats 2] [--json FILE]

From the bundled photos (`data/sample`), or every photo under `--photos-dir` (e.g. an evaluation
set: DreamBench's or MultiBench's folder), the bench builds, per photo, transformed copies
(`TRANSFORMS`: resize 0.5, crop 90%, JPEG quality 30, PNG re-encode, brightness +10%, a small text
overlay, horizontal flip, rotation by 5 and by 90 degrees) and unrelated images (each photo's four
quadrants, resized to the photo's size: other pictures of the same style). Then, through the
pipeline's own transforms (read, check, exact de-duplication, `pipelines.prompts.near_duplicates.RejectNearDuplicates`,
decode) on the DirectRunner, at the default config:

- near-duplicates: inputs = originals + copies + unrelated. Recall per transform: copies rejected as
  `near_duplicate` naming a row of their own photo. False positives: originals or unrelated images
  rejected, or copies naming another photo's row.
- evaluation overlap: `exclude.images` = the originals; inputs = copies + unrelated (near-duplicates
  off). Recall per transform: copies rejected as `eval_overlap` naming their original; false
  positives: unrelated images rejected, or copies naming another photo.
- pairs: over every pair of inputs of different photos, how many lie within each threshold (hash
  distances, exhaustive), and how many pairs within `max_distance` share an LSH band.
- CPU: process CPU time of the same pre-model pipeline with near-duplicates on vs off, same run, per
  input (the hash, the keys, the bucket work, the side input), best of `--repeats`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Sequence

import apache_beam as beam
from PIL import Image, ImageDraw, ImageEnhance

from bench.inputs import sample_photos
from bench.results import write_json
from unimo_g.images.decoding import hash_distance, perceptual_hash
from unimo_g.pipeline_config import ExcludeConfig, NearDuplicateConfig, PipelineConfig
from unimo_g.schema import sample_id

JPEG_QUALITY = 90  # how the originals and lossless-intent copies are written


def _jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _crop(image: Image.Image, keep: float = 0.9) -> Image.Image:
    width, height = round(image.width * keep), round(image.height * keep)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def _overlay(image: Image.Image) -> Image.Image:
    out = image.copy()
    ImageDraw.Draw(out).text((8, 8), "sample watermark", fill=(255, 255, 255))
    return out


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "resize_0.5": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.BICUBIC)),
    "crop_90": lambda im: _jpeg(_crop(im)),
    "jpeg_q30": lambda im: _jpeg(im, 30),
    "png": _png,
    "brightness_+10": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(1.1)),
    "text_overlay": lambda im: _jpeg(_overlay(im)),
    "flip": lambda im: _jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    "rotate_5": lambda im: _jpeg(im.rotate(5, Image.Resampling.BICUBIC)),  # same canvas, black corners
    "rotate_90": lambda im: _jpeg(im.transpose(Image.Transpose.ROTATE_90)),
}


def unrelated_images(image: Image.Image) -> list[Image.Image]:
    """The photo's four quadrants, each resized back to the photo's size."""
    half_w, half_h = image.width // 2, image.height // 2
    boxes = [(0, 0, half_w, half_h), (half_w, 0, image.width, half_h), (0, half_h, half_w, image.height),
             (half_w, half_h, image.width, image.height)]
    return [image.crop(box).resize(image.size, Image.Resampling.BICUBIC) for box in boxes]


@dataclasses.dataclass(frozen=True)
class TestImage:
    """`photo`: index of the bundled photo it comes from (None: unrelated); `kind`: original, a
    transform name, or unrelated. `key` sorts originals first, so they are the rows kept."""

    key: str
    photo: Optional[int]
    kind: str
    data: bytes


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def folder_photos(folder: Path) -> list[Image.Image]:
    """Every image under `folder` (sorted by path), upright RGB with transparency on white."""
    from unimo_g.images.decoding import decode_image
    from unimo_g.pipeline_config import DecodeConfig

    limits = DecodeConfig(min_side=1, max_aspect_ratio=float("inf"))
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return [Image.fromarray(decode_image(p.read_bytes(), limits).pixels) for p in paths]


def make_set(num_photos: Optional[int] = None, photos_dir: Optional[Path] = None) -> list[TestImage]:
    """Originals, transformed copies and unrelated images of the first `num_photos` photos (the
    bundled ones, or those under `photos_dir`)."""
    photos = folder_photos(photos_dir) if photos_dir else [photo for photo, _ in sample_photos()]
    images = []
    for index, photo in enumerate(photos[:num_photos]):
        images.append(TestImage(f"a{index:02d}", index, "original", _jpeg(photo)))
        for name, transform in TRANSFORMS.items():
            images.append(TestImage(f"b{index:02d}-{name}", index, name, transform(photo)))
        for quadrant, image in enumerate(unrelated_images(photo)):
            images.append(TestImage(f"c{index:02d}-{quadrant}", None, "unrelated", _jpeg(image)))
    return images


def caption_of(image: TestImage) -> str:
    return f"a photo ({image.key})"


def write_folder(images: Sequence[TestImage], folder: Path) -> Path:
    """The images in the pipeline's folder layout (`<key>.jpg` + `<key>.txt`; the suffix is not the format)."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        (folder / f"{image.key}.jpg").write_bytes(image.data)
        (folder / f"{image.key}.txt").write_text(caption_of(image), encoding="utf-8")
    return folder


# ---------------------------------------------------------------- the pipeline's pre-model part


def run_pre_model(input_dir: Path, config: PipelineConfig) -> list[dict]:
    """Read, check, de-duplicate (exact, near, evaluation), decode the inputs of `input_dir` on the
    DirectRunner; returns the rejects as dicts (stage, reason, source, detail)."""
    from pipelines.io.sources import ReadSamples
    from pipelines.prompts.decode import Check, Decode
    from pipelines.prompts.graph import deduplicate
    from pipelines.prompts.near_duplicates import RejectNearDuplicates, uses_hash_keys
    from pipelines.staged import passed

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rejects"
        with beam.Pipeline(runner="DirectRunner") as pipeline:
            rejects: list = []
            raw = pipeline | "Read" >> ReadSamples(str(input_dir), "folder", config=config.read)
            samples = passed(raw | "Check" >> Check(config.phrases.max_caption_chars), rejects)
            unique, key_samples = deduplicate(pipeline, samples, str(input_dir), "folder", config)
            samples = passed(unique, rejects)
            if uses_hash_keys(config):
                samples = passed(samples | "NearDuplicates" >> RejectNearDuplicates(key_samples, config), rejects)
            samples = passed(samples | "Decode" >> Decode(config.decode), rejects)
            _ = samples | "Drop" >> beam.Filter(lambda sample: False)
            _ = (
                rejects
                | "AllRejects" >> beam.Flatten()
                | "AsJson" >> beam.Map(lambda r: json.dumps(
                    {"stage": r.stage, "reason": r.reason, "source": r.source, "detail": r.detail}))
                | "Write" >> beam.io.WriteToText(str(out), file_name_suffix=".jsonl")
            )
        return [json.loads(line) for path in sorted(Path(tmp).glob("rejects*"))
                for line in path.read_text().splitlines()]


def _photo_of_detail(detail: str, ids: dict[str, TestImage]) -> Optional[int]:
    """The photo of the row or evaluation image a reject's detail names."""
    for name, image in ids.items():
        if name in detail:
            return image.photo
    return None


def score(images: Sequence[TestImage], rejects: Sequence[dict], reason: str, id_of: dict[str, str],
          candidates: Sequence[str]) -> dict:
    """Recall per transform and false positives of one detection (`reason`) from the run's rejects."""
    by_key = {image.key: image for image in images}
    named = {id_of.get(image.key, f"/{image.key}"): image for image in images}  # ids (rows) or eval names
    found = {r["source"]: r for r in rejects if r["reason"] == reason}
    recall, false_positives, negatives = {}, 0, 0
    for name in TRANSFORMS:
        copies = [image for image in images if image.kind == name and image.key in candidates]
        hits = sum(1 for image in copies if image.key in found
                   and _photo_of_detail(found[image.key]["detail"], named) == image.photo)
        recall[name] = {"found": hits, "of": len(copies), "recall": round(hits / max(1, len(copies)), 3)}
    for key in candidates:
        image = by_key[key]
        if image.kind in TRANSFORMS:
            if key in found and _photo_of_detail(found[key]["detail"], named) != image.photo:
                false_positives += 1
        elif image.kind in ("unrelated", "original") and not (reason == "eval_overlap" and image.kind == "original"):
            negatives += 1
            false_positives += key in found
    copies_total = sum(v["of"] for v in recall.values())
    return {"recall_by_transform": recall,
            "recall": round(sum(v["found"] for v in recall.values()) / max(1, copies_total), 3),
            "false_positives": false_positives, "negatives": negatives,
            "false_positive_rate": round(false_positives / max(1, negatives), 4)}


def pair_stats(images: Sequence[TestImage], config: PipelineConfig) -> dict:
    """Exhaustive hash distances: pairs of different photos (or unrelated) within each threshold, and
    pairs of one photo within `max_distance` that share an LSH band."""
    from pipelines.prompts.near_duplicates import band_values, hash_value, mirrored_hash

    near = config.near_duplicates
    hashes = {image.key: perceptual_hash(image.data, config.decode) for image in images}
    different = same = same_banded = 0
    within = Counter()
    for i, first in enumerate(images):
        for second in images[i + 1:]:
            distance = hash_distance(hashes[first.key], hashes[second.key])
            related = first.photo is not None and first.photo == second.photo
            if related:
                if distance <= near.max_distance:
                    same += 1
                    same_banded += any(a == b for a, b in zip(band_values(hash_value(hashes[first.key]), near.bands),
                                                               band_values(hash_value(hashes[second.key]), near.bands)))
                continue
            different += 1
            for threshold in (near.max_distance, config.exclude.phash_distance):
                within[threshold] += distance <= threshold
    smallest = min(hash_distance(hashes[a.key], hashes[b.key]) for i, a in enumerate(images) for b in images[i + 1:]
                   if a.photo is None or a.photo != b.photo)
    # evaluation images also match through their mirror image's hash: its distances to other photos
    mirrored = {image.photo: mirrored_hash(image.data, config) for image in images if image.kind == "original"}
    mirror_distances = [hash_distance(value, hashes[other.key]) for photo, value in mirrored.items()
                        for other in images if other.photo != photo]
    return {"unrelated_pairs": different, "smallest_unrelated_distance": smallest,
            "unrelated_pairs_within": {str(k): v for k, v in sorted(within.items())},
            "related_pairs_within_max_distance": same, "of_which_share_a_band": same_banded,
            "mirrored_unrelated_pairs": len(mirror_distances),
            "smallest_mirrored_unrelated_distance": min(mirror_distances),
            "mirrored_unrelated_pairs_within_phash_distance": sum(d <= config.exclude.phash_distance
                                                                 for d in mirror_distances)}


def benchmark(num_photos: Optional[int], repeats: int, workdir: Path, photos_dir: Optional[Path] = None) -> dict:
    images = make_set(num_photos, photos_dir)
    base = PipelineConfig()
    folder = write_folder(images, workdir / "all")
    eval_dir = write_folder([i for i in images if i.kind == "original"], workdir / "eval")
    probe_dir = write_folder([i for i in images if i.kind != "original"], workdir / "probe")
    id_of = {image.key: sample_id(image.data, caption_of(image)) for image in images}
    eval_names = {image.key: f"{eval_dir}/{image.key}" for image in images if image.kind == "original"}

    near_rejects = run_pre_model(folder, base)
    near = score(images, near_rejects, "near_duplicate", id_of, [i.key for i in images])
    eval_config = dataclasses.replace(base, near_duplicates=NearDuplicateConfig(enabled=False),
                                      exclude=ExcludeConfig(images=(str(eval_dir),)))
    eval_rejects = run_pre_model(probe_dir, eval_config)
    overlap = score(images, eval_rejects, "eval_overlap", {**id_of, **eval_names},
                    [i.key for i in images if i.kind != "original"])

    off = dataclasses.replace(base, near_duplicates=NearDuplicateConfig(enabled=False))
    cpu = {"on": [], "off": []}
    for _ in range(repeats):
        for name, config in (("off", off), ("on", base)):
            start = time.process_time()
            run_pre_model(folder, config)
            cpu[name].append(time.process_time() - start)
    hash_start = time.process_time()
    for image in images:
        perceptual_hash(image.data, base.decode)
    hash_ms = (time.process_time() - hash_start) / len(images) * 1000
    n = len(images)
    best = {name: min(values) for name, values in cpu.items()}
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "photos": len({i.photo for i in images if i.photo is not None}), "inputs": n,
        "max_distance": base.near_duplicates.max_distance, "bands": base.near_duplicates.bands,
        "phash_distance": base.exclude.phash_distance,
        "near_duplicates": near, "eval_overlap": overlap, "pairs": pair_stats(images, base),
        "cpu": {"hash_ms_per_image": round(hash_ms, 3),
                "pre_model_ms_per_input_off": round(best["off"] / n * 1000, 2),
                "pre_model_ms_per_input_on": round(best["on"] / n * 1000, 2),
                "added_ms_per_input": round((best["on"] - best["off"]) / n * 1000, 2),
                "ratio_on_off": round(best["on"] / best["off"], 3)},
    }


def format_report(report: dict) -> str:
    lines = [f"{report['inputs']} inputs from {report['photos']} photos; max_distance {report['max_distance']}, "
             f"bands {report['bands']}, exclude.phash_distance {report['phash_distance']}"]
    for title in ("near_duplicates", "eval_overlap"):
        part = report[title]
        lines.append(f"{title}: recall {part['recall']}, false positives {part['false_positives']}/{part['negatives']}")
        for name, value in part["recall_by_transform"].items():
            lines.append(f"  {name:<15} {value['found']}/{value['of']}")
    lines.append(f"pairs: {json.dumps(report['pairs'])}")
    lines.append(f"cpu: {json.dumps(report['cpu'])}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=None, help="photos to use (default: all)")
    parser.add_argument("--photos-dir", type=Path, default=None,
                        help="use every image under this folder instead of the bundled photos")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes of each pipeline (best is kept)")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = benchmark(args.photos, args.repeats, Path(tmp), args.photos_dir)
    report["photos_dir"] = str(args.photos_dir) if args.photos_dir else "data/sample"
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
