"""Dataset statistics from Parquet columns only, accumulated one row group at a time.

Memory is bounded by one row group of the small columns (no `image` and no entity images or masks
are read) plus fixed-size histograms, whatever the number of rows. Boxes are xyxy in pixels of the
EXIF-transposed original image, so box areas compare with `width * height`. Why phrases did not
become entities comes from the `phrase_outcomes` column (schema v2); schema-v1 shards have none.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Entity buckets and text-token counting are those of the manifest's `statistics`, so the two agree.
from pipelines.outputs.shard_stats import ENTITY_BINS, entity_bin, text_tokens
from unimo_g.schema import OUTCOME_ENTITY

# Entity fields never read for statistics (large, or not numeric).
ENTITY_SKIP = {"image", "image_format", "mask", "text", "phrase", "start", "end"}

# Histogram ranges (top, bins): [0, top] in equal bins, doubled until they hold the largest value.
UNIT = (1.0, 20)  # ratios and scores, mostly in [0, 1]
PIXELS = (4096.0, 32)  # image sides
ENTITY_PIXELS = (2048.0, 32)  # entity crop sides
COUNTS_CAP = 16  # phrases per caption and entities per row: 0..15, then ≥16
TOKENS = (200.0, 40)
OUTCOMES_COLUMN = "phrase_outcomes"  # schema v2; aligned with `phrases`


@dataclasses.dataclass
class Histogram:
    """Counts over `bins` equal bins from 0 to `top`, with the sum, min and max of what was added.

    A value above `top` doubles `top` and merges neighbouring bins pairwise (as often as needed), so
    every value is counted inside the plotted range, memory stays fixed, and the edges depend only on
    the largest value, not on the order of arrival: row groups add up without keeping values. (All
    the quantities histogrammed are >= 0; a negative one would be counted in the first bin.)
    """

    top: float
    bins: int
    counts: np.ndarray = None
    total: float = 0.0
    n: int = 0
    low: float = np.inf
    high: float = -np.inf

    def __post_init__(self):
        if self.bins % 2:
            raise ValueError(f"bins must be even to merge pairwise, got {self.bins}")
        if self.counts is None:
            self.counts = np.zeros(self.bins, dtype=np.int64)

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, self.top, self.bins + 1)

    def _double(self) -> None:
        merged = self.counts.reshape(-1, 2).sum(axis=1)
        self.counts = np.concatenate([merged, np.zeros(self.bins - merged.size, dtype=np.int64)])
        self.top *= 2.0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        while values.max() > self.top:
            self._double()
        self.counts += np.histogram(np.maximum(values, 0.0), bins=self.edges)[0]
        self.total += float(values.sum())
        self.n += int(values.size)
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    @property
    def mean(self) -> Optional[float]:
        return self.total / self.n if self.n else None


@dataclasses.dataclass
class ShardStats:
    rows: int = 0
    entity_counts: Counter = dataclasses.field(default_factory=Counter)  # entities per row (capped)
    phrase_counts: Counter = dataclasses.field(default_factory=Counter)  # phrases per caption (capped)
    entities: int = 0
    phrases: int = 0
    tokens: Histogram = dataclasses.field(default_factory=lambda: Histogram(*TOKENS))
    width: Histogram = dataclasses.field(default_factory=lambda: Histogram(*PIXELS))
    height: Histogram = dataclasses.field(default_factory=lambda: Histogram(*PIXELS))
    box_area_ratio: Histogram = dataclasses.field(default_factory=lambda: Histogram(*UNIT))
    # mask area / box area: above 1 where a mask spills past its box (random-weight masks cover most of the image)
    mask_fill: Histogram = dataclasses.field(default_factory=lambda: Histogram(*UNIT))
    entity_side: Histogram = dataclasses.field(default_factory=lambda: Histogram(*ENTITY_PIXELS))
    scores: dict = dataclasses.field(default_factory=dict)  # entity score field -> Histogram
    phrase_outcomes: Counter = dataclasses.field(default_factory=Counter)  # outcome other than entity -> phrases
    rows_without_outcomes: int = 0  # rows of schema-v1 shards, which record no per-phrase outcome
    phrases_without_outcomes: int = 0  # their phrases

    def bucket_counts(self) -> dict[str, int]:
        """Rows per entity-count bucket (`ENTITY_BINS`)."""
        buckets = Counter()
        for n, count in self.entity_counts.items():
            buckets[entity_bin(n)] += count
        return {b: buckets[b] for b in ENTITY_BINS}

    def bucket_shares(self) -> dict[str, float]:
        return {b: (n / self.rows if self.rows else 0.0) for b, n in self.bucket_counts().items()}


def _struct_fields(schema: pa.Schema, column: str) -> list[pa.Field]:
    list_type = schema.field(column).type
    return list(list_type.value_type) if pa.types.is_list(list_type) else []


def plan_columns(schema: pa.Schema) -> tuple[list[str], list[str], bool]:
    """The Parquet column paths the statistics read, the entity score fields found, and whether the
    shards carry `phrase_outcomes`."""
    entity_fields = {f.name: f for f in _struct_fields(schema, "entities")}
    scores = [
        name for name, f in entity_fields.items()
        if name not in ENTITY_SKIP and name != "mask_area" and pa.types.is_floating(f.type)
    ]  # fmt: skip
    has_outcomes = OUTCOMES_COLUMN in schema.names
    entity_columns = ["box", "mask_area", *scores]
    columns = [
        "width", "height", "prompt.list.element.text", "phrases.list.element.start",
        *([OUTCOMES_COLUMN] if has_outcomes else []),
        *(f"entities.list.element.{name}" for name in entity_columns if name in entity_fields),
    ]  # fmt: skip
    return columns, scores, has_outcomes


def _capped_counts(lengths: np.ndarray) -> Counter:
    values, counts = np.unique(np.minimum(lengths, COUNTS_CAP), return_counts=True)
    return Counter(dict(zip(values.tolist(), counts.tolist())))


def add_row_group(stats: ShardStats, table: pa.Table, scores: list[str], has_outcomes: bool) -> np.ndarray:
    """Add one row group's columns (`plan_columns`) to `stats`; returns its entities per row (n,)."""
    n = table.num_rows
    stats.rows += n
    width = table.column("width").to_numpy().astype(np.float64)  # (n,)
    height = table.column("height").to_numpy().astype(np.float64)
    stats.width.add(width)
    stats.height.add(height)

    prompt = table.column("prompt").combine_chunks()  # list<struct<text>>
    part_tokens = [text_tokens(t) for t in pc.struct_field(pc.list_flatten(prompt), "text").to_pylist()]
    parent = pc.list_parent_indices(prompt).to_numpy(zero_copy_only=False)
    stats.tokens.add(np.bincount(parent, weights=part_tokens, minlength=n))

    phrases = table.column("phrases").combine_chunks()
    phrase_lengths = pc.list_value_length(phrases).to_numpy(zero_copy_only=False)
    stats.phrase_counts += _capped_counts(phrase_lengths)
    stats.phrases += int(phrase_lengths.sum())
    if has_outcomes:
        counted = pc.value_counts(pc.list_flatten(table.column(OUTCOMES_COLUMN).combine_chunks())).to_pylist()
        stats.phrase_outcomes.update({c["values"]: c["counts"] for c in counted if c["values"] != OUTCOME_ENTITY})
    else:
        stats.rows_without_outcomes += n
        stats.phrases_without_outcomes += int(phrase_lengths.sum())

    entities = table.column("entities").combine_chunks()  # list<struct<box, mask_area, scores...>>
    lengths = pc.list_value_length(entities).to_numpy(zero_copy_only=False)  # (n,)
    stats.entity_counts += _capped_counts(lengths)
    stats.entities += int(lengths.sum())
    flat = pc.list_flatten(entities)  # one struct per entity
    if len(flat):
        parent = pc.list_parent_indices(entities).to_numpy()  # (E,) row of each entity
        box = np.asarray(pc.list_flatten(pc.struct_field(flat, "box")).to_numpy(), dtype=np.float64).reshape(-1, 4)
        box_w = np.clip(box[:, 2] - box[:, 0], 0, None)  # xyxy pixels
        box_h = np.clip(box[:, 3] - box[:, 1], 0, None)
        box_area = box_w * box_h
        stats.box_area_ratio.add(box_area / np.maximum(width[parent] * height[parent], 1.0))
        mask_area = pc.struct_field(flat, "mask_area").to_numpy(zero_copy_only=False).astype(np.float64)
        stats.mask_fill.add(mask_area[box_area > 0] / box_area[box_area > 0])
        stats.entity_side.add(np.maximum(box_w, box_h))
        for name in scores:
            values = pc.struct_field(flat, name).to_numpy(zero_copy_only=False)
            stats.scores.setdefault(name, Histogram(*UNIT)).add(values)
    return lengths


@dataclasses.dataclass
class RejectStats:
    by_reason: Counter = dataclasses.field(default_factory=Counter)  # (stage, reason) -> rejects

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def add(self, table: pa.Table) -> None:
        self.by_reason.update(zip(table.column("stage").to_pylist(), table.column("reason").to_pylist()))
