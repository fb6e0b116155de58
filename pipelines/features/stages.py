"""The feature job's element stages: prompt-shard row -> `FeatureItem` -> feature row or Reject.

`prepare_input` turns a shard row (id, image, caption) into an item holding the training image
(3, R, R) in [-1, 1], built exactly as the trainer builds it (`unimo_g.images.training_geometry`); the model
handlers (`pipelines.features.handlers`) add the VAE moments and the encoder's hidden states;
`finish_item` packs the item into a row of `unimo_g.features.FEATURE_FIELDS`. The stages `Prepare`
and `Finish` (each returns a `pipelines.staged.Staged`) are the thin Beam shells, with counters in
the `features` namespace.

Reject stage `features`, reasons: `missing_image`, `empty_caption`, the `ImageRejected` reasons of
`open_image` (`not_an_image`, `truncated`, `too_many_pixels`, ...), `empty_prompt` (nothing is
left of the caption once the encoder drops control tokens) and `non_finite` (a value that is not
finite in the storage dtype, e.g. beyond fp16's range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Union

import apache_beam as beam
import torch

from pipelines.metrics import reject_counter_name
from pipelines.staged import REJECTS, DoFnStage
from unimo_g.features import STORAGE_DTYPES, UNCONDITIONAL_ID, feature_row
from unimo_g.images.decoding import ImageRejected
from unimo_g.images.training_geometry import open_image, transform_image
from unimo_g.records import Reject

STAGE = "features"  # stage of every reject of the feature job
NAMESPACE = "features"  # Beam metrics namespace
INPUTS = "inputs"  # shard rows read
ENCODED = "encoded"  # feature rows written (the unconditional row aside)
REJECTED = "rejected"  # rejects, all reasons
READ_COLUMNS = ("id", "image", "caption")  # all the job reads of a prompt shard
FEATURE_ROWS, UNCONDITIONAL_ROW = 0, 1  # partitions of the finished rows (`row_partition`)


@dataclass(frozen=True, eq=False)  # eq=False: tensors do not compare with ==
class FeatureItem:
    """One sample on its way through the feature job (or, with `unconditional`, the empty prompt).

    pixel_values: (3, R, R) float32 in [-1, 1], the training image; dropped after the VAE stage.
    latent_mean, latent_std: (C, h, w) float32, scaled VAE posterior (`encode_moments`).
    hidden: (T, D) float32, the encoder's hidden states of the caption, real tokens only.
    reject: set by a model stage that cannot encode the item.
    """

    id: str
    caption: Optional[str]
    source: str = ""  # where the row was read, "<shard path>[<row>]"; named in rejects
    unconditional: bool = False
    pixel_values: Optional[torch.Tensor] = None
    latent_mean: Optional[torch.Tensor] = None
    latent_std: Optional[torch.Tensor] = None
    hidden: Optional[torch.Tensor] = None
    reject: Optional[Reject] = None


def unconditional_item() -> FeatureItem:
    """The item whose encoding is the empty prompt's (`unimo_g.inference.encode_unconditional`)."""
    return FeatureItem(id=UNCONDITIONAL_ID, caption=None, unconditional=True)


def prepare_input(row: Mapping, resolution: int, max_pixels: int) -> Union[FeatureItem, Reject]:
    """A shard row {id, image, caption, source} -> FeatureItem with `pixel_values` (3, R, R), or its
    Reject. The caption is kept as stored (the trainer encodes it as it is). Never raises on bad data.
    """
    source = row.get("source", "")

    def reject(reason: str, detail: str) -> Reject:
        return Reject(id=row["id"], source=source, stage=STAGE, reason=reason, detail=detail)

    if row.get("image") is None:
        return reject("missing_image", "the row has no image bytes")
    caption = row.get("caption")
    if caption is None or not caption.strip():
        return reject("empty_caption", "the caption is empty or whitespace")
    try:
        image = open_image(row["image"], max_pixels)
    except ImageRejected as err:
        return reject(err.reason, err.detail)
    return FeatureItem(id=row["id"], caption=caption, source=source, pixel_values=transform_image(image, resolution))


def _finite_in(tensor: torch.Tensor, storage_dtype: str) -> bool:
    return bool(torch.isfinite(tensor.to(STORAGE_DTYPES[storage_dtype])).all())


def finish_item(item: FeatureItem, storage_dtype: str) -> Union[dict, Reject]:
    """The feature row of an encoded item (latents null for the unconditional item), or a Reject
    when a model stage refused it or a value is not finite in `storage_dtype`."""
    if item.reject is not None:
        return item.reject
    if item.hidden is None or (not item.unconditional and item.latent_mean is None):
        raise ValueError(f"item {item.id!r} reached the writer without its encodings")
    tensors = [item.hidden] + ([] if item.unconditional else [item.latent_mean, item.latent_std])
    if not all(_finite_in(t, storage_dtype) for t in tensors):
        detail = f"an encoding is not finite in {storage_dtype}"
        if item.unconditional:  # not an input: no reject can stand for it, and training needs it
            raise ValueError(f"the unconditional prompt's encoding: {detail}")
        return Reject(id=item.id, source=item.source, stage=STAGE, reason="non_finite", detail=detail)
    return feature_row(item.id, item.hidden, storage_dtype, item.latent_mean, item.latent_std)


def row_partition(row: Mapping, partitions: int) -> int:
    """`beam.Partition` of finished rows: FEATURE_ROWS, or UNCONDITIONAL_ROW for the unconditional
    item's row, the only row without latents (`finish_item`)."""
    return UNCONDITIONAL_ROW if row["latent_mean"] is None else FEATURE_ROWS


def count_reject(reject: Reject) -> None:
    """Count a reject in total and by stage and reason (`reject.features.<reason>`)."""
    beam.metrics.Metrics.counter(NAMESPACE, REJECTED).inc()
    beam.metrics.Metrics.counter(NAMESPACE, reject_counter_name(reject.stage, reject.reason)).inc()


class PrepareFn(beam.DoFn):
    """Shard row -> FeatureItem (main output) or Reject (output tagged `REJECTS`); the unconditional
    item passes as it is."""

    def __init__(self, resolution: int, max_pixels: int):
        self.resolution = resolution
        self.max_pixels = max_pixels

    def setup(self):
        self.inputs = beam.metrics.Metrics.counter(NAMESPACE, INPUTS)

    def process(self, row) -> Iterator:
        if isinstance(row, FeatureItem):
            yield row
            return
        self.inputs.inc()
        result = prepare_input(row, self.resolution, self.max_pixels)
        if isinstance(result, Reject):
            count_reject(result)
            yield beam.pvalue.TaggedOutput(REJECTS, result)
        else:
            yield result


class FinishFn(beam.DoFn):
    """Encoded FeatureItem -> its row (main output: the feature rows and the unconditional row) or
    Reject (output tagged `REJECTS`)."""

    def __init__(self, storage_dtype: str):
        self.storage_dtype = storage_dtype

    def setup(self):
        self.encoded = beam.metrics.Metrics.counter(NAMESPACE, ENCODED)

    def process(self, item: FeatureItem) -> Iterator:
        result = finish_item(item, self.storage_dtype)
        if isinstance(result, Reject):
            count_reject(result)
            yield beam.pvalue.TaggedOutput(REJECTS, result)
            return
        if not item.unconditional:
            self.encoded.inc()
        yield result


class Prepare(DoFnStage):
    """PCollection of shard rows and the unconditional item -> Staged(FeatureItems with their
    training image, the `features` Rejects of rows that have none)."""

    def __init__(self, resolution: int, max_pixels: int):
        super().__init__(PrepareFn(resolution, max_pixels))


class Finish(DoFnStage):
    """PCollection of encoded FeatureItems -> Staged(feature rows and the unconditional row, the
    `features` Rejects: a model stage refused the item, or a value is not finite in `storage_dtype`)."""

    def __init__(self, storage_dtype: str):
        super().__init__(FinishFn(storage_dtype))
