"""RawSample -> CheckedSample -> DecodedSample (decoded pixels) or Reject; and de-duplication by id.

`check_sample` and `decode_checked` hold the rules; the stages `Check`, `Decode` and `DedupeById`
(each returns a `pipelines.staged.Staged`) are thin Beam shells with counters. The pipeline checks,
de-duplicates, then decodes.
Reject stages and reasons:
- stage `read`: a source error (reason: the source's token, e.g. `failed_to_download`,
  `missing_image_file`, `bad_manifest_line`; a read refused by `read.*` limits: `path_not_allowed`,
  `scheme_not_allowed`, `address_not_allowed`, `too_large`, `http_error`, `timeout`, see
  `pipelines.io.read_guard`), `missing_image`, `missing_caption`, `empty_caption`, `caption_too_long`;
- stage `filter` (`pipelines.prompts.filter_stage`, before de-duplication and decoding): a rule of the
  `filters` config failed; reason `filter:<field>.<op>` (`unimo_g.filters.Rule.token`, e.g.
  `filter:aesthetic.gt`, `filter:nsfw.in`, `filter:source_metadata.LANGUAGE.eq`), the rule text and
  the value in the detail;
- stage `decode`: `ImageRejected.reason` (`not_an_image`, `truncated`, `too_small`, ...);
- stage `dedupe`: `duplicate` (only among inputs that passed the filters); `near_duplicate` and stage
  `exclude`: `eval_overlap` (`pipelines.prompts.near_duplicates`, before decode).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Union

import apache_beam as beam
import numpy as np

from pipelines import metrics
from pipelines.staged import REJECTS, DoFnStage
from unimo_g.images.decoding import ImageRejected, decode_image, hash_pixels, hashes_decoded_pixels, perceptual_hash
from unimo_g.pipeline_config import DecodeConfig
from unimo_g.provenance import NO_PROVENANCE, Provenance, provenance_from_metadata
from unimo_g.records import RawSample, Reject
from unimo_g.schema import sample_id


@dataclass(frozen=True, eq=False)  # eq=False: pixel arrays do not compare with ==
class DecodedSample:
    """A sample whose caption is valid and whose image decoded.

    `image` holds the bytes as received (what the shard stores); `pixels` is (H, W, 3) uint8 RGB of
    the EXIF-transposed image, the frame of every box and mask downstream. `caption` is the source
    caption without leading/trailing whitespace; `id = sample_id(image, caption)`.
    """

    id: str
    source_key: str
    url: Optional[str]
    sha256: str  # of `image`
    image: bytes
    image_format: str
    pixels: np.ndarray  # (H, W, 3) uint8
    caption: str
    provenance: Provenance = NO_PROVENANCE
    phash: Optional[str] = None  # perceptual hash, 16 hex digits (None: not computed)
    computed_similarity: Optional[float] = None  # set by the score stage
    computed_aesthetic: Optional[float] = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def key_id(source_key: str) -> str:
    """Id of an input that has no image or no caption: a hash of its source key."""
    return hashlib.sha256(b"key:" + source_key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class CheckedSample:
    """An input with an image and a usable caption, not yet decoded; `id = sample_id(image, caption)`.

    `origin` is the input's `RawSample.origin`.
    """

    id: str
    source_key: str
    url: Optional[str]
    image: bytes
    caption: str  # without leading/trailing whitespace
    origin: tuple[int, int] = (0, 0)
    provenance: Provenance = NO_PROVENANCE


def check_sample(raw: RawSample, max_caption_chars: int) -> Union[CheckedSample, Reject]:
    """Apply the read-stage rules to one input. Never raises on bad data: the failure is the Reject.

    The input's provenance (`provenance_from_metadata(raw.extra)`) goes with the result either way."""
    caption = raw.caption.strip() if raw.caption is not None else None
    has_both = raw.image is not None and caption is not None
    rid = sample_id(raw.image, caption) if has_both else key_id(raw.source_key)
    provenance = provenance_from_metadata(raw.extra)

    def reject(reason: str, detail: str) -> Reject:
        return Reject(id=rid, source=raw.source_key, stage="read", reason=reason, detail=detail,
                      provenance=provenance)

    if raw.source_error is not None:
        return reject(raw.error_reason or "source_error", raw.source_error)
    if raw.image is None:
        return reject("missing_image", "no image for this key")
    if caption is None:
        return reject("missing_caption", "no caption for this key")
    if not caption:
        return reject("empty_caption", "the caption is empty or whitespace")
    if len(caption) > max_caption_chars:
        return reject("caption_too_long", f"{len(caption)} > {max_caption_chars} characters")
    return CheckedSample(id=rid, source_key=raw.source_key, url=raw.url, image=raw.image, caption=caption,
                         origin=raw.origin, provenance=provenance)


def decode_checked(sample: CheckedSample, decode_config: DecodeConfig) -> Union[DecodedSample, Reject]:
    """Decode a checked sample's image (bounded, EXIF-transposed, RGB) or reject it at stage `decode`."""
    try:
        decoded = decode_image(sample.image, decode_config)
    except ImageRejected as err:
        return Reject(id=sample.id, source=sample.source_key, stage="decode", reason=err.reason, detail=err.detail,
                      provenance=sample.provenance)
    # the hash the near-duplicate keys compared: from the decoded pixels where that is the same
    # value (formats without a reduced-size decode), else from the bytes again (a JPEG draft decode)
    if hashes_decoded_pixels(decoded.format):
        phash = hash_pixels(decoded.pixels)
    else:
        try:
            phash = perceptual_hash(sample.image, decode_config)
        except ImageRejected:  # the full decode passed: not expected, the row then has no hash
            phash = None
    return DecodedSample(
        id=sample.id,
        source_key=sample.source_key,
        url=sample.url,
        sha256=hashlib.sha256(sample.image).hexdigest(),
        image=sample.image,
        image_format=decoded.format,
        pixels=decoded.pixels,
        caption=sample.caption,
        provenance=sample.provenance,
        phash=phash,
    )


def decode_sample(
    raw: RawSample, decode_config: DecodeConfig, max_caption_chars: int
) -> Union[DecodedSample, Reject]:
    """`check_sample` then `decode_checked`: one input to a DecodedSample or its Reject."""
    checked = check_sample(raw, max_caption_chars)
    return checked if isinstance(checked, Reject) else decode_checked(checked, decode_config)


def dedupe_rank(element) -> tuple[str, str, tuple[int, int]]:
    """Among inputs sharing one id, the one with the smallest rank is kept: (source_key, url, origin).

    Works on anything with `source_key`, `url` and `origin` (RawSample, CheckedSample)."""
    return (element.source_key, element.url or "", tuple(element.origin))


def duplicate_reject(element, kept_source_key: str) -> Reject:
    return Reject(id=element.id, source=element.source_key, stage="dedupe", reason="duplicate",
                  detail=f"same id as {kept_source_key}", provenance=getattr(element, "provenance", NO_PROVENANCE))


class _RejectingFn(beam.DoFn):
    """Yields results of `_apply`: Rejects to the `REJECTS` output (counted by stage and reason)."""

    passed_counter = ""

    def setup(self):
        self.passed = beam.metrics.Metrics.counter(metrics.DECODE, self.passed_counter)

    def _apply(self, element):
        raise NotImplementedError

    def process(self, element) -> Iterator:
        result = self._apply(element)
        if isinstance(result, Reject):
            beam.metrics.Metrics.counter(metrics.DECODE, metrics.reject_counter_name(result.stage, result.reason)).inc()
            yield beam.pvalue.TaggedOutput(REJECTS, result)
        else:
            self.passed.inc()
            yield result


class CheckFn(_RejectingFn):
    """RawSample -> CheckedSample (main output) or Reject (output tagged `REJECTS`)."""

    passed_counter = metrics.CHECKED

    def __init__(self, max_caption_chars: int):
        if max_caption_chars < 1:
            raise ValueError(f"max_caption_chars must be >= 1, got {max_caption_chars!r}")
        self.max_caption_chars = max_caption_chars

    def _apply(self, raw: RawSample):
        return check_sample(raw, self.max_caption_chars)


class DecodeFn(_RejectingFn):
    """CheckedSample -> DecodedSample (main output) or Reject (output tagged `REJECTS`)."""

    passed_counter = metrics.DECODED

    def __init__(self, config: DecodeConfig):
        self.config = config

    def _apply(self, sample: CheckedSample):
        return decode_checked(sample, self.config)


class Check(DoFnStage):
    """PCollection[RawSample] -> Staged(CheckedSamples, Rejects of stage `read`)."""

    def __init__(self, max_caption_chars: int):
        super().__init__(CheckFn(max_caption_chars))


class Decode(DoFnStage):
    """PCollection[CheckedSample] -> Staged(DecodedSamples, Rejects of stage `decode`)."""

    def __init__(self, config: DecodeConfig):
        super().__init__(DecodeFn(config))


class CountAndFirst(beam.CombineFn):
    """Combines the `dedupe_rank`s of one id into (how many inputs have it, the smallest rank)."""

    def create_accumulator(self):
        return 0, None

    def add_input(self, accumulator, rank):
        count, first = accumulator
        return count + 1, rank if first is None or rank < first else first

    def merge_accumulators(self, accumulators):
        count, first = 0, None
        for other_count, other_first in accumulators:
            count += other_count
            if other_first is not None and (first is None or other_first < first):
                first = other_first
        return count, first

    def extract_output(self, accumulator):
        return accumulator


class _KeepFirstFn(beam.DoFn):
    """Passes an element unless its id is repeated and it is not that id's first (by `dedupe_rank`)."""

    def __init__(self):
        self.duplicates = beam.metrics.Metrics.counter(metrics.DEDUPE, metrics.DUPLICATES)

    def process(self, element, first_of_repeated: dict) -> Iterator:
        first = first_of_repeated.get(element.id)
        if first is None or dedupe_rank(element) == first:
            yield element
            return
        self.duplicates.inc()
        yield beam.pvalue.TaggedOutput(REJECTS, duplicate_reject(element, first[0]))


def passing_check(
    raw: RawSample, max_caption_chars: int, keep: Optional[Callable[[CheckedSample], bool]] = None
) -> Iterator[CheckedSample]:
    """The CheckedSample of an input that passes `check_sample` (and `keep(checked)`, when given:
    the filters the first read applies); nothing for one they reject. For a second read of the inputs."""
    checked = check_sample(raw, max_caption_chars)
    if isinstance(checked, CheckedSample) and (keep is None or keep(checked)):
        yield checked


def dedupe_ranks(checked: beam.PCollection) -> beam.PCollection:
    """(id, `dedupe_rank`) of every CheckedSample: what `DedupeById` needs."""
    return checked | "Ranks" >> beam.Map(lambda sample: (sample.id, dedupe_rank(sample)))


class DedupeById(beam.PTransform):
    """Keep one element per `id`, the one of smallest `dedupe_rank`; the others become
    Reject(stage="dedupe").

    `ranks` holds (id, `dedupe_rank`) of every element, computed apart from the elements (the
    pipeline reads the inputs a second time for it: `dedupe_ranks`). Only these small keys are
    combined per id; each element then learns from a side input whether it is its id's first.
    Nothing shuffles or groups the elements themselves, so no barrier holds the dataset's image
    bytes, which matters on runners that keep such buffers in memory (the DirectRunner).
    Returns a Staged: the kept elements and the `dedupe`/`duplicate` Rejects.
    """

    def __init__(self, ranks: beam.PCollection):
        super().__init__()
        self.ranks = ranks

    def expand(self, pcoll):
        first_of_repeated = (
            self.ranks
            | "CountPerId" >> beam.CombinePerKey(CountAndFirst())
            | "Repeated" >> beam.Filter(lambda keyed: keyed[1][0] > 1)
            | "FirstRank" >> beam.MapTuple(lambda sample_id, count_first: (sample_id, count_first[1]))
        )
        as_side_input = beam.pvalue.AsDict(first_of_repeated)
        return pcoll | "KeepFirst" >> DoFnStage(_KeepFirstFn(), first_of_repeated=as_side_input)
