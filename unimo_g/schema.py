"""The Parquet contract between the data pipeline and the trainer (schema v4, docs/design.md).

Evolve by adding fields and bumping `SCHEMA_VERSION`. Readers call `check_schema_version` on a
file's key-value metadata and refuse versions they do not know; every version from 1 on reads.

Version 2 added, after the v1 fields: `caption_original` (the caption as received; `caption` is then
the cleaned caption, `unimo_g.captions`, that phrase offsets index) and `phrase_outcomes` (one token
per phrase: `entity`, or why it became none, `PHRASE_OUTCOMES`). Version 1 files lack both columns.

Version 3 added, after the v2 fields: the input's provenance (`PROVENANCE_FIELDS`, on rejects too:
`unimo_g.provenance`), the image's perceptual hash `phash`, and the scores computed by the pipeline
(`computed_similarity`, `computed_aesthetic`; null when that stage did not run). Older files lack them.

Version 4 added, after the v3 fields: `caption_source`, who wrote `caption`: `input` (the input's own
caption, cleaned) or the id of the model that recaptioned the image (`entities.source: mllm`; the
input's caption is then only in `caption_original`). Older files lack it; their captions are the inputs'.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Mapping, Optional

import pyarrow as pa

SCHEMA_VERSION = 4
VERSION_KEY = b"unimo_g.schema_version"
LINEAGE_KEY = b"unimo_g.lineage"

PHRASE_TYPE = pa.struct([("text", pa.string()), ("start", pa.int32()), ("end", pa.int32())])

MASK_TYPE = pa.struct([("size", pa.list_(pa.int32(), 2)), ("counts", pa.string())])

ENTITY_TYPE = pa.struct(
    [
        ("phrase", pa.int32()),
        ("text", pa.string()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("box", pa.list_(pa.float32(), 4)),  # xyxy, pixels of the EXIF-transposed original
        ("box_score", pa.float32()),
        ("mask", MASK_TYPE),  # COCO compressed RLE at the original size
        ("mask_area", pa.int64()),
        ("mask_score", pa.float32()),  # SAM's predicted IoU
        ("image", pa.binary()),  # entity segment on white, encoded
        ("image_format", pa.string()),
    ]
)

PROMPT_PART_TYPE = pa.struct([("text", pa.string()), ("entity", pa.int32())])

SHARD_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("source_key", pa.string(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("sha256", pa.string(), nullable=False),
    pa.field("image", pa.binary(), nullable=False),
    pa.field("image_format", pa.string(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("caption", pa.string(), nullable=False),
    pa.field("phrases", pa.list_(PHRASE_TYPE), nullable=False),
    pa.field("entities", pa.list_(ENTITY_TYPE), nullable=False),
    pa.field("prompt", pa.list_(PROMPT_PART_TYPE), nullable=False),
    pa.field("prompt_text", pa.string(), nullable=False),
    # schema v2
    pa.field("caption_original", pa.string(), nullable=False),
    pa.field("phrase_outcomes", pa.list_(pa.string()), nullable=False),  # aligned with `phrases`
]
FIELDS_SINCE_V2 = ("caption_original", "phrase_outcomes")

METADATA_ITEM_TYPE = pa.struct([("key", pa.string()), ("value", pa.string())])

# What the input said about itself (unimo_g.provenance.Provenance); null where it did not say.
PROVENANCE_FIELDS = [
    pa.field("license", pa.string()),
    pa.field("nsfw", pa.string()),
    pa.field("similarity", pa.float32()),
    pa.field("punsafe", pa.float32()),
    pa.field("pwatermark", pa.float32()),
    pa.field("aesthetic", pa.float32()),
    pa.field("original_width", pa.int32()),
    pa.field("original_height", pa.int32()),
    # the input's other keys with JSON text values; a list of pairs, not an Arrow map, so that
    # Hugging Face `datasets` reads it too
    pa.field("source_metadata", pa.list_(METADATA_ITEM_TYPE), nullable=False),
]
SHARD_FIELDS += [
    # schema v3
    *PROVENANCE_FIELDS,
    pa.field("phash", pa.string()),  # 64-bit DCT perceptual hash of the image, 16 hex digits
    pa.field("computed_similarity", pa.float32()),  # CLIP image-caption cosine, this pipeline's score stage
    pa.field("computed_aesthetic", pa.float32()),  # aesthetic head over the CLIP image embedding
]
FIELDS_SINCE_V3 = tuple(f.name for f in SHARD_FIELDS[SHARD_FIELDS.index(PROVENANCE_FIELDS[0]):])
SHARD_FIELDS += [
    # schema v4; nullable so that rows built for older versions (without it) still write
    pa.field("caption_source", pa.string()),  # "input", or the model id that wrote `caption`
]
FIELDS_SINCE_V4 = ("caption_source",)
CAPTION_FROM_INPUT = "input"

# Outcome of a phrase (`phrase_outcomes`): it became an entity, or the first reason it did not.
OUTCOME_ENTITY = "entity"
PHRASE_OUTCOMES = (
    OUTCOME_ENTITY,
    "no_query",  # no token left for the phrase in a Grounding DINO query
    "below_threshold",  # no detection passed box_threshold and text_threshold
    "shape_filter",  # every detection failed the box area / aspect bounds
    "same_object",  # its boxes were a better-scoring phrase's boxes of the same object
    "entity_cap",  # the image already had max_entities better-scoring entities
    "empty_mask", "mask_score", "mask_area", "box_fill",  # SAM's mask failed a segmentation filter
)
# Phrases the phrase stage sets aside (never sent to grounding; `grounding.phrases.phrase_set`): a further
# mention of an entity phrase, replaced by the same entity in the prompt, or why the phrase was dropped.
OUTCOME_MENTION = "mention"
PHRASE_DROP_REASONS = (
    "pronoun",  # its head is a pronoun ("it", "they")
    "stop_head",  # framing or position: phrases.stop_heads ("the background", "a close-up")
    "quoted_text",  # inside quotation marks: text to render ("a sign that says 'Open'")
    "non_object_head",  # phrases.non_object_heads: styles, quality tags, lighting, abstract nouns, attributes
    "scene_head",  # phrases.scene_heads: settings, surfaces, sky and weather, times of day
    "number_only",  # "8K", "35mm"
    "colour_only",  # "white", "pink and white"
    "no_noun",  # a list item without a noun ("gentle")
    "duplicate",  # the same text as an earlier phrase (phrases.merge_mentions false)
    "phrase_cap",  # the caption already had phrases.max_phrases phrases
)
PHRASE_OUTCOMES += (OUTCOME_MENTION, *PHRASE_DROP_REASONS)

REJECT_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
    *PROVENANCE_FIELDS,  # schema v3
]


class SchemaVersionError(ValueError):
    """A shard was written with a schema version this code does not read."""


def _with_metadata(fields, lineage: Optional[Mapping]) -> pa.Schema:
    metadata = {VERSION_KEY: str(SCHEMA_VERSION).encode()}
    if lineage is not None:
        metadata[LINEAGE_KEY] = json.dumps(lineage, sort_keys=True).encode()
    return pa.schema(fields, metadata=metadata)


def shard_schema(lineage: Optional[Mapping] = None) -> pa.Schema:
    """The Arrow schema of sample shards, with the version (and lineage, if given) in its metadata."""
    return _with_metadata(SHARD_FIELDS, lineage)


def reject_schema(lineage: Optional[Mapping] = None) -> pa.Schema:
    """The Arrow schema of reject shards."""
    return _with_metadata(REJECT_FIELDS, lineage)


def check_schema_version(metadata: Optional[Mapping[bytes, bytes]], where: str = "shard") -> int:
    """Return the schema version recorded in Parquet key-value metadata, or raise.

    Raises `SchemaVersionError` for a missing version or one newer than `SCHEMA_VERSION`.
    """
    return read_version(metadata, VERSION_KEY, SCHEMA_VERSION, where, SchemaVersionError, "schema",
                        missing="not a unimo-g shard")


def read_version(
    metadata: Optional[Mapping[bytes, bytes]],
    key: bytes,
    newest: int,
    where: str,
    error: type[ValueError],
    label: str,
    missing: str,
) -> int:
    """The `label` version under `key` in Parquet key-value metadata, one of 1..`newest`; otherwise
    raises `error` naming `where` (`missing` says what a file without the key is not)."""
    raw = (metadata or {}).get(key)
    if raw is None:
        raise error(f"{where}: no {key.decode()} in its metadata; {missing}")
    try:
        version = int(raw)
    except ValueError:
        raise error(f"{where}: unreadable {label} version {raw!r}") from None
    if not 1 <= version <= newest:
        raise error(f"{where}: {label} version {version} is not supported (this code reads 1..{newest}); "
                    "upgrade unimo-g to read it")
    return version


def lineage_of(metadata: Optional[Mapping[bytes, bytes]]) -> dict:
    """The lineage dict stored in a shard's metadata ({} if absent)."""
    raw = (metadata or {}).get(LINEAGE_KEY)
    return json.loads(raw) if raw else {}


def sample_id(image: bytes, caption: str) -> str:
    """Stable sample id: a content hash of the image bytes and the caption."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(image).digest())
    digest.update(caption.encode("utf-8"))
    return digest.hexdigest()[:32]


_MARKER_PATTERN = re.compile(r"<img>(\d+)</img>")
_ANY_MARKER = re.compile(r"</?img>", re.IGNORECASE)


def prompt_text(prompt) -> str:
    """Render an interleaved prompt with `<img>k</img>` for entity k.

    `prompt` is a sequence of `PromptPart` or of row dicts `{"text": ..., "entity": ...}`. Raises
    ValueError for a text part holding `<img>` or `</img>` (captions escape them, `unimo_g.captions`),
    so that `parse_prompt_text` always gives the parts back.
    """
    pieces = []
    for part in prompt:
        text, entity = (part["text"], part["entity"]) if isinstance(part, Mapping) else (part.text, part.entity)
        if entity is None and _ANY_MARKER.search(text):
            raise ValueError(f"prompt text {text!r} holds an <img> marker; escape it (unimo_g.captions)")
        pieces.append(text if entity is None else f"<img>{entity}</img>")
    return "".join(pieces)


def parse_prompt_text(text: str) -> list[dict]:
    """`prompt_text` back to its parts, as row dicts `{"text": str | None, "entity": int | None}`."""
    parts: list[dict] = []
    cursor = 0
    for match in _MARKER_PATTERN.finditer(text):
        if match.start() > cursor:
            parts.append({"text": text[cursor : match.start()], "entity": None})
        parts.append({"text": None, "entity": int(match.group(1))})
        cursor = match.end()
    if cursor < len(text):
        parts.append({"text": text[cursor:], "entity": None})
    return parts
