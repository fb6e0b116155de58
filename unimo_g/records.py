"""Typed records that cross stage boundaries.

Frozen dataclasses, one per concept of the shard contract (docs/design.md). Coordinates: every box is
xyxy in pixels of the original, EXIF-transposed image; every character offset indexes the caption
string (Python `str` indices, i.e. code points).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from unimo_g.provenance import NO_PROVENANCE, Provenance


@dataclass(frozen=True)
class Phrase:
    """A noun phrase of the caption: `caption[start:end] == text`."""

    text: str
    start: int
    end: int

    def __post_init__(self):
        if not 0 <= self.start < self.end:
            raise ValueError(f"bad phrase span [{self.start}, {self.end}) for {self.text!r}")


@dataclass(frozen=True)
class Mask:
    """COCO compressed RLE of a binary mask of shape `size == [height, width]` (column-major)."""

    size: tuple[int, int]
    counts: str


@dataclass(frozen=True)
class Entity:
    """A grounded, segmented phrase.

    `phrase` indexes `Sample.phrases`; `box` is xyxy in pixels of the EXIF-transposed original;
    `image` is the entity segment on white, encoded as `image_format`.
    """

    phrase: int
    text: str
    start: int
    end: int
    box: tuple[float, float, float, float]
    box_score: float
    mask: Mask
    mask_area: int
    mask_score: float
    image: bytes
    image_format: str


@dataclass(frozen=True)
class PromptPart:
    """One element of an interleaved prompt: exactly one of `text` or `entity` is set."""

    text: Optional[str] = None
    entity: Optional[int] = None

    def __post_init__(self):
        if (self.text is None) == (self.entity is None):
            raise ValueError("a prompt part holds exactly one of text or entity")


@dataclass(frozen=True)
class Sample:
    """One output row (schema v4). `caption` is the cleaned caption that phrase offsets index;
    `caption_original` the caption as received; `phrase_outcomes[k]` says what became of phrase k
    (`schema.PHRASE_OUTCOMES`); `provenance` becomes the typed provenance columns; `phash` is the
    image's perceptual hash (16 hex digits); `computed_*` the score stage's outputs (None: not run);
    `caption_source` who wrote `caption` (`input`, or the model of `entities.source: mllm`)."""

    id: str
    source_key: str
    url: Optional[str]
    sha256: str
    image: bytes
    image_format: str
    width: int
    height: int
    caption: str
    phrases: tuple[Phrase, ...] = ()
    entities: tuple[Entity, ...] = ()
    prompt: tuple[PromptPart, ...] = ()
    prompt_text: str = ""
    caption_original: str = ""
    phrase_outcomes: tuple[str, ...] = ()
    provenance: Provenance = NO_PROVENANCE
    phash: Optional[str] = None
    computed_similarity: Optional[float] = None
    computed_aesthetic: Optional[float] = None
    caption_source: str = "input"  # schema v4: "input", or the id of the model that wrote `caption`

    def to_row(self) -> dict:
        """The row as plain Python values matching `schema.shard_schema()`."""
        row = asdict(self)
        del row["provenance"]
        row.update(self.provenance.to_columns())
        for entity in row["entities"]:
            entity["box"] = list(entity["box"])
            entity["mask"]["size"] = list(entity["mask"]["size"])
        return row


@dataclass(frozen=True)
class ShardRow:
    """The columns of a shard row that training reads (`unimo_g.shard_rows`): `image` the encoded
    image as received, `caption` the cleaned caption that entity spans index, `entities` in the
    row's order (empty when the `entities` column was not read, as in stage 1)."""

    id: str
    image: bytes
    caption: str
    entities: tuple[Entity, ...] = ()


@dataclass(frozen=True)
class Reject:
    """An input that did not become a row, with the stage that refused it and why.

    `reason` is a short stable token (counted in metrics and the manifest); `detail` is free text;
    `provenance` is the input's, where the stage that refused it knew it.
    """

    id: str
    source: str
    stage: str
    reason: str
    detail: str = ""
    provenance: Provenance = NO_PROVENANCE

    def to_row(self) -> dict:
        row = {"id": self.id, "source": self.source, "stage": self.stage, "reason": self.reason,
               "detail": self.detail}
        row.update(self.provenance.to_columns())
        return row


@dataclass(frozen=True)
class RawSample:
    """An input as read from a source, before any decoding.

    `image` is None when the source has no image for this key (an orphan caption), `caption` is None
    when it has no caption (an image without caption); `source_error` carries a failure the source
    itself recorded (img2dataset's `status`/`error_message`) and `error_reason` its stable token (the
    reject reason). `extra` holds what the source says about the input besides image, caption and
    url, as raw values (`unimo_g.provenance.provenance_from_metadata` types them). `origin` is
    (index of the read unit in the read plan, index of the input within that unit): unique within
    one read of the inputs and the same in every read of them, it tells apart inputs that are
    otherwise identical.
    """

    source_key: str
    image: Optional[bytes]
    caption: Optional[str]
    url: Optional[str] = None
    source_error: Optional[str] = None
    extra: dict = field(default_factory=dict)
    origin: tuple[int, int] = (0, 0)
    error_reason: Optional[str] = None
