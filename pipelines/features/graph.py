"""The feature job as one Beam graph, and what it needs on the launcher: its inputs, its layout,
its lineage and its manifest (folder layout: `unimo_g.features`).

    ReadShardRows(id, image, caption; + the unconditional item) ─► Prepare ─► RunInference(VAE)
        ─► RunInference(encoder) ─► Finish ─► SplitUnconditional (the one row without latents)
        ─► WriteFeatures (OUTPUT/features), WriteUnconditional (OUTPUT/unconditional, its one row)
    Prepare's and Finish's rejects ─► Flatten ─► WriteRejects (OUTPUT/rejects)

The unconditional item goes through the same encoder handler as the captions, so a worker loads
one encoder (the VAE passes it by). Every input row ends as exactly one feature row or one reject.
"""

from __future__ import annotations

import datetime
import glob
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.ml.inference.base import RunInference

from pipelines.features.handlers import EncoderHandler, VaeMomentsHandler
from pipelines.features.read import ReadShardRows, row_group_units
from pipelines.features.stages import INPUTS, READ_COLUMNS, Finish, Prepare, row_partition
from pipelines.io.read_guard import inside_folder
from pipelines.io.write import FILE_SUFFIX, REJECTS_DIR, SHARDS_DIR, WriteParquetRows, WriteRejects
from pipelines.outputs.manifest import count_rejects, library_versions, matching_files
from pipelines.staged import passed
from unimo_g.config_tools import config_hash, to_dict
from unimo_g.devices import check_device_name
from unimo_g.features import (
    FEATURE_SCHEMA_VERSION,
    FEATURES_DIR,
    UNCONDITIONAL_DIR,
    FeatureFormatError,
    FeatureLayout,
    FeatureSpec,
    feature_schema,
    is_feature_file,
    read_feature_metadata,
)
from unimo_g.models.encoder import EncoderConfig
from unimo_g.models.vae import VAE_BUILDERS, vae_scale_factor
from unimo_g.pipeline_config import DecodeConfig, WriteConfig
from unimo_g.schema import check_schema_version, lineage_of

OUTPUT_FOLDERS = (FEATURES_DIR, UNCONDITIONAL_DIR, REJECTS_DIR)  # what a rerun replaces
FOOTER_READERS = 16  # threads reading input footers on the launcher
VAE_DTYPES = ("fp32", "bf16")


@dataclass(frozen=True)
class FeatureJobConfig:
    """How the feature job runs (not what it computes: that is the `FeatureSpec`).

    device: "cpu", "cuda" or "cuda:N" for both models (resolved on the workers; no fallback).
    vae_dtype: "fp32" (as the trainer encodes) or "bf16" (CUDA only; latents then differ slightly
      from the trainer's own and the lineage records it).
    batch_size: images per VAE batch and captions per encoder batch.
    max_pixels: images whose header declares more pixels are rejected before decoding.
    write: Parquet output; feature rows are large (T x D hidden states), so row groups are small.
    """

    device: str = "cpu"
    vae_dtype: str = "fp32"
    batch_size: int = 8
    max_pixels: int = DecodeConfig().max_pixels
    write: WriteConfig = field(default_factory=lambda: WriteConfig(row_group_rows=64))

    def __post_init__(self):
        check_device_name(self.device)
        if self.vae_dtype not in VAE_DTYPES:
            raise ValueError(f"vae dtype must be one of {list(VAE_DTYPES)}, got {self.vae_dtype!r}")
        if self.vae_dtype != "fp32" and not self.device.startswith("cuda"):
            raise ValueError(f"vae dtype {self.vae_dtype} needs a cuda device, got {self.device!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size!r}")
        if self.max_pixels < 1:
            raise ValueError(f"max pixels must be >= 1, got {self.max_pixels!r}")


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class SourceFile:
    path: str
    rows_per_group: tuple[int, ...]  # rows of each row group
    schema_version: int
    config_hash: Optional[str]  # of the pipeline run that wrote it, from its lineage

    @property
    def rows(self) -> int:
        return sum(self.rows_per_group)


@dataclass(frozen=True)
class ShardInputs:
    """The prompt shards a feature run reads: the pattern it was given and the files it matched on
    the launcher (each checked to be a unimo-g sample shard); the job reads exactly these."""

    pattern: str
    files: tuple[SourceFile, ...]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def shard_pattern(path: str) -> str:
    """The file pattern of an input path: a run folder (its shards/*.parquet), a folder of
    *.parquet, a glob, or one file."""
    if glob.has_magic(path):
        return path
    if isinstance(FileSystems.get_filesystem(path), LocalFileSystem):
        if os.path.isfile(path):
            return path
        if not os.path.isdir(path):
            raise ValueError(f"--input: no such file or folder {path!r}")
        if os.path.isdir(os.path.join(path, SHARDS_DIR)):
            return os.path.join(path, SHARDS_DIR, f"*{FILE_SUFFIX}")
        return os.path.join(path, f"*{FILE_SUFFIX}")
    if matching_files(path) == [path]:
        return path
    run_shards = FileSystems.join(path, SHARDS_DIR, f"*{FILE_SUFFIX}")
    return run_shards if matching_files(run_shards) else FileSystems.join(path, f"*{FILE_SUFFIX}")


def check_sample_shard(path: str) -> SourceFile:
    """Read a file's footer and refuse (ValueError naming it) anything but a unimo-g sample shard
    with the columns the job reads."""
    try:
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            schema, metadata = parquet.schema_arrow, parquet.metadata
            rows_per_group = tuple(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"{path}: not a readable Parquet file: {err}") from None
    if is_feature_file(schema.metadata):
        raise ValueError(f"{path} is a feature file, not a unimo-g sample shard")
    version = check_schema_version(schema.metadata, where=path)  # SchemaVersionError is a ValueError
    missing = [c for c in READ_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)} column(s); not a sample shard (a reject file?)")
    return SourceFile(path, rows_per_group, version, lineage_of(schema.metadata).get("config_hash"))


def resolve_inputs(path: str) -> ShardInputs:
    """The shards under `path` (see `shard_pattern`), every footer checked; ValueError when none
    match or one is not a sample shard. Footers are read FOOTER_READERS at a time (object stores
    answer each read with a round trip)."""
    pattern = shard_pattern(path)
    files = matching_files(pattern)
    if not files:
        raise ValueError(f"--input: no Parquet files match {pattern!r}")
    if pattern != path:  # files listed in a folder: none may be a link that leaves it
        try:
            inside_folder(files, path)
        except ValueError as err:
            raise ValueError(f"--input: {err}") from None
    with ThreadPoolExecutor(FOOTER_READERS) as pool:
        return ShardInputs(pattern, tuple(pool.map(check_sample_shard, files)))


# ---------------------------------------------------------------------------------------------
# Layout and lineage


def _vae_skeleton(spec: FeatureSpec):
    """The spec's VAE with no weights (meta tensors): its config and module tree only."""
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        if spec.vae in VAE_BUILDERS:
            return VAE_BUILDERS[spec.vae]()
        return AutoencoderKL.from_config(AutoencoderKL.load_config(spec.vae, subfolder=spec.vae_subfolder))


def encoder_hidden_size(config: EncoderConfig) -> int:
    """The encoder's width D from its model config alone (no weights are loaded); OSError when
    the model cannot be found."""
    if config.model == "tiny":
        from unimo_g.models.tiny_vlm import TINY_BUILDERS, TINY_IMAGE_SIZE

        model, _ = TINY_BUILDERS[config.family](config.seed, config.image_size or TINY_IMAGE_SIZE)
        return int(model.config.get_text_config().hidden_size)
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(config.model, revision=config.revision, trust_remote_code=False)
    return int(model_config.get_text_config().hidden_size)


def feature_layout(spec: FeatureSpec) -> FeatureLayout:
    """Latent shape (C, R/f, R/f) and hidden width D of the spec's models, from their configs.
    ValueError when R is not a multiple of the VAE's downscale f; OSError when a model is missing."""
    vae = _vae_skeleton(spec)
    factor = vae_scale_factor(vae)
    if spec.resolution % factor:
        raise ValueError(f"data.resolution {spec.resolution} is not a multiple of the VAE's downscale {factor}")
    side = spec.resolution // factor
    latent_shape = (int(vae.config.latent_channels), side, side)
    return FeatureLayout(latent_shape, encoder_hidden_size(spec.encoder))


def random_weights(spec: FeatureSpec) -> bool:
    """True when a model is a random-weight build: the features then carry no meaning."""
    return spec.encoder.model == "tiny" or spec.vae in VAE_BUILDERS


def build_feature_lineage(spec: FeatureSpec, job: FeatureJobConfig, inputs: ShardInputs) -> dict:
    """What made a feature file, stored in its footer: deterministic (no times, no file list;
    the manifest lists the source files)."""
    return {
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "spec": to_dict(spec),
        "spec_hash": config_hash(spec),
        "vae_dtype": job.vae_dtype,
        "random_weights": random_weights(spec),
        "libraries": library_versions(),
        "input": inputs.pattern,
        "source_files": len(inputs.files),
        "source_config_hashes": sorted({f.config_hash for f in inputs.files if f.config_hash}),
    }


# ---------------------------------------------------------------------------------------------
# The graph


def build_feature_pipeline(
    pipeline: beam.Pipeline,
    inputs: ShardInputs,
    output_dir: str,
    spec: FeatureSpec,
    layout: FeatureLayout,
    job: FeatureJobConfig,
    lineage: Optional[Mapping] = None,
) -> None:
    """Add the whole feature job to `pipeline` (see the module docstring)."""
    schema = feature_schema(spec, layout, lineage)
    units = [unit for f in inputs.files for unit in row_group_units(f.path, f.rows_per_group)]
    vae = VaeMomentsHandler(spec, job.device, job.vae_dtype, job.batch_size, layout.latent_shape)
    encoder = EncoderHandler(spec.encoder, job.device, job.batch_size)
    rejects: list[beam.PCollection] = []  # every stage's, written together
    shard_rows = pipeline | "ReadShards" >> ReadShardRows(units)
    items = passed(shard_rows | "Prepare" >> Prepare(spec.resolution, job.max_pixels), rejects)
    encoded = items | "EncodeImages" >> RunInference(vae) | "EncodeCaptions" >> RunInference(encoder)
    rows = passed(encoded | "Finish" >> Finish(spec.storage_dtype), rejects)
    features, unconditional = rows | "SplitUnconditional" >> beam.Partition(row_partition, 2)
    features | "WriteFeatures" >> WriteParquetRows(output_dir, FEATURES_DIR, schema, job.write)
    one_file = WriteConfig(num_shards=1, compression=job.write.compression, row_group_rows=1)
    unconditional | "WriteUnconditional" >> WriteParquetRows(output_dir, UNCONDITIONAL_DIR, schema, one_file)
    rejects | "AllRejects" >> beam.Flatten() | "WriteRejects" >> WriteRejects(output_dir, lineage, job.write)


# ---------------------------------------------------------------------------------------------
# Counts and manifest


def _count_feature_rows(pattern: str, spec: FeatureSpec, layout: FeatureLayout) -> tuple[int, int]:
    """(rows, files) of the feature files matching `pattern`; FeatureFormatError when one is not a
    feature file of this spec and layout."""
    rows, files = 0, matching_files(pattern)
    for path in files:
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            found_spec, found_layout = read_feature_metadata(parquet.schema_arrow.metadata, where=path)
            rows += parquet.metadata.num_rows
        if found_spec != spec or found_layout != layout:
            raise FeatureFormatError(f"{path}: written with another spec or layout than this run's")
    return rows, len(files)


def count_feature_outputs(output_dir: str, spec: FeatureSpec, layout: FeatureLayout) -> dict:
    """Rows, the unconditional row and rejects actually written under `output_dir`:
    {"rows", "unconditional_rows", "rejects", "rejects_by_stage", "rejects_by_reason",
    "feature_files", "reject_files"}."""
    rows, files = _count_feature_rows(FileSystems.join(output_dir, FEATURES_DIR, f"*{FILE_SUFFIX}"), spec, layout)
    unconditional, _ = _count_feature_rows(
        FileSystems.join(output_dir, UNCONDITIONAL_DIR, f"*{FILE_SUFFIX}"), spec, layout
    )
    return {"rows": rows, "unconditional_rows": unconditional, **count_rejects(output_dir), "feature_files": files}


def build_feature_manifest(
    output_dir: str,
    inputs: ShardInputs,
    spec: FeatureSpec,
    layout: FeatureLayout,
    lineage: Mapping[str, Any],
    *,
    runner: str,
    wall_time_s: float,
    counters: Optional[Mapping[str, int]] = None,
) -> dict:
    """The manifest of a finished feature run. `counts.inputs` is the rows of the source files'
    footers (exact); `counters` the runner's counters of the `features` namespace, for monitoring
    (`counts.inputs_read` is their `inputs`, None when the runner reports none).
    `counts.accounted`: inputs == rows + rejects and exactly one unconditional row."""
    counters = dict(counters or {})
    counts = count_feature_outputs(output_dir, spec, layout)
    inputs_total = inputs.rows
    accounted = inputs_total == counts["rows"] + counts["rejects"] and counts["unconditional_rows"] == 1
    return {
        **lineage,
        "layout": {"latent_shape": list(layout.latent_shape), "hidden_size": layout.hidden_size},
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input": {
            "pattern": inputs.pattern,
            "files": [
                {"path": f.path, "rows": f.rows, "row_groups": len(f.rows_per_group),
                 "schema_version": f.schema_version, "config_hash": f.config_hash}
                for f in inputs.files
            ],
        },
        "output_dir": output_dir,
        "runner": runner,
        "wall_time_s": round(float(wall_time_s), 3),
        "counters": counters,
        "counts": {"inputs": inputs_total, "inputs_read": counters.get(INPUTS), **counts, "accounted": accounted},
    }
