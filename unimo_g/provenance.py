"""What an input says about itself, carried to its row or reject (schema v3).

img2dataset writes, beside each image, the columns of its input table (`LICENSE`, `NSFW`,
`similarity`, `punsafe`, `pwatermark`, `AESTHETIC_SCORE`, ...) and the image's original size. The
well-known ones become typed columns; every other key lands in `source_metadata`, (key, JSON text)
pairs, so the shard schema is the same whatever an input carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


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
