"""Configuration of the data-construction pipeline, loaded from `configs/*.yaml`.

Every threshold that changes results lives here and is recorded with the output (manifest and
shard metadata). Defaults follow Grounded-SAM / Subject-Diffusion where the paper is silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from unimo_g.devices import check_device_name, check_dtype_name


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")


@dataclass(frozen=True)
class DecodeConfig:
    """Image decoding and validation. `max_pixels` is checked from the header, before decoding."""

    max_pixels: int = 64_000_000
    min_side: int = 64
    max_aspect_ratio: float = 8.0  # long side / short side

    def __post_init__(self):
        _check_positive("decode.max_pixels", self.max_pixels)
        _check_positive("decode.min_side", self.min_side)
        if self.max_aspect_ratio < 1:
            raise ValueError(f"decode.max_aspect_ratio must be >= 1, got {self.max_aspect_ratio!r}")


@dataclass(frozen=True)
class PhraseConfig:
    """Noun-phrase extraction with spaCy (`spacy_model` is a package name or a local path)."""

    spacy_model: str = "en_core_web_sm"
    drop_pronouns: bool = True
    stop_heads: tuple[str, ...] = (
        "background", "foreground", "view", "side", "front", "back", "top", "bottom", "left", "right",
        "middle", "center", "centre", "image", "picture", "photo", "photograph", "shot", "closeup",
        "close-up", "scene", "day", "night", "time", "way", "color", "colour", "lot", "kind", "type",
        "part", "piece", "number", "couple", "group", "pair", "bunch", "area", "distance", "daytime",
    )
    strip_determiners: bool = False  # keep "a brown dog" (the span replaced in the prompt)
    max_phrases: int = 8
    max_caption_chars: int = 2000  # longer captions are rejected before parsing

    def __post_init__(self):
        _check_positive("phrases.max_phrases", self.max_phrases)
        _check_positive("phrases.max_caption_chars", self.max_caption_chars)


PREPROCESS_MODES = ("tensor", "processor")


@dataclass(frozen=True)
class ModelRuntimeConfig:
    """Where and how a model runs. A GPU device that is absent is an error, never a CPU fallback.

    `preprocess`: how images are resized, normalised and padded for the model (and SAM's masks
    resized back). `tensor`: torch ops on the model's device, so that on a GPU the CPU only uploads
    bytes; `processor`: the transformers image processor in numpy/Pillow on the CPU. With the
    PIL-backed processors the presets load, both give the same pixel values byte for byte (the
    tensor path reproduces Pillow's bilinear resize exactly) and the same masks.
    """

    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 8
    max_batch_size: Optional[int] = None  # RunInference's upper bound; defaults to batch_size
    preprocess: Literal["tensor", "processor"] = "tensor"

    def __post_init__(self):
        check_device_name(self.device)
        check_dtype_name(self.dtype)
        _check_positive("batch_size", self.batch_size)
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(
                f"runtime.preprocess must be one of {list(PREPROCESS_MODES)}, got {self.preprocess!r}"
            )


@dataclass(frozen=True)
class GroundingConfig:
    """Phrase grounding with Grounding DINO.

    `model` is a hub id, a local directory, or `tiny` (random weights built from a config with
    `seed`, for tests and offline runs). Thresholds are applied per phrase on the logits of the
    phrase's own tokens.
    """

    backend: str = "transformers"
    model: str = "IDEA-Research/grounding-dino-tiny"
    revision: Optional[str] = None
    seed: int = 0
    box_threshold: float = 0.25
    text_threshold: float = 0.2
    nms_iou: float = 0.5  # NMS across all phrases of an image
    min_box_area_ratio: float = 0.08  # box area / image area
    max_box_area_ratio: float = 0.7
    max_box_aspect_ratio: float = 8.0
    plural: Literal["top1", "all"] = "top1"  # plural phrases: keep the best box, or every box
    max_boxes_per_phrase: int = 1
    max_text_len: int = 256  # Grounding DINO's text-token limit; longer queries are split
    pad_size: Optional[int] = None  # fixed square canvas for batching; None = processor's longest edge
    # Float GEMMs differ in the last bits with batch shape; rounding the outputs makes rows
    # bit-identical whatever batch, runner or worker count produced them.
    box_decimals: int = 2  # boxes rounded to 1/100 pixel
    score_decimals: int = 5
    runtime: ModelRuntimeConfig = field(default_factory=lambda: ModelRuntimeConfig(batch_size=4))

    def __post_init__(self):
        _check_range("grounding.box_threshold", self.box_threshold, 0.0, 1.0)
        _check_range("grounding.text_threshold", self.text_threshold, 0.0, 1.0)
        _check_range("grounding.nms_iou", self.nms_iou, 0.0, 1.0)
        _check_range("grounding.min_box_area_ratio", self.min_box_area_ratio, 0.0, 1.0)
        _check_range("grounding.max_box_area_ratio", self.max_box_area_ratio, 0.0, 1.0)
        if self.min_box_area_ratio > self.max_box_area_ratio:
            raise ValueError("grounding.min_box_area_ratio must not exceed grounding.max_box_area_ratio")
        _check_positive("grounding.max_boxes_per_phrase", self.max_boxes_per_phrase)
        if not 0 <= self.box_decimals <= 6 or not 0 <= self.score_decimals <= 8:
            raise ValueError("grounding.box_decimals must be in [0, 6] and grounding.score_decimals in [0, 8]")
        if self.max_text_len < 8:
            raise ValueError(f"grounding.max_text_len must be >= 8, got {self.max_text_len!r}")


@dataclass(frozen=True)
class SegmentationConfig:
    """Box-prompted segmentation with SAM (`model`: hub id, local directory, or `tiny`)."""

    backend: str = "transformers"
    model: str = "facebook/sam-vit-base"
    revision: Optional[str] = None
    seed: int = 0
    mask_threshold: float = 0.0  # on SAM's mask logits
    min_mask_score: float = 0.0  # SAM's predicted IoU
    min_mask_area_ratio: float = 0.0  # mask area / image area
    min_box_fill: float = 0.6  # mask area inside the box / box area
    score_decimals: int = 5  # predicted IoU rounded, so rows do not depend on the batch
    runtime: ModelRuntimeConfig = field(default_factory=lambda: ModelRuntimeConfig(batch_size=4))

    def __post_init__(self):
        _check_range("segmentation.min_mask_score", self.min_mask_score, 0.0, 1.0)
        _check_range("segmentation.min_mask_area_ratio", self.min_mask_area_ratio, 0.0, 1.0)
        _check_range("segmentation.min_box_fill", self.min_box_fill, 0.0, 1.0)
        _check_range("segmentation.score_decimals", self.score_decimals, 0, 8)


@dataclass(frozen=True)
class EntityImageConfig:
    """Entity segments: mask on white, cropped to the box, padded to a square, resized, encoded."""

    size: int = 224
    format: Literal["PNG", "WEBP"] = "PNG"
    margin: float = 0.0  # extra context around the box, as a fraction of its longer side
    webp_quality: int = 90
    # zlib level of PNG (lossless at every level): 1 encodes a segment on white ~2x faster than
    # Pillow's default 6 for ~10% more bytes, and entity encoding is a large part of a worker's CPU
    png_compress_level: int = 1

    def __post_init__(self):
        _check_positive("entity_image.size", self.size)
        _check_range("entity_image.margin", self.margin, 0.0, 1.0)
        _check_range("entity_image.webp_quality", self.webp_quality, 1, 100)
        _check_range("entity_image.png_compress_level", self.png_compress_level, 0, 9)


@dataclass(frozen=True)
class ComposeConfig:
    """Interleaved prompts: `replace` substitutes each grounded phrase by its entity (the paper's
    format); `append` keeps the phrase and follows it with the entity."""

    mode: Literal["replace", "append"] = "replace"


@dataclass(frozen=True)
class DedupeConfig:
    """How samples with the same id (same image bytes and caption) are found; all but one become
    rejects. method:
    - "reread": the inputs are read a second time for small keys only (id, source key, url,
      position); no runner then holds or shuffles the image bytes. Costs a second read: for
      manifests of http(s) URLs that is every image downloaded twice.
    - "single_read": the keys come from the one read; runners hold the checked samples until all
      keys are counted (a distributed runner spills them to disk; the DirectRunner keeps them in
      memory, which then grows with the input).
    - "none": no de-duplication, for inputs known to be unique. (Not "off": a bare `off` in YAML
      or --set is the boolean false.)
    """

    method: Literal["reread", "single_read", "none"] = "reread"

    def __post_init__(self):
        if self.method not in ("reread", "single_read", "none"):
            raise ValueError(f"dedupe.method must be reread, single_read or none, got {self.method!r}")


@dataclass(frozen=True)
class WriteConfig:
    """Output shards (Parquet)."""

    num_shards: int = 0  # files written through Beam's file sink (feature job); 0 = let the runner decide
    compression: Literal["snappy", "zstd", "gzip", "none"] = "zstd"
    row_group_rows: int = 256
    # Prompt shards and rejects are committed file by file as they fill (what a killed run keeps for
    # --resume): at most this many rows per file, fewer at the end of a bundle. 1024 rows of typical
    # img2dataset images (~100-300 KB each) make files of a few hundred MB.
    rows_per_file: int = 1024

    def __post_init__(self):
        if self.num_shards < 0:
            raise ValueError(f"write.num_shards must be >= 0, got {self.num_shards!r}")
        _check_positive("write.row_group_rows", self.row_group_rows)
        _check_positive("write.rows_per_file", self.rows_per_file)


@dataclass(frozen=True)
class PipelineConfig:
    name: str = "default"
    seed: int = 0
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    dedupe: DedupeConfig = field(default_factory=DedupeConfig)
    phrases: PhraseConfig = field(default_factory=PhraseConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    entity_image: EntityImageConfig = field(default_factory=EntityImageConfig)
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    write: WriteConfig = field(default_factory=WriteConfig)

    @property
    def random_weights(self) -> bool:
        """True when any model is a random-weight build (`tiny`, `random-*`): its output is not meaningful."""
        return any(m == "tiny" or m.startswith("random-") for m in (self.grounding.model, self.segmentation.model))
