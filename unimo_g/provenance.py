"""What an input says about itself, carried to its row or reject (schema v3).

img2dataset writes, beside each image, the columns of its input table (`LICENSE`, `NSFW`,
`similarity`, `punsafe`, `pwatermark`, `AESTHETIC_SCORE`, ...) and the image's original size. The
well-known ones become typed columns; every other key lands in `source_metadata`, (key, JSON text)
pairs, so the shard schema is the same whatever an input carries.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Mapping, Optional


@dataclass(frozen=True)
class Provenance:
    """Typed provenance of one input; a field is None when the input does not say.

    `original_width` / `original_height` are the image's size as the source recorded it (img2dataset:
    before its resize), not the decoded size (`width` / `height` of the row). `source_metadata` holds
    (key, JSON text) pairs sorted by key, for the keys without a typed column.
    """

    license: Optional[str] = None
    nsfw: Optional[str] = None  # LAION's tag: "UNLIKELY", "UNSURE", "NSFW"
    similarity: Optional[float] = None  # image-caption CLIP similarity as the input carries it
    punsafe: Optional[float] = None  # LAION's probability of unsafe content
    pwatermark: Optional[float] = None  # LAION's probability of a watermark
    aesthetic: Optional[float] = None  # aesthetic score as the input carries it
    original_width: Optional[int] = None
    original_height: Optional[int] = None
    source_metadata: tuple[tuple[str, str], ...] = ()

    def to_columns(self) -> dict:
        """The shard / reject columns of this provenance (`unimo_g.schema.PROVENANCE_FIELDS`)."""
        return {
            "license": self.license,
            "nsfw": self.nsfw,
            "similarity": self.similarity,
            "punsafe": self.punsafe,
            "pwatermark": self.pwatermark,
            "aesthetic": self.aesthetic,
            "original_width": self.original_width,
            "original_height": self.original_height,
            "source_metadata": [{"key": key, "value": value} for key, value in self.source_metadata],
        }


NO_PROVENANCE = Provenance()


# ---------------------------------------------------------------- from a source's metadata

# Keys that are columns of their own (or img2dataset's download status): never provenance.
COLUMN_KEYS = frozenset({"key", "caption", "url", "status", "error_message"})

# How img2dataset spells the well-known columns. It copies the input table's columns named by
# `--save_additional_columns` verbatim into each sample's metadata, under the input's own names
# (rom1504/img2dataset, img2dataset/downloader.py), and its dataset examples name LAION's:
# laion400m `["NSFW","similarity","LICENSE"]`, laion-aesthetic and laion-art
# `["similarity","hash","punsafe","pwatermark","aesthetic"]` (dataset_examples/*.md); LAION-5B's
# improved-aesthetics tables spell the score `AESTHETIC_SCORE`. The downloader itself writes
# `original_width` / `original_height` (the size before its resize). Matched case-insensitively.
_TYPED_KEYS = {
    "license": "license", "licence": "license",
    "nsfw": "nsfw",
    "similarity": "similarity",
    "punsafe": "punsafe",
    "pwatermark": "pwatermark",
    "aesthetic": "aesthetic", "aesthetic_score": "aesthetic",
    "original_width": "original_width", "original_height": "original_height",
}  # fmt: skip
_TEXT_FIELDS = ("license", "nsfw")
_FLOAT_FIELDS = ("similarity", "punsafe", "pwatermark", "aesthetic")
_SIZE_FIELDS = ("original_width", "original_height")

# Bounds on what one input can put in its row, whatever it carries: a row holds provenance, not an
# archive of the source. 64 keys is well above img2dataset's own metadata (~12 keys) plus LAION's
# columns; 1024 characters holds any licence string, URL-like credit or tag list seen in LAION and
# CC metadata. A longer value is cut (see `_json_text`); keys beyond the cap are counted under
# `DROPPED_KEYS_KEY`. Worst case per row: about 64 x (128 + 1024) characters.
MAX_METADATA_KEYS = 64
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 1024
DROPPED_KEYS_KEY = "_dropped_keys"  # source_metadata key: how many keys were over MAX_METADATA_KEYS
TRUNCATED_SUFFIX = "...(truncated)"
_MAX_INT32 = 2**31 - 1


def _json_text(value) -> str:
    """`value` as JSON text of at most MAX_VALUE_CHARS (+ suffix); a longer one becomes a JSON string
    of its first MAX_VALUE_CHARS characters followed by TRUNCATED_SUFFIX."""
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False, default=_fallback)
    except ValueError:  # NaN / infinity nested in a value: keep its repr
        text = json.dumps(repr(value), ensure_ascii=False)
    if len(text) > MAX_VALUE_CHARS:
        text = json.dumps(text[:MAX_VALUE_CHARS] + TRUNCATED_SUFFIX, ensure_ascii=False)
    return text


def _fallback(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"  # binary columns are not copied into rows
    return str(value)  # dates, decimals, ...


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Text values that say "unknown" (LAION-5B's LICENSE column holds "?" for a page without a licence):
# the typed column stays null, so `license != null` means a licence is known; the raw value stays
# in `source_metadata`.
UNKNOWN_TEXT = ("?", "")


def _typed(field: str, value):
    """The typed value of `field`, or None when `value` has the wrong type, is out of range or
    says "unknown" (`UNKNOWN_TEXT`)."""
    if field in _TEXT_FIELDS:
        known = isinstance(value, str) and value.strip() not in UNKNOWN_TEXT
        return value if known and len(value) <= MAX_VALUE_CHARS else None
    if not _is_number(value) or not math.isfinite(value):
        return None
    if field in _FLOAT_FIELDS:
        return float(value)
    if float(value).is_integer() and 0 < value <= _MAX_INT32:  # LAION stores sizes as float64
        return int(value)
    return None


def provenance_from_metadata(metadata: Optional[Mapping]) -> Provenance:
    """What a source said about one input (`RawSample.extra`, raw values) as a `Provenance`.

    img2dataset's spellings become the typed fields; every other key goes to `source_metadata` as
    (key, JSON text), sorted by key; `COLUMN_KEYS` are dropped. A typed key whose value has the wrong
    type (e.g. `"similarity": "n/a"`) leaves its field None and keeps the raw value in
    `source_metadata`; a missing value (None, NaN) is just missing. When two keys name one field
    (`LICENSE` and `license`), the first in sorted order fills it. Never raises on the values.
    """
    typed: dict = {}
    others: list[tuple[str, str]] = []
    for key in sorted(str(k) for k in (metadata or {})):
        if key.lower() in COLUMN_KEYS:
            continue
        value = (metadata or {}).get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        field = _TYPED_KEYS.get(key.lower())
        if field is not None and field not in typed:
            checked = _typed(field, value)
            if checked is not None:
                typed[field] = checked
                continue
        others.append((key, value))
    items = [(key[:MAX_KEY_CHARS], _json_text(value)) for key, value in others[:MAX_METADATA_KEYS]]
    if len(others) > MAX_METADATA_KEYS:
        items.append((DROPPED_KEYS_KEY, str(len(others) - MAX_METADATA_KEYS)))
    return Provenance(**typed, source_metadata=tuple(sorted(items)))
