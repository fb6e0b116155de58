"""Benchmark inputs: the bundled sample photos replicated to N image-caption pairs of varied sizes.

Copy k of photo i is photo i resized by `SCALES[k // num_photos % len(SCALES)]`, written as JPEG with
a comment naming k, so every copy's bytes (and therefore its sample id) differ while its caption and
content stay those of a real photo. Files go in the folder layout the pipeline reads
(`SSSSS/KKKKKKKKK.jpg` + `.txt`, `input_format=folder`).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "data" / "sample" / "00000"
# Resize factors of the copies: the sample photos are 300-512 px; copies span ~180 px to ~1000 px,
# the range of web image-caption data, so resizing and padding costs are realistic.
SCALES = (1.0, 0.6, 1.5, 2.0, 0.8, 1.25)
KEYS_PER_FOLDER = 10_000  # img2dataset's default shard size
# The copies are near-duplicates of each other (resized copies of 10 photos): benchmarks that measure
# the work per row set this, or the pipeline keeps one row per photo (the plain loops would not).
KEEP_NEAR_DUPLICATES = ("near_duplicates.enabled=false",)
JPEG_QUALITY = 90


def sample_photos(source_dir: Path = SAMPLE_DIR) -> list[tuple[Image.Image, str]]:
    """(image, caption) of every `<key>.jpg` with a `<key>.txt` in `source_dir`, sorted by key."""
    pairs = []
    for image_path in sorted(source_dir.glob("*.jpg")):
        caption_path = image_path.with_suffix(".txt")
        if caption_path.is_file():
            with Image.open(image_path) as image:
                pairs.append((image.convert("RGB"), caption_path.read_text(encoding="utf-8").strip()))
    if not pairs:
        raise FileNotFoundError(f"no <key>.jpg + <key>.txt pairs in {source_dir}")
    return pairs


def make_inputs(out_dir: Path, n: int, source_dir: Path = SAMPLE_DIR) -> Path:
    """Write `n` image-caption pairs under `out_dir` (folder layout) and return `out_dir`.

    Deterministic: the same `n` and source give the same files.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    photos = sample_photos(source_dir)
    out_dir = Path(out_dir)
    for k in range(n):
        image, caption = photos[k % len(photos)]
        scale = SCALES[(k // len(photos)) % len(SCALES)]
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        folder = out_dir / f"{k // KEYS_PER_FOLDER:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{k:09d}"
        resized = image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)
        resized.save(stem.with_suffix(".jpg"), "JPEG", quality=JPEG_QUALITY, comment=f"bench copy {k}".encode())
        stem.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
    return out_dir
