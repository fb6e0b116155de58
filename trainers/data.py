"""Training samples streamed from Parquet prompt shards (the `unimo_g.schema` contract), for both training stages.

One epoch is shared by U = world_size * num_workers "units", one per (rank, DataLoader worker).
Its row groups are listed in one order, the same on every rank and worker: files in an order
permuted by (seed, epoch), each file's row groups in an order permuted by (seed, epoch). Units
share the epoch in one of two ways, `ShardStream.assignment`, fixed by the footers and U alone:
  - "row_groups": the row groups, ranked by rows (largest first, ties in the epoch's order), go
    to the units round robin; a unit yields its row groups' rows in the epoch's order. Each unit
    reads only its own row groups: the bytes read are the bytes used. A unit's rows depend on the
    row-group sizes alone (the same every epoch, on every rank), and two units differ by at most
    one row group's rows. Used when every unit gets a row group and the smallest unit holds at
    least MIN_UNIT_SHARE of the mean rows per unit (so a few rows more per unit are not bought
    with much of the epoch left out).
  - "rows", for data sets of few row groups: rows numbered globally through the file order; row g
    belongs to unit g % U. Every unit reads every row group it touches and keeps 1/U of its rows
    (reads cost up to U times the bytes used; decoding does not).
Either way every row belongs to exactly one unit per epoch (none is seen twice), and a shuffle
buffer seeded by (seed, epoch, rank, worker) mixes each unit's rows.
The order is computed from the shards' footers alone (row-group sizes), so a resumed run replays
it without reading, let alone decoding, a row; only rows that are yielded are read and decoded.

Resuming mid-epoch: the DataLoader hands out whole batches from its workers in turn (worker 0
first), so after the trainer has consumed n batches, worker w made n // W + (w < n % W) of them.
The trainer reports n: `stream.state_dict(n, batch_size)` goes into the checkpoint;
`stream.load_state_dict(state)` before the next `iter(loader)` makes every worker skip its
share, with worker w taking over the order of worker (w + n) % W, because the new DataLoader
asks worker 0 first. This holds while every worker still has batches to give, so the trainer runs exactly
`stream.steps_per_epoch(batch_size)` steps per epoch, from the smallest unit's rows (the same on
every rank, as DDP needs). It leaves out each unit's rows beyond those batches: at most
num_workers batches of each rank in "rows" assignment, up to one row group more per unit in
"row_groups" assignment. Use `make_loader` (it sets num_workers from the config and
persistent_workers=False, so `set_epoch` reaches new workers).

Rows are read column by column into typed records (`unimo_g.shard_rows.ShardRow`, with its
`Entity`s and `Mask`s); each row becomes a `TrainingSample`, and the loader collates them into
`SampleBatch`es. Stage 1 prompts are the caption alone (K = 0 entities).

Feature files (`unimo_g.features`: pre-computed VAE posteriors and caption encodings) stream the
same way, stage 1 only; their rows, samples and batches are `unimo_g.feature_rows.FeatureRow`,
`trainers.feature_data.FeatureSample` and `FeatureBatch`. The kind is read from the footers (all
files of a stream are one kind) and picks how rows are read; from there on, code dispatches on
the type of the row, sample or batch.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import posixpath
import random
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from fsspec.implementations.local import LocalFileSystem

from trainers.epoch_order import (
    MIN_UNIT_SHARE,
    ROW_GROUPS,
    ROWS,
    choose_assignment,
    dealt_rows,
    derive_seed,
    epoch_row_groups,
    row_group_order,
    unit_order,
)
from trainers.feature_data import (
    FEATURE_COLUMNS,
    STAGE2_REFUSED,
    FeatureBatch,
    FeatureSample,
    build_feature_sample,
    collate_features,
    pin_tensors,
)
from trainers.prompts import choose_entities, substituted_prompt
from unimo_g.config_tools import ConfigError, from_dict
from unimo_g.feature_rows import FeatureRow, feature_rows
from unimo_g.features import FEATURES_DIR, FeatureLayout, FeatureSpec, is_feature_file, read_feature_metadata
from unimo_g.images.decoding import ImageRejected
from unimo_g.images.training_geometry import DEFAULT_RESOLUTION, open_image, transform_image, transform_mask
from unimo_g.pipeline_config import EntityImageConfig
from unimo_g.records import PromptPart, ShardRow
from unimo_g.rle import decode_mask
from unimo_g.schema import check_schema_version, lineage_of
from unimo_g.shard_rows import ENTITIES_COLUMN, ROW_COLUMNS, shard_rows

logger = logging.getLogger(__name__)

STAGE_COLUMNS = {1: list(ROW_COLUMNS), 2: [*ROW_COLUMNS, ENTITIES_COLUMN]}
SAMPLES, FEATURES = "samples", "features"  # the two kinds of files a stream reads
OPEN_FILES = 4  # Parquet files a worker keeps open at once
LEGACY_IDENTITY = {"assignment": ROWS}  # what a resume state saved before "assignment" existed used


class ShardError(RuntimeError):
    """A shard that cannot be read (corrupt, truncated, not a unimo-g shard). Names the file."""


@dataclass(frozen=True)
class DataConfig:
    """How shards become training samples.

    resolution: side R of the square target image (shorter side resized to R, then center crop).
    shuffle_buffer: rows in each worker's shuffle buffer (0 or 1: rows in the order of their files and row groups).
    skip_corrupt: skip (and count, with a warning) an unreadable shard, row group or row instead
      of raising.
    substitute_prob: stage 2, each entity beyond the first of a sample that is not text-only
      becomes its image with this probability (the paper does not give one).
    text_only_prob: stage 2, share of rows WITH entities that stay text-only (paper: 10%); rows
      without entities are text-only in addition (`trainers.prompts` explains why).
    compose_mode: "replace" (the phrase becomes the image, as in the paper) or "append".
    max_entities: most entities substituted per sample (a random subset when more are drawn);
      a sample with entities that is not text-only gets at least one.
    num_workers: DataLoader workers (0: load in the training process).
    max_pixels: images whose header declares more pixels are refused before decoding.
    """

    resolution: int = DEFAULT_RESOLUTION
    shuffle_buffer: int = 1000
    skip_corrupt: bool = False
    substitute_prob: float = 0.5
    text_only_prob: float = 0.1
    compose_mode: str = "replace"
    max_entities: int = 4
    num_workers: int = 2
    max_pixels: int = 64_000_000

    def __post_init__(self):
        if self.resolution < 8:
            raise ValueError(f"data.resolution must be >= 8, got {self.resolution!r}")
        if self.shuffle_buffer < 0:
            raise ValueError(f"data.shuffle_buffer must be >= 0, got {self.shuffle_buffer!r}")
        for name in ("substitute_prob", "text_only_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"data.{name} must be in [0, 1], got {value!r}")
        if self.compose_mode not in ("replace", "append"):
            raise ValueError(f"data.compose_mode must be 'replace' or 'append', got {self.compose_mode!r}")
        if self.max_entities < 0:
            raise ValueError(f"data.max_entities must be >= 0, got {self.max_entities!r}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers!r}")
        if self.max_pixels < 1:
            raise ValueError(f"data.max_pixels must be >= 1, got {self.max_pixels!r}")


# ---------------------------------------------------------------------------------------------
# Finding and inspecting shards


def list_shards(data: str) -> list[str]:
    """Shard files of `data`, sorted: a directory (its `shards/*.parquet`, else, for a feature run,
    its `features/*.parquet`, else its `*.parquet`), a glob, a single file, or any of these as an
    fsspec URL (`s3://bucket/run/shards/*.parquet`)."""
    fs, root = fsspec.core.url_to_fs(data)
    if any(char in root for char in "*?["):
        paths = fs.glob(root)
    elif fs.isdir(root):
        for sub in ("shards", FEATURES_DIR, ""):  # a prompt-shard run, a feature run, a folder of files
            paths = fs.glob(posixpath.join(root, sub, "*.parquet"))
            if paths:
                break
    elif fs.isfile(root):
        paths = [root]
    else:
        raise FileNotFoundError(f"no such shard file or directory: {data}")
    paths = sorted(path for path in paths if fs.isfile(path))
    if not paths:
        raise FileNotFoundError(f"no .parquet shards found at {data}")
    return [path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path) for path in paths]


def _inspect(file: str) -> tuple[list[int], Optional[tuple[FeatureSpec, FeatureLayout]]]:
    """Row counts of the row groups of `file`, after checking its schema version, and the spec
    and layout of a feature file (None for a sample shard); footer only. A feature file whose
    metadata cannot be read raises `FeatureFormatError`, as a sample shard's version does."""
    try:
        with fsspec.open(file, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            metadata = parquet.metadata
            schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as err:
        raise ShardError(f"{file}: cannot read the Parquet footer (corrupt or truncated?): {err}") from err
    if is_feature_file(schema.metadata):
        footer, columns, what = read_feature_metadata(schema.metadata, where=file), FEATURE_COLUMNS, "feature file"
    else:
        check_schema_version(schema.metadata, where=file)
        footer, columns, what = None, STAGE_COLUMNS[2], "sample shard"
    missing = [name for name in columns if name not in schema.names]
    if missing:
        raise ShardError(f"{file}: columns {missing} are missing; not a unimo-g {what}")
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)], footer


def entity_image_config(file: str) -> EntityImageConfig:
    """How the entity images of a prompt shard were made (the `entity_image` config in its lineage;
    the pipeline's default for a shard without one). Generation prepares a user's entity images
    the same way."""
    try:
        with fsspec.open(file, "rb") as handle:
            metadata = pq.ParquetFile(handle).schema_arrow.metadata
    except (pa.ArrowException, OSError) as err:
        raise ShardError(f"{file}: cannot read the Parquet footer (corrupt or truncated?): {err}") from err
    values = (lineage_of(metadata).get("config") or {}).get("entity_image")
    try:
        return from_dict(EntityImageConfig, values) if values else EntityImageConfig()
    except ConfigError as err:
        raise ShardError(f"{file}: the entity_image config in its lineage is unusable: {err}") from None


# ---------------------------------------------------------------------------------------------
# Samples and batches


@dataclass(frozen=True)
class TrainingSample:
    """One training sample of a prompt shard row: `pixel_values` (3, R, R) float32 in [-1, 1], the
    target image; `prompt` the interleaved prompt, whose `PromptPart(entity=k)` is `entity_images[k]`
    (PIL RGB) with mask `entity_masks[k]` ((K, R, R) float32 in [0, 1], transformed exactly like
    the target image). A text-only sample has K = 0."""

    id: str
    caption: str
    pixel_values: torch.Tensor
    prompt: tuple[PromptPart, ...]
    entity_images: list
    entity_masks: torch.Tensor


@dataclass(frozen=True)
class SampleBatch:
    """`TrainingSample`s collated (`collate`): `pixel_values` (B, 3, R, R); `entity_masks`
    (B, Kmax, R, R) zero-padded, with `entity_valid` (B, Kmax) bool True at real entities; ids,
    captions, prompts and entity images as lists of B."""

    ids: list[str]
    captions: list[str]
    pixel_values: torch.Tensor
    prompts: list[tuple[PromptPart, ...]]
    entity_images: list[list]
    entity_masks: torch.Tensor
    entity_valid: torch.Tensor

    def pin_memory(self) -> SampleBatch:
        return pin_tensors(self)


Batch = Union[SampleBatch, FeatureBatch]  # what the loader yields, by the stream's kind


def build_sample(row: ShardRow, config: DataConfig, stage: int, rng: random.Random) -> TrainingSample:
    """One training sample from a shard row (`rng` draws the stage-2 substitutions)."""
    image = open_image(row.image, config.max_pixels)
    resolution = config.resolution
    entities = row.entities if stage == 2 else ()
    chosen = choose_entities(len(entities), rng, config.substitute_prob, config.text_only_prob, config.max_entities)
    spans = [(entity.start, entity.end) for entity in entities]
    prompt, kept = substituted_prompt(row.caption, spans, chosen, config.compose_mode)
    masks = []
    for k in kept:
        mask = entities[k].mask
        if tuple(mask.size) != (image.height, image.width):
            raise ValueError(
                f"entity {k}: mask size {list(mask.size)} differs from the image's [{image.height}, {image.width}]"
            )
        masks.append(transform_mask(decode_mask(mask.size, mask.counts), resolution))
    return TrainingSample(
        id=row.id,
        caption=row.caption,
        pixel_values=transform_image(image, resolution),
        prompt=prompt if prompt else (PromptPart(text=row.caption),),
        entity_images=[open_image(entities[k].image, config.max_pixels) for k in kept],
        entity_masks=torch.stack(masks) if masks else torch.zeros(0, resolution, resolution),  # (K, R, R)
    )


# ---------------------------------------------------------------------------------------------
# The stream


class ShardStream(torch.utils.data.IterableDataset):
    """Samples of `files` for one rank (see the module docstring for order, sharding and resume).

    Reads every file's footer at construction: schema versions are checked (a version this code
    does not know raises `SchemaVersionError`, or `FeatureFormatError` for a feature file, naming
    the file) and an unreadable file raises `ShardError` naming it, or with `skip_corrupt` is left
    out and listed in `skipped_files`. `kind` is SAMPLES or FEATURES; files of both kinds, feature
    files of different specs or layouts, and feature files in stage 2 raise `ShardError`. A
    feature stream exposes `feature_spec` and `feature_layout` (None otherwise). `assignment` is
    ROW_GROUPS or ROWS, how the units share an epoch (`choose_assignment` of the row-group sizes).
    `stats` counts skipped files, row groups and rows, and the row groups read ("row_groups_read")
    and the rows they hold ("rows_read"), in this process (a worker's own skips are logged as
    warnings). With `skip_corrupt`, rows skipped before a resume point shift the
    resumed stream by as many rows (the replay does not read rows, so it cannot know of them).
    """

    def __init__(
        self, files: Sequence[str], config: DataConfig, stage: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ):
        super().__init__()
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.config, self.stage, self.seed, self.rank, self.world_size = config, stage, seed, rank, world_size
        self.stats: Counter = Counter()
        self.skipped_files: list[str] = []
        self.files: list[str] = []
        self.row_groups: list[list[int]] = []  # rows per row group, per file
        footers: list[Optional[tuple[FeatureSpec, FeatureLayout]]] = []
        for file in files:
            try:
                counts, footer = _inspect(file)
            except ShardError as err:
                if not config.skip_corrupt:
                    raise
                logger.warning("skipping shard: %s", err)
                self.skipped_files.append(file)
                self.stats["skipped_files"] += 1
                continue
            self.files.append(file)
            self.row_groups.append(counts)
            footers.append(footer)
        self.kind = _one_kind(self.files, footers)
        self.feature_spec, self.feature_layout = footers[0] if self.kind == FEATURES else (None, None)
        if self.kind == FEATURES and stage != 1:
            raise ShardError(STAGE2_REFUSED)
        self.row_counts = [sum(counts) for counts in self.row_groups]
        sizes = [n for counts in self.row_groups for n in counts]
        self.assignment = choose_assignment(sizes, self.units, MIN_UNIT_SHARE)
        self.epoch = 0
        self._resume: Optional[dict] = None

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def workers(self) -> int:
        """DataLoader workers per rank (1 when loading in the training process)."""
        return max(1, self.config.num_workers)

    @property
    def units(self) -> int:
        """(rank, worker) units sharing an epoch: world_size * workers."""
        return self.world_size * self.workers

    @property
    def num_rows(self) -> int:
        return sum(self.row_counts)

    def rows_per_unit(self) -> list[int]:
        """Rows each (rank, worker) unit yields per epoch, indexed by rank * workers + worker; the
        same every epoch and on every rank."""
        if self.assignment == ROW_GROUPS:
            return dealt_rows([n for counts in self.row_groups for n in counts], self.units)
        return [len(range(unit, self.num_rows, self.units)) for unit in range(self.units)]

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches every rank takes per epoch: all workers still active, equal across ranks."""
        return self.workers * (min(self.rows_per_unit()) // batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Call before each `iter(loader)`; a resume point for another epoch is dropped."""
        self.epoch = epoch
        if self._resume is not None and self._resume["epoch"] != epoch:
            self._resume = None

    def _fingerprint(self) -> str:
        """The files and the footer figures the order depends on: row counts ("rows"), row-group
        sizes too ("row_groups")."""
        lines = [f"{file}\t{count}" for file, count in zip(self.files, self.row_counts)]
        if self.assignment == ROW_GROUPS:
            lines = [f"{line}\t{','.join(map(str, counts))}" for line, counts in zip(lines, self.row_groups)]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]

    def _identity(self) -> dict:
        return {
            "seed": self.seed,
            "stage": self.stage,
            "world_size": self.world_size,
            "num_workers": self.config.num_workers,
            "shuffle_buffer": self.config.shuffle_buffer,
            "assignment": self.assignment,
            "files": self._fingerprint(),
        }

    def state_dict(self, batches_consumed: int, batch_size: int) -> dict:
        """The position after the trainer consumed `batches_consumed` batches of this epoch."""
        if batches_consumed < 0 or batch_size < 1:
            raise ValueError(f"bad position: {batches_consumed} batches of {batch_size}")
        return {"epoch": self.epoch, "batches_consumed": batches_consumed, "batch_size": batch_size, **self._identity()}

    def load_state_dict(self, state: dict) -> None:
        """Resume at `state`'s position on the next iteration (same files, seed and layout only)."""
        given = {**LEGACY_IDENTITY, **state}
        mismatched = {k: (given.get(k), v) for k, v in self._identity().items() if given.get(k) != v}
        if mismatched:
            detail = ", ".join(f"{k}: saved {saved!r}, now {now!r}" for k, (saved, now) in mismatched.items())
            raise ValueError(f"cannot resume the data stream exactly; it changed since the checkpoint ({detail})")
        self.epoch = state["epoch"]
        self._resume = {key: state[key] for key in ("epoch", "batches_consumed", "batch_size")}

    def _resume_role(self, worker: int) -> tuple[int, int]:
        """(role, samples to skip) of DataLoader worker `worker` of this iteration.

        A new DataLoader asks worker 0 first; after n consumed batches the next batch belongs to
        the unit worker n % W made, so worker w takes over the order of unit worker (w + n) % W.
        """
        if self._resume is None or self._resume["epoch"] != self.epoch:
            return worker, 0
        done, workers = self._resume["batches_consumed"], self.workers
        role = (worker + done) % workers
        return role, (done // workers + (role < done % workers)) * self._resume["batch_size"]

    # -- order and iteration -------------------------------------------------------------------

    def plan(self, worker: int = 0) -> list[tuple[str, int]]:
        """The (file, row) order `worker` of this rank yields this epoch (before any resume skip)."""
        return [(self.files[file], row) for file, row in self._plan(worker)]

    def _plan(self, worker: int) -> list[tuple[int, int]]:
        file_order = list(range(len(self.files)))
        random.Random(derive_seed(self.seed, "files", self.epoch)).shuffle(file_order)
        rng = random.Random(derive_seed(self.seed, "buffer", self.epoch, self.rank, worker))
        unit, buffer = self.rank * self.workers + worker, self.config.shuffle_buffer
        if self.assignment == ROWS:
            return unit_order(self.row_counts, file_order, unit, self.units, buffer, rng)
        group_rng = random.Random(derive_seed(self.seed, "groups", self.epoch))
        groups = epoch_row_groups(self.row_groups, file_order, group_rng)
        return row_group_order(self.row_groups, groups, unit, self.units, buffer, rng)

    def __iter__(self) -> Iterator[TrainingSample | FeatureSample]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if workers != self.workers:
            raise RuntimeError(
                f"the stream is laid out for {self.workers} worker(s) (data.num_workers={self.config.num_workers}) "
                f"but runs in {workers}; build the DataLoader with make_loader"
            )
        role, skip = self._resume_role(worker)
        remaining = self._plan(role)[skip:]
        reader = _RowReader(self, remaining)
        try:
            for key in remaining:
                row = reader.take(key)
                if row is None:  # in a skipped row group
                    continue
                try:
                    yield self._build(row)
                except (ImageRejected, OSError, ValueError) as err:
                    where = f"{self.files[key[0]]}: row {key[1]} (id {row.id})"
                    if not self.config.skip_corrupt:
                        raise ShardError(f"{where}: {err}") from err
                    logger.warning("skipping row %s: %s", where, err)
                    self.stats["skipped_rows"] += 1
        finally:
            reader.close()

    def _build(self, row: ShardRow | FeatureRow) -> TrainingSample | FeatureSample:
        if isinstance(row, FeatureRow):
            return build_feature_sample(row, self.feature_spec, self.feature_layout)
        rng = random.Random(derive_seed(self.seed, "sample", self.epoch, row.id))
        return build_sample(row, self.config, self.stage, rng)


def _one_kind(files: Sequence[str], footers: Sequence[Optional[tuple]]) -> str:
    """The kind of all `files` (their `_inspect` footers); ShardError naming a file of each kind,
    or two feature files whose spec or layout differ."""
    features = [(file, footer) for file, footer in zip(files, footers) if footer is not None]
    if not features:
        return SAMPLES
    if len(features) < len(files):
        sample = next(file for file, footer in zip(files, footers) if footer is None)
        raise ShardError(
            f"prompt shards and feature files cannot be mixed: {sample} is a prompt shard, "
            f"{features[0][0]} a feature file"
        )
    first, footer = features[0]
    for file, other in features[1:]:
        if other != footer:
            raise ShardError(f"feature files of different specs or layouts: {first} and {file}")
    return FEATURES


class _RowReader:
    """Reads the rows of a unit's remaining order, one row group at a time, keeping only rows
    still to come and dropping each once taken (memory ~ the shuffle buffer's rows plus the
    unit's rows of one row group: a whole row group in "row_groups" assignment). Rows are typed
    records of the stream's kind: `ShardRow`s, or `FeatureRow`s of a feature stream."""

    def __init__(self, stream: ShardStream, keys: Sequence[tuple[int, int]]):
        self.stream = stream
        features = stream.kind == FEATURES
        self.columns = FEATURE_COLUMNS if features else STAGE_COLUMNS[stream.stage]
        self.read_rows = feature_rows if features else shard_rows  # an Arrow table -> its typed rows
        self.starts = [np.cumsum([0, *counts]).tolist() for counts in stream.row_groups]  # row-group offsets
        self.wanted: dict[tuple[int, int], set[int]] = {}
        for file, row in keys:
            self.wanted.setdefault((file, self._group(file, row)), set()).add(row)
        self.rows: dict[tuple[int, int], Optional[ShardRow | FeatureRow]] = {}
        self.handles: OrderedDict = OrderedDict()

    def _group(self, file: int, row: int) -> int:
        return bisect.bisect_right(self.starts[file], row) - 1

    def take(self, key: tuple[int, int]) -> Optional[ShardRow | FeatureRow]:
        if key not in self.rows:
            self._load(key[0], self._group(*key))
        return self.rows.pop(key)

    def _load(self, file: int, group: int) -> None:
        rows = sorted(self.wanted.pop((file, group)))
        try:
            table = self._parquet(file).read_row_group(group, columns=self.columns)
            self.stream.stats["row_groups_read"] += 1
            self.stream.stats["rows_read"] += table.num_rows
            taken = self.read_rows(table.take(pa.array([row - self.starts[file][group] for row in rows])))
        except (pa.ArrowException, OSError) as err:
            if not self.stream.config.skip_corrupt:
                raise ShardError(f"{self.stream.files[file]}: cannot read row group {group}: {err}") from err
            logger.warning("skipping row group %d of %s: %s", group, self.stream.files[file], err)
            self.stream.stats["skipped_row_groups"] += 1
            taken = [None] * len(rows)
        self.rows.update(((file, row), value) for row, value in zip(rows, taken))

    def _parquet(self, file: int) -> pq.ParquetFile:
        if file in self.handles:
            self.handles.move_to_end(file)
            return self.handles[file][1]
        if len(self.handles) >= OPEN_FILES:
            self.handles.popitem(last=False)[1][0].close()
        handle = fsspec.open(self.stream.files[file], "rb").open()
        self.handles[file] = (handle, pq.ParquetFile(handle))
        return self.handles[file][1]

    def close(self) -> None:
        while self.handles:
            self.handles.popitem()[1][0].close()


# ---------------------------------------------------------------------------------------------
# Batching


def collate(samples: Sequence[TrainingSample]) -> SampleBatch:
    """A `SampleBatch` of `samples`, entity masks zero-padded to the batch's most entities."""
    resolution = samples[0].pixel_values.shape[-1]
    most = max(len(s.entity_images) for s in samples)
    masks = torch.zeros(len(samples), most, resolution, resolution)  # (B, Kmax, R, R)
    valid = torch.zeros(len(samples), most, dtype=torch.bool)  # (B, Kmax)
    for b, sample in enumerate(samples):
        count = sample.entity_masks.shape[0]
        masks[b, :count] = sample.entity_masks
        valid[b, :count] = True
    return SampleBatch(
        ids=[s.id for s in samples],
        captions=[s.caption for s in samples],
        pixel_values=torch.stack([s.pixel_values for s in samples]),  # (B, 3, R, R)
        prompts=[s.prompt for s in samples],
        entity_images=[s.entity_images for s in samples],
        entity_masks=masks,
        entity_valid=valid,
    )


def collate_samples(samples: Sequence[TrainingSample] | Sequence[FeatureSample]) -> Batch:
    """The batch of `samples`, by their type: a `SampleBatch`, or a `FeatureBatch` of `FeatureSample`s
    (a stream yields one type)."""
    if isinstance(samples[0], FeatureSample):
        return collate_features(samples)
    return collate(samples)


def make_loader(stream: ShardStream, batch_size: int, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """The DataLoader the stream's resume arithmetic assumes (workers from the config, rebuilt each
    iteration so that `set_epoch` / `load_state_dict` reach them), collating by the samples' type."""
    workers = stream.config.num_workers
    return torch.utils.data.DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_samples,
        persistent_workers=False,
        pin_memory=pin_memory,
    )
