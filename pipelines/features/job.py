"""The feature job, from typed values: a `FeaturesRequest` → the feature folder's manifest.

`FeaturesConfig` is the job's whole configuration: what it computes (`spec`, read from a training
config so that the trainer with that config accepts the features: `unimo_g.features`) and how it
runs (`job`). `pipelines.features.command` turns a command line into a `FeaturesRequest`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

from pipelines.features.graph import FeatureJobConfig
from unimo_g.config_tools import ConfigError, deep_merge, parse_overrides, read_yaml
from unimo_g.features import FeatureSpec, spec_from_train_config
from unimo_g.presets import PresetNotFound, resolve_preset
from unimo_g.usage import UsageError


@dataclass(frozen=True)
class FeaturesConfig:
    spec: FeatureSpec
    job: FeatureJobConfig = field(default_factory=FeatureJobConfig)


def load_features_config(config: str, overrides: Sequence[str] = (), storage_dtype: str = "fp16",
                         job: Optional[dict] = None) -> FeaturesConfig:
    """The config of a feature run: `spec` from training config `config` (a YAML path or preset
    name) with its `--set` overrides, read as the trainer reads them (`spec_from_train_config`);
    `job` from the `FeatureJobConfig` values given, its `max_pixels` by default the training
    config's `data.max_pixels` (the trainer's own bound). Raises `ConfigError`."""
    try:
        path = resolve_preset(config)
    except PresetNotFound as err:
        raise ConfigError(str(err)) from None
    train = deep_merge(read_yaml(path), parse_overrides(overrides))
    spec = spec_from_train_config(train, storage_dtype)
    settings = {key: value for key, value in (job or {}).items() if value is not None}
    trainer_max_pixels = (train.get("data") or {}).get("max_pixels")
    try:
        if "max_pixels" not in settings and trainer_max_pixels is not None:
            settings["max_pixels"] = int(trainer_max_pixels)
        return FeaturesConfig(spec, FeatureJobConfig(**settings))
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None


@dataclass(frozen=True)
class FeaturesRequest:
    """One run of the feature job: prompt shards `input` (run folder, folder, glob or file) →
    `output`; `overwrite` replaces an earlier run's features, rejects and manifest there;
    `beam_args`: Beam's own pipeline options (DirectRunner unless they name a runner)."""

    input: str
    output: str
    config: FeaturesConfig
    overwrite: bool = False
    beam_args: tuple[str, ...] = ()


def run_features(request: FeaturesRequest) -> dict:
    """Run the feature job to completion and return the manifest it wrote."""
    import apache_beam as beam
    import torch

    from pipelines import metrics
    from pipelines.beam_options import check_known, pipeline_options
    from pipelines.features.graph import (
        OUTPUT_FOLDERS,
        build_feature_lineage,
        build_feature_manifest,
        build_feature_pipeline,
        feature_layout,
        random_weights,
        resolve_inputs,
    )
    from pipelines.features.stages import NAMESPACE
    from pipelines.io.write import earlier_output, prepare_output_dir
    from pipelines.outputs.manifest import write_manifest
    from unimo_g.devices import resolve_dtype

    spec, job, output = request.config.spec, request.config.job, request.output
    check_known(request.beam_args)  # an option neither the job nor Beam knows, before anything is read
    try:
        resolve_dtype(spec.encoder.dtype, torch.device(job.device))  # e.g. fp16 refused on cpu
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None
    try:
        inputs = resolve_inputs(request.input)
    except ValueError as err:  # no such input, no shards, or a file that is not a sample shard
        raise UsageError(str(err)) from None
    try:
        layout = feature_layout(spec)
    except (OSError, ValueError) as err:  # a model not found, or a resolution the VAE cannot take
        raise UsageError(str(err).splitlines()[0]) from None
    earlier = earlier_output(output, OUTPUT_FOLDERS)
    if earlier and not request.overwrite:
        raise UsageError(f"output folder {output!r} holds an earlier run ({', '.join(earlier)}): pass "
                         "--overwrite to replace it, or choose another --output")
    options = pipeline_options(request.beam_args)

    lineage = build_feature_lineage(spec, job, inputs)
    started = time.time()
    pipeline = beam.Pipeline(options=options)
    build_feature_pipeline(pipeline, inputs, output, spec, layout, job, lineage)
    if random_weights(spec):
        print("WARNING: the config uses RANDOM-WEIGHT models; the features are not meaningful.", file=sys.stderr)
    try:
        prepare_output_dir(output, OUTPUT_FOLDERS)
    except ValueError as err:  # the output path is a file
        raise UsageError(str(err)) from None
    result = pipeline.run()
    result.wait_until_finish()
    manifest = build_feature_manifest(
        output, inputs, spec, layout, lineage, runner=options.get_all_options()["runner"],
        wall_time_s=time.time() - started, counters=metrics.counters(result, NAMESPACE),
    )
    manifest["path"] = write_manifest(output, manifest)
    return manifest
