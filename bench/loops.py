"""The two baselines the Beam pipeline is measured against, as plain Python loops.

Both do the pipeline's work on the same inputs with the same functions: read the folder
(`pipelines.io.source_formats`), check and decode (`pipelines.prompts.decode`), with `scores.enabled` the CLIP
scores (`pipelines.prompts.score_stage.score_samples`, one sample per forward), phrases (`grounding.phrases.noun_phrases`),
Grounding DINO (`ground_batch`), SAM (`segment_batch`), assemble (`pipelines.prompts.assemble.assemble_sample`)
and write one Parquet shard with the shard schema. They differ only in how the models are called:

- `plain_loop`: the pipeline's batches, without Beam: `ground_batch` on `grounding.runtime.batch_size`
  images at once, `segment_batch` on `segmentation.runtime.batch_size`. Beam time / this time - 1 is
  the pipeline's overhead.
- `batch_of_one_loop`: the reference-script way (Grounded-SAM): Grounding DINO once per image; SAM
  once per box (`sam_prompts="per_box"`: the image is encoded again for every box) or once per image
  with all its boxes (`"per_image"`: Grounded-SAM's demo, one encoding per image).

Models are loaded once by `load_models` (timed separately) and shared by both loops.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Literal, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from grounding.detect import ground_batch_with_reasons
from grounding.models import GroundingModel, load_grounding_model
from grounding.phrases.noun_phrases import load_nlp
from pipelines.io.source_formats import group_folder_files, read_folder_group
from pipelines.prompts.assemble import assemble_sample
from pipelines.prompts.decode import check_sample, decode_checked
from pipelines.prompts.phrase_stage import clean_sample, phrase_item
from pipelines.prompts.score_stage import ScoreRunner, score_samples
from pipelines.prompts.work_item import WorkItem
from segmentation.models import SegmentationModel, load_segmentation_model
from segmentation.segment import segment_batch
from unimo_g.pipeline_config import PipelineConfig
from unimo_g.records import RawSample, Reject, Sample
from unimo_g.schema import shard_schema

SamPrompts = Literal["per_box", "per_image"]
STAGES = ("read", "decode", "scores", "phrases", "ground", "segment", "assemble", "write")


@dataclass
class Models:
    """Everything the pipeline loads once per worker, with the seconds each load took."""

    nlp: object  # spacy.language.Language
    grounding: GroundingModel
    segmentation: SegmentationModel
    load_seconds: dict[str, float]
    scores: Optional[ScoreRunner] = None  # with `scores.enabled`


def load_models(config: PipelineConfig) -> Models:
    """Load spaCy, Grounding DINO and SAM as the pipeline's workers do, timing each."""
    seconds = {}
    started = time.perf_counter()
    nlp = load_nlp(config.phrases.spacy_model)
    seconds["phrases"] = time.perf_counter() - started
    started = time.perf_counter()
    grounding = load_grounding_model(config.grounding)
    seconds["grounding"] = time.perf_counter() - started
    started = time.perf_counter()
    segmentation = load_segmentation_model(config.segmentation)
    seconds["segmentation"] = time.perf_counter() - started
    scores = None
    if config.scores.enabled:
        started = time.perf_counter()
        scores = ScoreRunner(config.scores)
        seconds["scores"] = time.perf_counter() - started
    return Models(nlp=nlp, grounding=grounding, segmentation=segmentation, load_seconds=seconds, scores=scores)


@dataclass
class LoopResult:
    """What one loop did: counts, wall seconds (models already loaded) and seconds per stage."""

    samples: int = 0  # inputs read
    rows: int = 0
    rejects: int = 0
    boxes: int = 0  # groundings (each sent to SAM)
    entities: int = 0  # rows' entities (after the mask filters)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    batch_sizes: dict[str, list[int]] = field(default_factory=lambda: {"ground": [], "segment": []})

    def as_dict(self) -> dict:
        return {
            "samples": self.samples, "rows": self.rows, "rejects": self.rejects, "boxes": self.boxes,
            "entities": self.entities, "seconds": self.seconds,
            "stage_seconds": {stage: self.stage_seconds.get(stage, 0.0) for stage in STAGES},
        }


class _Clock:
    """Adds the seconds of each `with clock(stage):` block to `result.stage_seconds[stage]`."""

    def __init__(self, result: LoopResult):
        self._result = result
        self._stage = ""
        self._started = 0.0

    def __call__(self, stage: str) -> "_Clock":
        self._stage = stage
        return self

    def __enter__(self):
        self._started = time.perf_counter()

    def __exit__(self, *exc):
        self._result.stage_seconds[self._stage] += time.perf_counter() - self._started


def list_folder_groups(input_dir: Path):
    """The key groups of a folder-layout input, as the pipeline's folder source lists them."""
    root = os.path.abspath(input_dir)
    paths = [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names]
    return group_folder_files(root, paths)


def read_raw_samples(input_dir: Path) -> Iterator[RawSample]:
    """Every input of a folder-layout input directory, read with the pipeline's folder reader."""
    for group in list_folder_groups(input_dir):
        yield read_folder_group(group)


class ShardWriter:
    """One Parquet shard with the pipeline's schema, codec and row-group size (`config.write`)."""

    def __init__(self, output_dir: Path, config: PipelineConfig, lineage: Optional[dict] = None):
        folder = Path(output_dir) / "shards"
        folder.mkdir(parents=True, exist_ok=True)
        self._schema = shard_schema(lineage)
        self._rows_per_group = config.write.row_group_rows
        self._writer = pq.ParquetWriter(
            folder / "part-00000-of-00001.parquet", self._schema, compression=config.write.compression
        )
        self._buffer: list[dict] = []

    def write(self, row: Sample) -> None:
        self._buffer.append(row.to_row())
        if len(self._buffer) >= self._rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self._schema))
            self._buffer = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def _prepare(raw: RawSample, models: Models, config: PipelineConfig, seen: set, clock: _Clock):
    """RawSample -> WorkItem with phrases, or a Reject (check, de-duplicate, decode, phrases)."""
    with clock("decode"):
        checked = check_sample(raw, config.phrases.max_caption_chars)
        if isinstance(checked, Reject):
            return checked
        if checked.id in seen:  # the pipeline keeps one per id
            return Reject(id=checked.id, source=checked.source_key, stage="dedupe", reason="duplicate")
        seen.add(checked.id)
        decoded = decode_checked(checked, config.decode)
    if isinstance(decoded, Reject):
        return decoded
    if models.scores is not None:  # one sample per forward: the same scores as the stage's default forward
        with clock("scores"):
            decoded = score_samples(models.scores, [decoded], config.scores.score_decimals)[0].sample
    with clock("phrases"):
        caption = clean_sample(decoded, config.captions)
        if isinstance(caption, Reject):
            return caption
        return phrase_item(decoded, caption, models.nlp, config.phrases)


def ground_items(items: list[WorkItem], models: Models, config: PipelineConfig) -> list[WorkItem]:
    """One `ground_batch` call on all `items`; each comes back with its `groundings`."""
    found = ground_batch_with_reasons(
        models.grounding, [i.sample.pixels for i in items], [i.phrases for i in items],
        [i.plural for i in items], config.grounding,
    )
    return [replace(item, groundings=tuple(groundings), phrase_reasons=tuple(reasons.items()))
            for item, (groundings, reasons) in zip(items, found)]


def boxes_of(item: WorkItem) -> np.ndarray:
    """The boxes of an item's groundings: (N, 4) xyxy, pixels of its EXIF-transposed original image."""
    return np.asarray([g.box for g in item.groundings], dtype=np.float32).reshape(-1, 4)  # (N, 4) xyxy


def segment_items(items: list[WorkItem], models: Models, config: PipelineConfig) -> list[WorkItem]:
    """One `segment_batch` call on all `items` (their groundings' boxes); each comes back with its `masks`."""
    masks = segment_batch(models.segmentation, [i.sample.pixels for i in items], [boxes_of(i) for i in items],
                          config.segmentation)
    return [replace(item, masks=tuple(item_masks)) for item, item_masks in zip(items, masks)]


def _segment_one(item: WorkItem, models: Models, config: PipelineConfig, sam_prompts: SamPrompts) -> WorkItem:
    boxes = boxes_of(item)
    if sam_prompts == "per_image":
        masks = segment_batch(models.segmentation, [item.sample.pixels], [boxes], config.segmentation)[0]
    else:
        masks = [
            segment_batch(models.segmentation, [item.sample.pixels], [box[None]], config.segmentation)[0][0]
            for box in boxes
        ]
    return replace(item, masks=tuple(masks))


def _finish(items: list[WorkItem], config: PipelineConfig, writer: ShardWriter, result: LoopResult, clock: _Clock):
    for item in items:
        with clock("assemble"):
            row, _ = assemble_sample(item, config)
        with clock("write"):
            writer.write(row)
        result.rows += 1
        result.boxes += len(item.groundings)
        result.entities += len(row.entities)


def _timed_reads(input_dir: Path, clock: _Clock) -> Iterator[RawSample]:
    groups = list_folder_groups(input_dir)
    for group in groups:
        with clock("read"):
            raw = read_folder_group(group)
        yield raw


def plain_loop(
    models: Models, input_dir: Path, output_dir: Path, config: PipelineConfig, lineage: Optional[dict] = None
) -> LoopResult:
    """The pipeline's batched model calls in a plain loop: stream inputs, ground in batches of
    `grounding.runtime.batch_size`, segment in batches of `segmentation.runtime.batch_size`."""
    result = LoopResult()
    clock = _Clock(result)
    started = time.perf_counter()
    writer = ShardWriter(output_dir, config, lineage)
    seen: set = set()
    to_ground: list[WorkItem] = []
    to_segment: list[WorkItem] = []
    ground_size, segment_size = config.grounding.runtime.batch_size, config.segmentation.runtime.batch_size

    def segment_ready(final: bool) -> None:
        nonlocal to_segment
        while len(to_segment) >= segment_size or (final and to_segment):
            batch, to_segment = to_segment[:segment_size], to_segment[segment_size:]
            result.batch_sizes["segment"].append(len(batch))
            with clock("segment"):
                batch = segment_items(batch, models, config)
            _finish(batch, config, writer, result, clock)

    def ground_ready(final: bool) -> None:
        nonlocal to_ground
        while len(to_ground) >= ground_size or (final and to_ground):
            batch, to_ground = to_ground[:ground_size], to_ground[ground_size:]
            result.batch_sizes["ground"].append(len(batch))
            with clock("ground"):
                to_segment.extend(ground_items(batch, models, config))
            segment_ready(final=False)

    for raw in _timed_reads(input_dir, clock):
        result.samples += 1
        item = _prepare(raw, models, config, seen, clock)
        if isinstance(item, Reject):
            result.rejects += 1
            continue
        to_ground.append(item)
        ground_ready(final=False)
    ground_ready(final=True)
    segment_ready(final=True)
    with clock("write"):
        writer.close()
    result.seconds = time.perf_counter() - started
    return result


def batch_of_one_loop(
    models: Models,
    input_dir: Path,
    output_dir: Path,
    config: PipelineConfig,
    sam_prompts: SamPrompts = "per_box",
    lineage: Optional[dict] = None,
) -> LoopResult:
    """One image at a time: Grounding DINO on one image, then SAM per box or per image (`sam_prompts`)."""
    if sam_prompts not in ("per_box", "per_image"):
        raise ValueError(f"sam_prompts must be per_box or per_image, got {sam_prompts!r}")
    result = LoopResult()
    clock = _Clock(result)
    started = time.perf_counter()
    writer = ShardWriter(output_dir, config, lineage)
    seen: set = set()
    for raw in _timed_reads(input_dir, clock):
        result.samples += 1
        item = _prepare(raw, models, config, seen, clock)
        if isinstance(item, Reject):
            result.rejects += 1
            continue
        with clock("ground"):
            item = ground_items([item], models, config)[0]
        result.batch_sizes["ground"].append(1)
        with clock("segment"):
            item = _segment_one(item, models, config, sam_prompts)
        calls = len(item.groundings) if sam_prompts == "per_box" else int(bool(item.groundings))
        result.batch_sizes["segment"].extend([1] * calls)
        _finish([item], config, writer, result, clock)
    with clock("write"):
        writer.close()
    result.seconds = time.perf_counter() - started
    return result


def prepare_items(models: Models, input_dir: Path, config: PipelineConfig, limit: int) -> list[WorkItem]:
    """The first `limit` usable inputs as WorkItems with phrases (for FLOP counting and warm-up)."""
    result = LoopResult()
    clock = _Clock(result)
    items, seen = [], set()
    for raw in read_raw_samples(input_dir):
        item = _prepare(raw, models, config, seen, clock)
        if not isinstance(item, Reject):
            items.append(item)
        if len(items) == limit:
            break
    return items
