"""Configuration of the data-construction pipeline, loaded from `configs/*.yaml`.

Every threshold that changes results lives here and is recorded with the output (manifest and
shard metadata). Defaults follow Grounded-SAM / Subject-Diffusion where the paper is silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from unimo_g.config_tools import check_choices
from unimo_g.devices import check_device_name, check_dtype_name
from unimo_g.filters import PRESETS, Rule, RuleError, parse_rule


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")


# Object stores Beam or fsspec read (gs, s3, Azure) and the web.
DEFAULT_REMOTE_SCHEMES = ("gs", "s3", "azfs", "az", "abfs", "abfss", "http", "https")
# A 64-megapixel RGB PNG that does not compress is ~192 MB (RGBA: ~256 MB): 256 MiB reads any image
# `decode.max_pixels` lets through at 8 bits per channel, and bounds what one read can hold in memory.
DEFAULT_MAX_READ_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ReadConfig:
    """What the read stage may open, and how much of it.

    - `allowed_roots`: local folders a manifest's image paths may point into besides the manifest's
      own folder (symlinks resolved); other absolute paths and `..` escapes are rejected.
    - `remote_schemes`: URL schemes a manifest's image may use (`file://` counts as local).
    - `allow_private_addresses`: let http(s) URLs reach loopback, link-local (cloud metadata),
      private and other non-public addresses; refused by default.
    - `max_bytes`: the most one read takes (an image file, an http response, a tar member, a
      caption or manifest line); a larger one is rejected as `too_large`, read no further.
    - `http_timeout_s`: seconds an http(s) read may wait on the network.
    """

    allowed_roots: tuple[str, ...] = ()
    remote_schemes: tuple[str, ...] = DEFAULT_REMOTE_SCHEMES
    allow_private_addresses: bool = False
    max_bytes: int = DEFAULT_MAX_READ_BYTES
    http_timeout_s: float = 60.0

    def __post_init__(self):
        _check_positive("read.max_bytes", self.max_bytes)
        if not self.http_timeout_s > 0:
            raise ValueError(f"read.http_timeout_s must be > 0, got {self.http_timeout_s!r}")
        for scheme in self.remote_schemes:
            if not scheme or not scheme.replace("+", "").replace(".", "").replace("-", "").isalnum():
                raise ValueError(f"read.remote_schemes: {scheme!r} is not a URL scheme (write gs, not gs://)")
        for root in self.allowed_roots:
            if not root or "://" in root and not root.startswith("file://"):
                raise ValueError(f"read.allowed_roots: {root!r} is not a local folder")


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


# Head words of noun phrases that name nothing a detector could box, matched against the head word as
# written (lowercased; plurals are listed where they too name no object: "lights" of a Christmas tree
# are objects, "soft light" is not). Each group is a kind of phrase web and tag-style prompts are full
# of (measured on data/entity_labels, BENCHMARKS.md); extend or empty them with --set.
NON_OBJECT_HEADS = (
    # styles, media and render tags ("Chinese style", "oil painting", "octane render", "concept art")
    "style", "styles", "art", "artwork", "painting", "illustration", "drawing", "sketch", "render", "rendering",
    "photography", "portrait", "silhouette", "wallpaper", "masterpiece", "anime", "design", "aesthetic",
    "aesthetics", "concept", "composition", "shading", "pattern", "texture", "graphics", "cgi", "noir", "life",
    "macro", "artstation", "pixiv", "deviantart", "behance", "cgsociety", "unreal", "octane",
    # quality and resolution tags ("best quality", "ultra-high definition", "8k HD")
    "quality", "definition", "resolution", "detail", "details", "realism", "photorealism", "sharpness", "clarity",
    "hd", "hdr", "uhd",
    # lighting, optics and effects ("cinematic lighting", "soft focus", "particle effects")
    "lighting", "light", "glow", "shadow", "shadows", "reflection", "reflections", "contrast", "saturation",
    "exposure", "focus", "blur", "bokeh", "grain", "angle", "perspective", "highlights", "tone", "tones",
    "palette", "colors", "colours", "effect", "effects", "sparkle", "sparkles",
    # atmosphere and abstract nouns ("cozy atmosphere", "emergence", "keywords", "shape")
    "atmosphere", "ambience", "ambiance", "mood", "vibe", "vibes", "feeling", "emotion", "spirit", "theme",
    "emergence", "keyword", "keywords", "shape", "shapes", "beauty", "elegance", "translucency", "transparency",
    "sense", "idea", "harmony", "symmetry", "perfection", "fantasy", "mythology", "tale", "story", "romance",
    "nostalgia", "simplicity", "minimalism", "motion", "movement", "speed", "award",
    # face and body attributes ("fair skin", "delicate facial features", "long hair", "slight smile")
    "skin", "complexion", "feature", "features", "face", "eyes", "eye", "hair", "hairstyle", "ponytail", "beard",
    "mustache", "moustache", "wrinkles", "smile", "expression", "pose", "posture", "figure", "physique", "ears",
    "hands", "mane", "whiskers",
    # events and activities ("a picnic", "doing yoga")
    "picnic", "yoga", "halloween", "christmas", "festival", "celebration", "party", "jam",
    # partitives, whose object is the noun after "of" ("a stack of books", "a herd of sheep")
    "stack", "pile", "row", "rows", "slice", "pat", "herd", "flock", "crowd", "handful", "cluster", "variety",
    "assortment", "collection", "series",
    # drinks, seen only as their container ("a cup of espresso", "a glass of red wine")
    "water", "milk", "wine", "coffee", "tea", "espresso", "cappuccino", "cocoa", "juice",
)
# Settings, surfaces, sky and weather, times: the scene, not an entity in it ("in the jungle", "on a
# wooden floor", "under a dusk sky", "at sunset"). Empty it to ground such phrases too.
SCENE_HEADS = (
    "sky", "skies", "clouds", "fog", "mist", "haze", "smoke", "steam", "dust", "rain", "snow", "storm",
    "thunderstorm", "wind", "sunlight", "moonlight", "sunshine", "sunset", "sunrise", "dawn", "dusk", "twilight",
    "morning", "evening", "afternoon", "noon", "midnight", "weather", "hour", "season", "summer", "winter",
    "spring", "autumn", "age", "era", "century",
    "ground", "floor", "wall", "walls", "ceiling", "grass", "lawn", "dirt", "mud", "sand", "gravel", "pavement",
    "sidewalk", "road", "street", "streets", "highway", "route", "trail", "path", "lane", "alley", "square",
    "field", "fields", "meadow", "forest", "woods", "jungle", "desert", "savanna", "beach", "shore", "coast",
    "ocean", "sea", "lake", "river", "pond", "wave", "waves", "waterfall", "waterfalls", "puddles", "valley",
    "hillside", "slope", "landscape", "scenery", "horizon", "space", "universe", "air", "fabric",
    "city", "town", "village", "countryside", "neighborhood", "downtown", "park", "garden", "yard", "farm",
    "room", "kitchen", "bathroom", "bedroom", "office", "library", "hallway", "corridor", "interior", "cafe",
    "restaurant", "shop", "store", "market", "station", "airport", "stage", "studio", "classroom", "site",
    "location", "place", "setting", "environment", "world",
)
# Colour words and shades: a phrase of nothing else is a dropped tag ("white", "pink and white").
COLOUR_WORDS = (
    "red", "orange", "yellow", "green", "blue", "purple", "violet", "pink", "brown", "black", "white", "grey",
    "gray", "gold", "golden", "silver", "beige", "turquoise", "teal", "cyan", "magenta", "maroon", "navy",
    "crimson", "scarlet", "ivory", "light", "dark", "pale", "bright", "deep", "pastel", "neon", "vivid",
)


@dataclass(frozen=True)
class PhraseConfig:
    """Noun-phrase extraction with spaCy (`spacy_model` is a package name or a local path).

    Beyond spaCy's noun chunks (`grounding.phrases.noun_phrases`): `repair_tags` recovers phrases the tagger
    misread ("a red can", "autumn leaves"); `split_lists` cuts comma-joined tag lists into items;
    each item naming no object is dropped with its reason (`pronoun`, `stop_head`, `quoted_text`,
    `non_object_head`, `scene_head`, `number_only`, `colour_only`, `no_noun`, recorded in the row's
    `phrase_outcomes`); `merge_mentions` makes later mentions of an entity ("Qilin" after "magnificent
    Qilin") one entity with it. All off and the three lists empty is the extraction before them.
    """

    spacy_model: str = "en_core_web_sm"
    drop_pronouns: bool = True
    stop_heads: tuple[str, ...] = (
        "background", "foreground", "view", "side", "front", "back", "top", "bottom", "left", "right",
        "middle", "center", "centre", "image", "picture", "photo", "photograph", "shot", "closeup",
        "close-up", "scene", "day", "night", "time", "way", "color", "colour", "lot", "kind", "type",
        "part", "piece", "number", "couple", "group", "pair", "bunch", "area", "distance", "daytime",
    )
    # The paper's prompt form: determiners and possessives stay text ("holding his <img>...</img>"),
    # the replaced span is the entity itself. False replaces the whole noun chunk ("holding <img>").
    strip_determiners: bool = True
    max_phrases: int = 8
    max_caption_chars: int = 2000  # longer captions are rejected before parsing
    non_object_heads: tuple[str, ...] = NON_OBJECT_HEADS
    scene_heads: tuple[str, ...] = SCENE_HEADS
    colour_words: tuple[str, ...] = COLOUR_WORDS
    split_lists: bool = True
    drop_numbers: bool = True
    drop_quoted: bool = True
    repair_tags: bool = True
    merge_mentions: bool = True

    def __post_init__(self):
        _check_positive("phrases.max_phrases", self.max_phrases)
        _check_positive("phrases.max_caption_chars", self.max_caption_chars)
        for key in ("non_object_heads", "scene_heads", "colour_words"):
            words = getattr(self, key)
            bad = [w for w in words if not isinstance(w, str) or not w or w != w.lower().strip()]
            if bad:
                raise ValueError(f"phrases.{key} holds lowercase words without spaces around them, got {bad[:3]!r}")
        for key in ("split_lists", "drop_numbers", "drop_quoted", "repair_tags", "merge_mentions"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"phrases.{key} must be true or false, got {getattr(self, key)!r}")


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
    # Runners start several SDK processes per worker (Dataflow: one per vCPU); each would load its
    # own copy of the model onto the worker's GPU. Shared, the worker's processes call `model_copies`
    # copies held by one server process (Beam's `share_model_across_processes` / `model_copies`).
    # None: share when `device` is a GPU.
    share_model: Optional[bool] = None
    model_copies: int = 1  # copies of a shared model per worker machine

    def __post_init__(self):
        check_device_name(self.device)
        check_dtype_name(self.dtype)
        _check_positive("batch_size", self.batch_size)
        _check_positive("runtime.model_copies", self.model_copies)
        if self.model_copies > 1 and self.share_model is False:
            raise ValueError(f"runtime.model_copies={self.model_copies} needs runtime.share_model true (or unset)")
        check_choices(self, "runtime")

    @property
    def shares_model(self) -> bool:
        """Whether the worker's SDK processes share the model copies instead of loading one each."""
        if self.share_model is not None:
            return self.share_model
        return self.device.startswith("cuda")


# Per source, the model when `entities.model` is unset. Qwen2-VL-2B-Instruct: Apache-2.0, a 2B
# vision-language model that captions and follows a JSON reply format, in bf16 about 5 GB of GPU
# memory. Qwen2.5-1.5B-Instruct: Apache-2.0, a text-only instruct model for listing entities.
DEFAULT_ENTITY_MODELS = {"mllm": "Qwen/Qwen2-VL-2B-Instruct", "llm": "Qwen/Qwen2.5-1.5B-Instruct"}
# The instructions; `{caption}` is the input's caption (llm only). The strict prompt is the one retry
# of a reply that failed the parser's check (`grounding.entity_replies`).
MLLM_PROMPT = (
    "Describe this image in one sentence. Then list the entities of your sentence that can be outlined "
    "in the image: people, animals and objects, not the background, styles or colours. Copy each entity "
    "exactly as it is written in your sentence, in the order it appears. Reply with JSON only: "
    '{"caption": "<your sentence>", "entities": ["<entity>", ...]}'
)
MLLM_STRICT_PROMPT = (
    "Reply with one JSON object and nothing else, exactly in this form: "
    '{"caption": "A dog holds a red ball.", "entities": ["dog", "red ball"]}. '
    '"caption" is one sentence describing this image. "entities" lists the people, animals and objects '
    'of that sentence, each one copied letter for letter from "caption", in the order they appear there.'
)
LLM_PROMPT = (
    "List the entities of this image caption that can be outlined in the image: people, animals and "
    "objects, not the background, styles, qualities or colours. Copy each entity exactly as it is "
    "written in the caption, in the order it appears. Reply with a JSON list of strings only.\n"
    "Caption: {caption}"
)
LLM_STRICT_PROMPT = (
    "Reply with one JSON list of strings and nothing else, for example [\"dog\", \"red ball\"]. Each "
    "string is a person, animal or object named in the caption below, copied letter for letter from "
    "it, in the order they appear.\nCaption: {caption}"
)


@dataclass(frozen=True)
class EntitiesConfig:
    """Who names the entities of a caption (the paper's step 1) before grounding.

    - `source`: `spacy` (noun phrases of the input's caption, `phrases`); `mllm` (a vision-language
      model writes a one-sentence caption of the image and lists its entities: the row's `caption`
      is the model's, `caption_source` its id); `llm` (a text-only instruct model lists the
      entities of the input's caption). See `grounding.entity_models`.
    - `model`: hub id, local folder, or a random-weight build `random-tiny-<family>` (tests); unset:
      `DEFAULT_ENTITY_MODELS[source]`. `revision`: hub revision.
    - `backend`: `transformers` (RunInference with our batching) or `vllm` (Beam's vLLM model
      handler: a vLLM server on the worker's GPU; needs the `vllm` and `openai` packages).
    - Generation is greedy (no sampling) with at most `max_new_tokens`; `forward: image` generates for
      one image per call (rows then do not depend on their batch), `batch` for the whole batch with
      left padding. `max_image_side`: longer images are shrunk to it first (Lanczos) for `mllm`.
    - `prompt`, `strict_prompt`: the instruction and the one retry's (unset: the source's default,
      `MLLM_PROMPT` ... `LLM_STRICT_PROMPT`; `{caption}` is the input's caption for `llm`).
    - `on_failure`: a reply that fails the check twice falls back to `spacy` (noun phrases of the
      model's caption when it gave one, else of the input's) or becomes a `reject` (reason `unparseable`).
    """

    source: Literal["spacy", "mllm", "llm"] = "spacy"
    model: Optional[str] = None
    revision: Optional[str] = None
    backend: Literal["transformers", "vllm"] = "transformers"
    seed: int = 0
    max_new_tokens: int = 160
    forward: Literal["image", "batch"] = "image"
    max_image_side: int = 1024
    prompt: Optional[str] = None
    strict_prompt: Optional[str] = None
    on_failure: Literal["spacy", "reject"] = "spacy"
    runtime: ModelRuntimeConfig = field(default_factory=lambda: ModelRuntimeConfig(batch_size=4))

    def __post_init__(self):
        check_choices(self, "entities")
        _check_positive("entities.max_new_tokens", self.max_new_tokens)
        _check_positive("entities.max_image_side", self.max_image_side)
        if self.model is not None and not self.model:
            raise ValueError("entities.model must be a hub id, a local folder, random-tiny-<family>, or unset")
        for key in ("prompt", "strict_prompt"):
            text = getattr(self, key)
            if text is not None and self.source == "llm" and "{caption}" not in text:
                raise ValueError(f"entities.{key} of source llm must hold {{caption}}, got {text!r}")

    @property
    def model_id(self) -> Optional[str]:
        """The model that names entities (None for `spacy`)."""
        if self.source == "spacy":
            return None
        return self.model or DEFAULT_ENTITY_MODELS[self.source]

    @property
    def prompts(self) -> tuple[str, str]:
        """(prompt, strict prompt) of the source, defaults filled in."""
        defaults = {"mllm": (MLLM_PROMPT, MLLM_STRICT_PROMPT), "llm": (LLM_PROMPT, LLM_STRICT_PROMPT)}
        prompt, strict = defaults.get(self.source, ("", ""))
        return self.prompt or prompt, self.strict_prompt or strict


@dataclass(frozen=True)
class GroundingConfig:
    """Phrase grounding with Grounding DINO.

    `model` is a hub id, a local directory, or `tiny` (random weights built from a config with
    `seed`, for tests and offline runs). Images reach the model resized as its published processor
    resizes them (Grounding DINO: shortest edge 800, longest 1333). Thresholds are applied per phrase
    on the logits of the phrase's own tokens (0.25 / 0.2: Grounded-SAM's, tuned at that size); the
    box rules then run in the order of `grounding.boxes.select_boxes_with_reasons`.
    """

    backend: str = "transformers"
    model: str = "IDEA-Research/grounding-dino-tiny"
    revision: Optional[str] = None
    seed: int = 0
    box_threshold: float = 0.25
    text_threshold: float = 0.2
    min_box_area_ratio: float = 0.08  # box area / image area (Subject-Diffusion: 0.08-0.7)
    max_box_area_ratio: float = 0.7
    # Box width / height bounds. Subject-Diffusion keeps boxes whose aspect lies in about 0.3-3
    # (its open-world data construction); wider or taller boxes are mostly strips and edges.
    min_box_aspect_ratio: float = 0.3
    max_box_aspect_ratio: float = 3.0
    # Two boxes of different phrases are one object when their IoU reaches this (COCO's strict
    # AP75 criterion for "the same object"): the lower-scoring one goes. Nested entities ("a woman" /
    # "her dress") overlap less and are both kept.
    same_object_iou: float = 0.75
    plural: Literal["top1", "all"] = "top1"  # plural phrases: keep the best box, or up to max_boxes_per_phrase
    max_boxes_per_phrase: int = 1  # must be 1 with plural top1, >= 2 with plural all
    nms_iou: float = 0.5  # NMS among the boxes of one plural phrase (Grounded-SAM's 0.5)
    # Entities per image at most, best scores first. The paper states no cap; 8 = phrases.max_phrases,
    # so a top1 run is never capped while plural "all" stays bounded.
    max_entities: int = 8
    max_text_len: int = 256  # Grounding DINO's text-token limit; longer queries are split
    # Padding canvases: each image is padded to the smallest canvas that holds its resized shape, chosen
    # from that shape alone, and each canvas group runs as its own forward, so a row does not depend on
    # its batch. Canvases are (short, ceil(short * aspect)) for each aspect here plus (short, long), in
    # both orientations, with the processor's shortest/longest edge: 800x800 (square photos), 800x1067
    # (4:3) and 800x1333 (anything wider: 3:2, 16:9, 2:1); portrait alike. Images are never shrunk.
    canvas_aspects: tuple[float, ...] = (1.0, 4 / 3)
    # "canvas": one forward per canvas group of a batch; "image": one forward per image (every tensor
    # shape then depends on the image alone: rows are bit-identical whatever the batch, at the cost
    # of batching on a GPU). See README, determinism.
    forward: Literal["canvas", "image"] = "image"
    # Float GEMMs differ in the last bits with batch shape; rounding the outputs makes rows
    # bit-identical whatever batch, runner or worker count produced them when the forwards agree.
    box_decimals: int = 2  # boxes rounded to 1/100 pixel
    score_decimals: int = 5
    runtime: ModelRuntimeConfig = field(default_factory=lambda: ModelRuntimeConfig(batch_size=4))

    def __post_init__(self):
        check_choices(self, "grounding")
        _check_range("grounding.box_threshold", self.box_threshold, 0.0, 1.0)
        _check_range("grounding.text_threshold", self.text_threshold, 0.0, 1.0)
        _check_range("grounding.nms_iou", self.nms_iou, 0.0, 1.0)
        _check_range("grounding.same_object_iou", self.same_object_iou, 0.0, 1.0)
        if not 0 < self.min_box_aspect_ratio <= self.max_box_aspect_ratio:
            raise ValueError(
                "grounding.min_box_aspect_ratio must be > 0 and <= grounding.max_box_aspect_ratio, got "
                f"{self.min_box_aspect_ratio!r} and {self.max_box_aspect_ratio!r}"
            )
        if (self.plural == "all") != (self.max_boxes_per_phrase > 1):
            raise ValueError(
                f"grounding.plural={self.plural!r} with max_boxes_per_phrase={self.max_boxes_per_phrase}: "
                "plural top1 keeps one box (max_boxes_per_phrase: 1); plural all needs max_boxes_per_phrase >= 2"
            )
        _check_positive("grounding.max_entities", self.max_entities)
        if not self.canvas_aspects or any(not 1.0 <= a for a in self.canvas_aspects):
            raise ValueError(f"grounding.canvas_aspects must be >= 1 (long / short side), got {self.canvas_aspects!r}")
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
    # "image": the image encoder runs on one image per forward, so masks are bit-identical whatever
    # the batch; "batch": one encoder forward per batch (faster on a GPU; mask edges may then move
    # with the batch, see README, determinism).
    forward: Literal["batch", "image"] = "image"
    runtime: ModelRuntimeConfig = field(default_factory=lambda: ModelRuntimeConfig(batch_size=4))

    def __post_init__(self):
        check_choices(self, "segmentation")
        _check_range("segmentation.min_mask_score", self.min_mask_score, 0.0, 1.0)
        _check_range("segmentation.min_mask_area_ratio", self.min_mask_area_ratio, 0.0, 1.0)
        _check_range("segmentation.min_box_fill", self.min_box_fill, 0.0, 1.0)
        _check_range("segmentation.score_decimals", self.score_decimals, 0, 8)


@dataclass(frozen=True)
class CaptionConfig:
    """Caption hygiene before phrase extraction (`unimo_g.captions`). With `normalize`, web captions
    lose their markup: HTML entities unescaped, tags removed, control characters dropped, whitespace
    collapsed. Whatever `normalize`, a literal `<img>` / `</img>` is escaped so that `prompt_text`
    parses back to the prompt unambiguously. The row keeps the received caption in `caption_original`."""

    normalize: bool = True

    def __post_init__(self):
        if not isinstance(self.normalize, bool):
            raise ValueError(f"captions.normalize must be true or false, got {self.normalize!r}")


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
        check_choices(self, "entity_image")
        _check_positive("entity_image.size", self.size)
        _check_range("entity_image.margin", self.margin, 0.0, 1.0)
        _check_range("entity_image.webp_quality", self.webp_quality, 1, 100)
        _check_range("entity_image.png_compress_level", self.png_compress_level, 0, 9)


@dataclass(frozen=True)
class ComposeConfig:
    """Interleaved prompts: `replace` substitutes each grounded phrase by its entity (the paper's
    format); `append` keeps the phrase and follows it with the entity."""

    mode: Literal["replace", "append"] = "replace"

    def __post_init__(self):
        check_choices(self, "compose")


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
      or --set is the boolean false.) Near-duplicate and evaluation keys then come from the one read,
      as with "single_read".
    """

    method: Literal["reread", "single_read", "none"] = "reread"

    def __post_init__(self):
        check_choices(self, "dedupe")


@dataclass(frozen=True)
class FiltersConfig:
    """Rules an input must pass to become a row (`unimo_g.filters`: syntax, presets and their sources).

    - `preset`: a named rule set, `paper` (aesthetic > 6.5, similarity > 0.5) or `laion_safe`
      (punsafe, pwatermark, NSFW tag); its rules run before `rules`.
    - `rules`: rule strings, e.g. `aesthetic > 6.5`, `nsfw in [UNLIKELY, UNSURE]`,
      `source_metadata.LANGUAGE == en ; missing=reject`.
    - `missing`: what a rule without its own `; missing=` does with an input that lacks the value:
      `keep` it (default: no input is lost for a column its source never had) or `reject` it.

    Rules on the input's provenance run before decoding (`input_rules`); rules on `computed_*`
    scores run after the stage that computes them (`computed_rules`). A failing input becomes
    Reject(stage="filter", reason=`Rule.token`).
    """

    preset: Optional[str] = None
    rules: tuple[str, ...] = ()
    missing: Literal["keep", "reject"] = "keep"

    def __post_init__(self):
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"filters.preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        check_choices(self, "filters")
        try:
            parsed = self.parsed_rules
        except RuleError as err:
            raise ValueError(f"filters.rules: {err}") from None
        tokens = [rule.token for rule in parsed]
        repeated = sorted({token for token in tokens if tokens.count(token) > 1})
        if repeated:  # the reject reason must name one rule
            raise ValueError(f"filters.rules: two rules share the field and operator of {repeated[0]!r}; "
                             "merge them into one")

    @property
    def parsed_rules(self) -> tuple[Rule, ...]:
        """The preset's rules, then `rules`, parsed."""
        texts = (PRESETS[self.preset] if self.preset else ()) + tuple(self.rules)
        return tuple(parse_rule(text) for text in texts)

    @property
    def input_rules(self) -> tuple[Rule, ...]:
        """Rules on what the input carries: applied before decoding."""
        return tuple(rule for rule in self.parsed_rules if not rule.computed)

    @property
    def computed_rules(self) -> tuple[Rule, ...]:
        """Rules on `computed_similarity` / `computed_aesthetic`: applied after the score stage."""
        return tuple(rule for rule in self.parsed_rules if rule.computed)


@dataclass(frozen=True)
class NearDuplicateConfig:
    """Near-duplicates among the inputs (re-encoded, resized, lightly edited copies of one image): of
    each group one row is kept, the others become `dedupe`/`near_duplicate` rejects before decoding.

    - `enabled`: on by default; the keys cost one perceptual hash per input (~0.7 ms on the bundled
      photos, see BENCHMARKS.md) and no image bytes are grouped.
    - `max_distance`: two images are near-duplicates when their 64-bit perceptual hashes differ in at
      most this many bits. 10 finds every resized, re-encoded, brightened or captioned copy of the
      bundled photos and 6 of 10 crops to 90%, while no unrelated pair lies within 17 bits
      (`bench/near_duplicates.py`, BENCHMARKS.md).
    - `bands`: the hash is cut into this many bands; only inputs that agree on a whole band are
      compared. Pairs at most `bands - 1` bits apart always share a band; more bands find more pairs
      at `max_distance` and compare more inputs (8 bands of 8 bits: measured recall in BENCHMARKS.md).
    - `max_bucket`: distinct hashes of one band value compared with each other; any further ones are
      compared with those first `max_bucket` (by rank) only, so a crowded band value (blank images,
      one logo) costs at most `max_bucket` comparisons per input.
    """

    enabled: bool = True
    max_distance: int = 10
    bands: int = 8
    max_bucket: int = 1000

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise ValueError(f"near_duplicates.enabled must be true or false, got {self.enabled!r}")
        _check_range("near_duplicates.max_distance", self.max_distance, 0, 64)
        _check_range("near_duplicates.bands", self.bands, 1, 64)
        _check_positive("near_duplicates.max_bucket", self.max_bucket)


@dataclass(frozen=True)
class ExcludeConfig:
    """Evaluation images no row may copy: every input that matches one becomes a reject with reason
    `eval_overlap` naming it.

    - `images`: folders or manifests of evaluation images (any input format; local or object store),
      e.g. DreamBench's folder, MultiBench's entity images, COCO val2017.
    - `phash_distance`: an input matches an evaluation image when their 64-bit perceptual hashes
      differ in at most this many bits (re-encoded, resized, lightly edited copies); null: images
      are matched by `clip_cosine` only.
    - `clip_cosine`: when set, an input also matches when the cosine of its CLIP image embedding with
      an evaluation image's is at least this (semantic copies; needs the score stage's CLIP model).
    """

    images: tuple[str, ...] = ()
    # 12: every resized, re-encoded, brightened or captioned copy of the bundled photos and 7 of 10 crops
    # to 90% are within it, no unrelated pair within 17 bits (BENCHMARKS.md); a missed copy leaks an
    # evaluation image, a false match costs one training pair, so it is wider than near_duplicates'.
    phash_distance: Optional[int] = 12
    clip_cosine: Optional[float] = None

    def __post_init__(self):
        if self.phash_distance is not None:
            _check_range("exclude.phash_distance", self.phash_distance, 0, 64)
        elif self.images and self.clip_cosine is None:
            raise ValueError("exclude.images needs exclude.phash_distance or exclude.clip_cosine to match with")
        if self.clip_cosine is not None:
            _check_range("exclude.clip_cosine", self.clip_cosine, -1.0, 1.0)


@dataclass(frozen=True)
class ScoresConfig:
    """Computed scores (`unimo_g.models.clip_scorer`): the image-caption CLIP similarity of every
    decoded input and, with `aesthetic_head`, an aesthetic score, stored as `computed_similarity` /
    `computed_aesthetic` (None while disabled).

    Off by default: it loads a CLIP model on every run and costs a CLIP forward per image; enable it
    for inputs that do not carry LAION's `similarity` / `aesthetic` columns, or for `exclude.clip_cosine`.
    - `model`: hub id, local directory, or a random-weight preset (`tiny`, `random-clip-vit-base-patch32`,
      `random-clip-vit-large-patch14`). openai/clip-vit-base-patch32 is the model LAION-400M and LAION-5B
      (English) computed their `similarity` column with (arXiv 2210.08402), so thresholds on both mean the same.
    - `aesthetic_head`: a safetensors file (local or object store) holding a Linear(D, 1) or
      improved-aesthetic-predictor's MLP over the normalised image embedding (`unimo_g.models.aesthetic_head`);
      LAION's heads read ViT-L/14 embeddings (D = 768): use them with openai/clip-vit-large-patch14.
    - `forward`: "image" runs one image and its caption per forward, so scores and embeddings are
      bit-identical whatever the batch (as `grounding.forward: image`); "batch" runs the whole batch
      in one forward (the throughput setting on a GPU; the last bits then follow the batch shape).
    - `score_decimals`: scores are rounded, so that batched forwards rarely change a row (float GEMMs
      differ in the last bits with the batch shape).
    - `runtime`: device, dtype, batching and model sharing as for the other models; `runtime.preprocess`
      does not apply: images always go through the model's published (Pillow) image processor.
    """

    enabled: bool = False
    backend: str = "transformers"
    model: str = "openai/clip-vit-base-patch32"
    revision: Optional[str] = None
    seed: int = 0  # random-weight presets only
    aesthetic_head: Optional[str] = None
    forward: Literal["image", "batch"] = "image"
    score_decimals: int = 5
    runtime: ModelRuntimeConfig = field(default_factory=lambda: ModelRuntimeConfig(batch_size=16))

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise ValueError(f"scores.enabled must be true or false, got {self.enabled!r}")
        if self.aesthetic_head is not None and not self.aesthetic_head:
            raise ValueError("scores.aesthetic_head must be a file path or unset")
        check_choices(self, "scores")
        _check_range("scores.score_decimals", self.score_decimals, 0, 8)


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
        check_choices(self, "write")
        if self.num_shards < 0:
            raise ValueError(f"write.num_shards must be >= 0, got {self.num_shards!r}")
        _check_positive("write.row_group_rows", self.row_group_rows)
        _check_positive("write.rows_per_file", self.rows_per_file)


@dataclass(frozen=True)
class PipelineConfig:
    name: str = "default"
    seed: int = 0
    read: ReadConfig = field(default_factory=ReadConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    dedupe: DedupeConfig = field(default_factory=DedupeConfig)
    near_duplicates: NearDuplicateConfig = field(default_factory=NearDuplicateConfig)
    captions: CaptionConfig = field(default_factory=CaptionConfig)
    phrases: PhraseConfig = field(default_factory=PhraseConfig)
    entities: EntitiesConfig = field(default_factory=EntitiesConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    entity_image: EntityImageConfig = field(default_factory=EntityImageConfig)
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    exclude: ExcludeConfig = field(default_factory=ExcludeConfig)
    scores: ScoresConfig = field(default_factory=ScoresConfig)
    write: WriteConfig = field(default_factory=WriteConfig)

    def __post_init__(self):
        if self.exclude.images and self.exclude.clip_cosine is not None and not self.scores.enabled:
            raise ValueError("exclude.clip_cosine compares CLIP embeddings of the score stage: set scores.enabled "
                             "true (or leave exclude.clip_cosine unset)")

    @property
    def random_weights(self) -> bool:
        """True when any model is a random-weight build (`tiny`, `random-*`): its output is not meaningful."""
        models = [self.grounding.model, self.segmentation.model] + ([self.scores.model] if self.scores.enabled else [])
        models += [self.entities.model_id] if self.entities.model_id else []
        return any(m == "tiny" or m.startswith("random-") for m in models)
