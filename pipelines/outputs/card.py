"""OUTPUT/README.md: a Hugging Face dataset card generated from the run's manifest.

The YAML header lets `datasets.load_dataset(OUTPUT)` read `shards/*.parquet` with the features of
the shard schema; the body says what each column means, the counts, models and thresholds, the
prompt format and the known limitations. Nothing but the manifest, the first shard's schema and,
when the shards carry a licence column, that small column is read.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from apache_beam.io.filesystems import FileSystems

from pipelines.io.write import matching_files, shard_files_pattern
from unimo_g.schema import OUTCOME_ENTITY, PHRASE_OUTCOMES, shard_schema

CARD_NAME = "README.md"
SHARDS_GLOB = "shards/*.parquet"
TASK_CATEGORIES = ["text-to-image"]
LICENSE_COLUMNS = ("license", "LICENSE", "licence")  # schema v3's `license` first
MAX_LICENSES = 20  # distinct licence values listed; more make the set "other"

COLUMNS = {
    "id": "stable sample id: content hash of the image bytes and the caption as received (`caption_original`)",
    "source_key": "the input's key (file stem, img2dataset key or manifest key)",
    "url": "where the image came from, when the input says",
    "sha256": "SHA-256 of the image bytes",
    "image": "the image, bytes as received (decode with PIL; apply EXIF orientation)",
    "image_format": "format of `image` (JPEG, PNG, ...)",
    "width": "image width in pixels, after EXIF transpose",
    "height": "image height in pixels, after EXIF transpose",
    "caption": "the cleaned caption (HTML entities unescaped, tags and control characters removed, whitespace "
               "collapsed) that the phrase and entity offsets index and the prompt is built from",
    "phrases": "every noun phrase found in `caption`: text and [start, end) character offsets into `caption`; "
               "those not grounded say why in `phrase_outcomes`",
    "entities": "grounded phrases: phrase index, text, offsets, box (xyxy pixels of the EXIF-transposed image), "
                "box_score, mask (COCO compressed RLE at the image size), mask_area, mask_score (SAM's predicted "
                "IoU), image (the segment on white, encoded) and image_format",
    "prompt": "the interleaved prompt: parts with `text`, or `entity` = index into `entities`",
    "prompt_text": "the prompt rendered as text, entity k written `<img>k</img>`",
    "caption_original": "the caption as received, before cleaning (offsets do not index it; schema v2)",
    "phrase_outcomes": "one per phrase, aligned with `phrases`: `entity` when phrase k became an entity, else the "
                       "first reason it did not: " + ", ".join(f"`{o}`" for o in PHRASE_OUTCOMES if o != OUTCOME_ENTITY)
                       + " (`unimo_g/schema.py`; schema v2)",
    # schema v3: what the input said about itself (`unimo_g/provenance.py`), null where it did not say
    "license": "the licence the input named (img2dataset `LICENSE` / `license`); null when it named none",
    "nsfw": "the input's NSFW tag (LAION: `UNLIKELY`, `UNSURE`, `NSFW`; schema v3)",
    "similarity": "the input's image-caption CLIP similarity as its source computed it (LAION `similarity`; "
                  "schema v3)",
    "punsafe": "the input's probability of unsafe content (LAION `punsafe`; schema v3)",
    "pwatermark": "the input's probability of a watermark (LAION `pwatermark`; schema v3)",
    "aesthetic": "the input's aesthetic score (LAION `aesthetic` / `AESTHETIC_SCORE`; schema v3)",
    "original_width": "the image's width as the source recorded it, before any resize by the downloader (schema v3)",
    "original_height": "the image's height as the source recorded it, before any resize by the downloader "
                       "(schema v3)",
    "source_metadata": "the input's other metadata (e.g. credit, source, hash, exif): (key, JSON text) pairs "
                       "sorted by key, bounded in number and length (schema v3)",
    "phash": "64-bit DCT perceptual hash of the image, 16 hex digits (schema v3)",
    "computed_similarity": "image-caption CLIP cosine computed by this pipeline's score stage; null when it did "
                           "not run (schema v3)",
    "computed_aesthetic": "aesthetic score computed by this pipeline from the CLIP image embedding; null when it "
                          "did not run (schema v3)",
    "caption_source": "who wrote `caption`: `input` (the input's own caption), or the id of the vision-language "
                      "model that recaptioned the image (`entities.source: mllm`; schema v4)",
}  # fmt: skip
_SCALARS = {"float": "float32", "double": "float64", "halffloat": "float16"}


class UnsupportedType(ValueError):
    """An Arrow type with no Hugging Face feature spelling."""


def feature_of(arrow_type: pa.DataType) -> dict:
    """The Hugging Face feature (as in a card's `dataset_info.features`) of an Arrow type, without its name."""
    if pa.types.is_struct(arrow_type):
        return {"struct": [{"name": f.name, **feature_of(f.type)} for f in arrow_type]}
    if pa.types.is_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type) or pa.types.is_large_list(arrow_type):
        inner = feature_of(arrow_type.value_type)
        value = inner["dtype"] if "dtype" in inner else inner.get("struct", inner)
        out = {"list": value}
        if pa.types.is_fixed_size_list(arrow_type):
            out["length"] = arrow_type.list_size
        return out
    if (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type)
            or pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)):  # fmt: skip
        name = str(arrow_type)
        return {"dtype": _SCALARS.get(name, name)}
    raise UnsupportedType(f"no dataset-card feature for Arrow type {arrow_type}")


def features_of(schema: pa.Schema) -> Optional[list[dict]]:
    """`dataset_info.features` of a shard schema; None when a column has no card spelling (then
    `datasets` infers the features from the Parquet files)."""
    try:
        return [{"name": field.name, **feature_of(field.type)} for field in schema]
    except UnsupportedType:
        return None


def short_type(arrow_type: pa.DataType) -> str:
    """`list<struct>`, `string`, ...: an Arrow type without its field names."""
    if pa.types.is_struct(arrow_type):
        return "struct"
    if pa.types.is_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type) or pa.types.is_large_list(arrow_type):
        size = f"[{arrow_type.list_size}]" if pa.types.is_fixed_size_list(arrow_type) else ""
        return f"list<{short_type(arrow_type.value_type)}>{size}"
    return str(arrow_type)


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if rows < limit:
            return label
    return "100M<n<1B"


def _first_shard_schema(files: list[str]) -> pa.Schema:
    if not files:
        return shard_schema()
    with FileSystems.open(files[0]) as handle:
        return pq.ParquetFile(handle).schema_arrow


def input_licenses(files: list[str], schema: pa.Schema) -> list[str]:
    """Distinct values of the shards' licence column (none: []); read row group by row group."""
    column = next((c for c in LICENSE_COLUMNS if c in schema.names), None)
    if column is None:
        return []
    seen: set[str] = set()
    for path in files:
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            for group in range(parquet.metadata.num_row_groups):
                values = parquet.read_row_group(group, columns=[column]).column(0).unique().to_pylist()
                seen.update(str(v) for v in values if v not in (None, ""))
                if len(seen) > MAX_LICENSES:
                    return sorted(seen)
    return sorted(seen)


def card_header(manifest: Mapping, features: Optional[list], licenses: list[str]) -> dict:
    licence = manifest.get("license") or (manifest.get("input") or {}).get("license")
    if licence is None and licenses:
        licence = licenses[0].lower() if len(licenses) == 1 else "other"
    rows = int((manifest.get("counts") or {}).get("rows") or 0)
    header: dict[str, Any] = {}
    if licence:
        header["license"] = str(licence)
    header.update({
        "task_categories": TASK_CATEGORIES,
        "tags": ["unimo-g", "multimodal-prompts", "grounding", "segmentation"],
        "size_categories": [_size_category(rows)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": SHARDS_GLOB}]}],
    })  # fmt: skip
    if features is not None:
        header["dataset_info"] = {"config_name": "default", "features": features}
    return header


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _thresholds(config: Mapping) -> list[list[Any]]:
    """Result-changing numbers of the model stages: scalar settings outside `runtime`."""
    rows = []
    for section in ("phrases", "grounding", "segmentation", "entity_image", "compose", "decode", "filters"):
        for key, value in (config.get(section) or {}).items():
            if key not in ("runtime", "stop_heads") and isinstance(value, (int, float, str, bool)) and key != "model":
                rows.append([f"{section}.{key}", value])
            elif section == "filters" and key == "rules" and value:  # the rules rows had to pass
                rows.append(["filters.rules", "; ".join(f"`{rule}`" for rule in value)])
    return rows


def card_body(manifest: Mapping, schema: pa.Schema, licenses: list[str]) -> str:
    config = manifest.get("config") or {}
    counts = manifest.get("counts") or {}
    name = config.get("name", "?")
    parts = [f"# unimo-g multimodal-prompt dataset (config `{name}`)", ""]
    if manifest.get("random_weights"):
        parts += ["> **Random weights.** This set was made with random-weight models: its boxes, masks, entity "
                  "images and prompts are NOT meaningful. Use it to test code, never to train a model.", ""]
    parts += [
        "Samples for [UNIMO-G](https://arxiv.org/abs/2401.13388)-style training: each image–caption pair with its "
        "noun phrases, the phrases grounded to boxes (Grounding DINO) and masks (SAM), each entity's segment on "
        "white, and the interleaved multimodal prompt. Made by the unimo-g toolkit's Beam pipeline.",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("path/to/this/folder", split="train")',
        "```",
        "",
        "## Counts",
        "",
        _md_table(["", "n"], [["inputs", counts.get("inputs")], ["rows", counts.get("rows")],
                              ["rejects", counts.get("rejects")]]),
        "",
        f"Every input is accounted for: inputs = rows + rejects ({counts.get('accounted')}). Rejects "
        "(id, source, stage, reason, detail) are in `rejects/*.parquet`, not in the dataset's split.",
    ]
    by_reason = counts.get("rejects_by_reason") or {}
    if by_reason:
        parts += ["", _md_table(["stage", "reason", "rejects"],
                                [[s, r, n] for s, reasons in by_reason.items() for r, n in reasons.items()])]
    parts += ["", "## Columns", "", _md_table(
        ["column", "type", "meaning"],
        [[f"`{f.name}`", f"`{short_type(f.type)}`", COLUMNS.get(f.name, "see `unimo_g/schema.py`")]
         for f in schema])]  # fmt: skip
    parts += [
        "", "## Prompt format", "",
        "`prompt` is the caption with each grounded entity phrase replaced by that entity's image: text parts and "
        "entity parts in caption order. `prompt_text` writes entity k as `<img>k</img>`, e.g. "
        "`<img>0</img> sleeping on <img>1</img>`; the image of entity k is `entities[k].image`. Boxes are xyxy in "
        "pixels of the EXIF-transposed image; masks are COCO compressed RLE (`pycocotools.mask.decode`).",
        "", "## Models and thresholds", "",
        _md_table(["stage", "model", "revision"],
                  [[k, v.get("id"), v.get("revision")] for k, v in (manifest.get("models") or {}).items()
                   if isinstance(v, Mapping)]),
        "", _md_table(["setting", "value"], _thresholds(config)),
        "", f"Config hash `{manifest.get('config_hash')}`, schema version {manifest.get('schema_version')}, "
        f"created {manifest.get('created_at')}; the full config, model ids and library versions are in "
        "`manifest.json` and in every shard's Parquet metadata.",
        "", "## Known limitations", "",
    ]  # fmt: skip
    limits = []
    if manifest.get("random_weights"):
        limits.append("Random-weight models: nothing in the rows is meaningful.")
    limits += [
        "The paper gives no detection thresholds, NMS or area filters; the values above are documented defaults "
        "of related pipelines (Grounded-SAM, Subject-Diffusion), not the paper's.",
        "Phrases come from spaCy noun chunks; a phrase the parser misses cannot become an entity.",
        "Images keep their sources' rights: " + (", ".join(licenses) if licenses else "no licence was recorded "
                                                 "with the inputs") + ".",
    ]
    parts += [f"- {line}" for line in limits]
    parts += ["", "## Citation", "", "Li et al., *UNIMO-G: Unified Image Generation through Multimodal Conditional "
              "Diffusion*, arXiv:2401.13388, 2024.", ""]
    return "\n".join(parts)


def write_dataset_card(output_dir: str, manifest: Mapping) -> str:
    """Write OUTPUT/README.md for a finished run's manifest; returns its path."""
    files = matching_files(shard_files_pattern(output_dir))
    schema = _first_shard_schema(files)
    licenses = input_licenses(files, schema)
    header = yaml.safe_dump(card_header(manifest, features_of(schema), licenses), sort_keys=False,
                            allow_unicode=True)
    text = f"---\n{header}---\n\n{card_body(manifest, schema, licenses)}"
    path = FileSystems.join(output_dir, CARD_NAME)
    with FileSystems.create(path) as handle:
        handle.write(text.encode("utf-8"))
    return path
