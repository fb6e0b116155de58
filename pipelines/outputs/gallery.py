"""A self-contained HTML page to look at a pipeline output.

    python -m pipelines.outputs.gallery OUTPUT_DIR [--out FILE.html] [--limit N]

Reads `OUTPUT_DIR/shards/*.parquet`, `OUTPUT_DIR/rejects/*.parquet` and `OUTPUT_DIR/manifest.json`
with pyarrow alone and writes one HTML file (default `OUTPUT_DIR/gallery.html`; nothing else is
written) with every image inline as base64. Per sample: the image with each entity's mask and box
drawn in one colour per entity, the caption, the interleaved prompt with each entity's crop where
`<img>k</img>` stands, the phrases and entities. A header summarises the manifest and counts rows
and rejects by stage and reason; a table lists the rejects.

Coordinates: boxes are xyxy in pixels of the EXIF-transposed original image; masks are COCO
compressed RLE at that size (the shard contract, `unimo_g/schema.py`).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

import pyarrow.parquet as pq
from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.outputs.overlay import draw_overlay, entity_color
from unimo_g.config_tools import ConfigError, from_dict
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.schema import check_schema_version
from unimo_g.usage import UsageError, first_paragraph, run_job

MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "JPG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


def counted(n: int, noun: str, plural: str = "") -> str:
    """"1 row", "2,048 rows", "1 entity", "3 entities" (`plural` for nouns not made with an s)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _hex(color: Sequence[int]) -> str:
    return "#%02x%02x%02x" % tuple(color)


def data_uri(data: bytes, image_format: str) -> str:
    mime = MIME.get(image_format.upper(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _encode(image: Image.Image, max_side: int) -> str:
    shown = image.copy()
    shown.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    shown.save(buffer, format="JPEG", quality=88)
    return data_uri(buffer.getvalue(), "JPEG")


def _crop_img(entity: Mapping, k: int) -> str:
    label = html.escape(f"{k}: {entity['text']}")
    return (
        f'<img class="crop" src="{data_uri(entity["image"], entity["image_format"])}" '
        f'alt="{label}" title="{label}" style="border-color:{_hex(entity_color(k))}">'
    )


def render_prompt_html(prompt: Sequence[Mapping], entities: Sequence[Mapping]) -> str:
    """The interleaved prompt as HTML: text parts escaped, entity k as an inline <img> of its crop."""
    pieces = []
    for part in prompt:
        k = part.get("entity")
        if k is None:
            pieces.append(html.escape(part["text"]))
        elif 0 <= k < len(entities):
            pieces.append(_crop_img(entities[k], k))
        else:
            pieces.append(f'<span class="bad">[missing entity {int(k)}]</span>')
    return "".join(pieces)


def render_sample_html(row: Mapping, max_side: int = 640) -> str:
    """One sample card: overlay image, caption, prompt, phrases and entities."""
    entities = row["entities"]
    try:
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(row["image"])))
        picture = f'<img class="main" src="{_encode(draw_overlay(image, entities), max_side)}" alt="sample">'
    except (UnidentifiedImageError, OSError, ValueError) as err:  # show the row, flag the defect
        picture = f'<p class="bad">cannot draw this sample: {html.escape(str(err))}</p>'
    meta = (row["source_key"], f"{row['width']}×{row['height']}", row["url"], f"id {row['id']}")
    grounded = {entity["phrase"]: k for k, entity in enumerate(entities)}
    phrases = " · ".join(
        f'<span style="color:{_hex(entity_color(grounded[i])) if i in grounded else "inherit"}" '
        f'title="[{phrase["start"]}, {phrase["end"]})">{html.escape(phrase["text"])}</span>'
        for i, phrase in enumerate(row["phrases"])
    )
    entity_rows = "".join(
        f'<tr><td style="color:{_hex(entity_color(k))}">{k}</td><td>{html.escape(e["text"])}</td>'
        f"<td>{', '.join(f'{v:.1f}' for v in e['box'])}</td><td>{e['box_score']:.3f}</td>"
        f"<td>{e['mask_score']:.3f}</td><td>{e['mask_area']}</td><td>{_crop_img(e, k)}</td></tr>"
        for k, e in enumerate(entities)
    )
    return (
        '<div class="card">'
        f"{picture}"
        '<div class="text">'
        f'<p class="caption">{html.escape(row["caption"])}</p>'
        f'<p class="prompt">{render_prompt_html(row["prompt"], entities)}</p>'
        f'<p class="phrases">{counted(len(row["phrases"]), "phrase")}: {phrases or "none"}</p>'
        f"<details><summary>{counted(len(entities), 'entity', 'entities')}</summary>"
        "<table><tr><th>k</th><th>text</th><th>box xyxy</th><th>box</th><th>mask</th><th>area</th>"
        f"<th>crop</th></tr>{entity_rows}</table></details>"
        f'<p class="meta">{" · ".join(html.escape(str(m)) for m in meta if m)}</p>'
        "</div></div>"
    )


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def iter_rows(files: Sequence[Path], limit: Optional[int] = None, batch_size: int = 16) -> Iterator[dict]:
    """Rows of schema-v1 Parquet files, in file order, at most `limit`; checks each file's version."""
    seen = 0
    for path in files:
        parquet = pq.ParquetFile(path)
        check_schema_version(parquet.schema_arrow.metadata, where=str(path))
        for batch in parquet.iter_batches(batch_size=batch_size):
            for row in batch.to_pylist():
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield row


def count_rows(files: Sequence[Path]) -> int:
    return sum(pq.ParquetFile(path).metadata.num_rows for path in files)


def says_random_weights(manifest: Mapping) -> bool:
    """True when the manifest flags random weights, or its config builds a random-weight model."""
    if manifest.get("random_weights"):
        return True
    config = manifest.get("config")
    if not isinstance(config, Mapping):
        return False
    try:
        return from_dict(PipelineConfig, config).random_weights
    except ConfigError:
        return False


def render_banner_html(manifest: Mapping) -> str:
    """The random-weights warning when the manifest says so, else ''."""
    if not says_random_weights(manifest):
        return ""
    return (
        '<div class="banner">Random weights: this output was made with random-weight models; '
        "its boxes, masks and scores are NOT meaningful.</div>"
    )


def render_header_html(manifest: Optional[Mapping], n_rows: int, rejects: Sequence[Mapping]) -> str:
    """Manifest summary, random-weights banner, and row/reject counts by (stage, reason)."""
    parts = []
    if manifest is None:
        parts.append('<p class="bad">no manifest.json in this output</p>')
        manifest = {}
    config = manifest.get("config")
    name = config.get("name") if isinstance(config, Mapping) else manifest.get("config_name")
    parts.append(f"<h1>unimo-g output · config {html.escape(str(name or '?'))}</h1>")
    parts.append(render_banner_html(manifest))
    by_reason = Counter((r["stage"], r["reason"]) for r in rejects)
    reason_rows = "".join(
        f"<tr><td>{html.escape(stage)}</td><td>{html.escape(reason)}</td><td>{n}</td></tr>"
        for (stage, reason), n in sorted(by_reason.items())
    )
    parts.append(
        f"<p>{n_rows} rows, {len(rejects)} rejects, {n_rows + len(rejects)} inputs accounted for.</p>"
        f"<table><tr><th>stage</th><th>reason</th><th>rejects</th></tr>{reason_rows}</table>"
    )
    if manifest:
        dump = html.escape(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        parts.append(f"<details><summary>manifest.json</summary><pre>{dump}</pre></details>")
    return "".join(parts)


def render_rejects_html(rejects: Sequence[Mapping], max_rows: int) -> str:
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in ("id", "source", "stage", "reason", "detail"))
        + "</tr>"
        for r in rejects[:max_rows]
    )  # fmt: skip
    more = f"<p>{len(rejects) - max_rows} more rejects not shown.</p>" if len(rejects) > max_rows else ""
    return (
        f"<h2>Rejects ({len(rejects)})</h2><table><tr><th>id</th><th>source</th><th>stage</th><th>reason</th>"
        f"<th>detail</th></tr>{rows}</table>{more}"
    )


STYLE = """
body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}
.banner{background:#b00020;color:#fff;padding:.8em;font-weight:bold;margin:.5em 0}
.card{display:flex;gap:1.2em;background:#fff;border:1px solid #ddd;margin:1em 0;padding:1em}
.card img.main{flex-shrink:0;align-self:flex-start}
.text{min-width:20em}.caption{font-size:1.1em}.prompt{line-height:3.2em}.phrases{font-size:.9em}
img.crop{height:3em;vertical-align:middle;border:3px solid;margin:0 .15em;background:#fff}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}
.meta{color:#777;font-size:.85em}.bad{color:#b00020}
"""


def build_gallery(output_dir: Path, limit: Optional[int] = 100, max_side: int = 640, max_rejects: int = 1000) -> str:
    """The whole HTML page for a pipeline output folder."""
    shards, reject_files = _parquet_files(output_dir / "shards"), _parquet_files(output_dir / "rejects")
    manifest_path = output_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
    rejects = list(iter_rows(reject_files))
    n_rows = count_rows(shards)
    cards = [render_sample_html(row, max_side) for row in iter_rows(shards, limit)]
    shown = f"<h2>Samples ({len(cards)} of {n_rows})</h2>"
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>unimo-g gallery</title>'
        f"<style>{STYLE}</style></head><body>"
        f"{render_header_html(manifest, n_rows, rejects)}{shown}{''.join(cards)}"
        f"{render_rejects_html(rejects, max_rejects)}</body></html>"
    )


PROG = "python -m pipelines.outputs.gallery"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output_dir", type=Path, help="pipeline output folder (shards/, rejects/, manifest.json)")
    parser.add_argument("--out", type=Path, default=None, help="HTML file to write (default OUTPUT_DIR/gallery.html)")
    parser.add_argument("--limit", type=int, default=100, help="show at most N samples (default 100)")


def run(args: argparse.Namespace) -> int:
    if not args.output_dir.is_dir():
        raise UsageError(f"{args.output_dir} is not a folder")
    if args.limit < 0:
        raise UsageError(f"--limit must be >= 0, got {args.limit}")
    out = args.out or args.output_dir / "gallery.html"
    out.write_text(build_gallery(args.output_dir, args.limit), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, add_arguments, run, argv, first_paragraph(__doc__))


if __name__ == "__main__":
    sys.exit(main())
