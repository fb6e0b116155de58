"""Pre-compute stage-1 training features from prompt shards: VAE posteriors and encoder hidden states.

    python features_runner.py --input SHARDS --output DIR --config configs/train_tiny.yaml
        [--set key=value ...] [--overwrite] [--storage-dtype fp16|bf16|fp32] [--batch-size N] [--device cpu|cuda|cuda:N]
        [--vae-dtype fp32|bf16] [--max-pixels N] [--row-group-rows N] [--num-shards N]
        [any Beam pipeline option, e.g. --runner=DirectRunner --direct_num_workers=2
        --direct_running_mode=multi_processing]

SHARDS is a pipeline run folder (its shards/*.parquet), a folder of *.parquet, a glob or one shard
file. The config is a TRAINING config: its `encoder`, `denoiser` (VAE) and `data.resolution` say
what to compute (`unimo_g.features.spec_from_train_config`), so the trainer with that config
accepts the features. Writes DIR/features/*.parquet, DIR/unconditional/*.parquet (one row),
DIR/rejects/*.parquet and DIR/manifest.json. A DIR that already holds any of them is refused unless
--overwrite (which replaces exactly those). Unusable arguments or config values exit with code 2
and a one-line message.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

from beam_runner import OneLineParser, UsageError, pipeline_options, resolve_config_path

STORAGE_DTYPES = ("fp16", "bf16", "fp32")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="features_runner.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--input", required=True, help="prompt shards: run folder, folder, glob or file")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument("--config", required=True, help="training YAML (path or preset name, e.g. train_tiny)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the features, rejects and manifest of an earlier run in --output")
    parser.add_argument("--storage-dtype", default="fp16", choices=STORAGE_DTYPES, help="precision of stored tensors")
    parser.add_argument("--batch-size", type=int, default=8, help="images / captions per model batch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (no fallback to cpu)")
    parser.add_argument("--vae-dtype", default="fp32", help="fp32 (as the trainer) or bf16 (cuda only)")
    parser.add_argument("--max-pixels", type=int, default=None, help="default: the config's data.max_pixels")
    parser.add_argument("--row-group-rows", type=int, default=64, help="feature rows per Parquet row group")
    parser.add_argument("--num-shards", type=int, default=0, help="feature files (0: the runner decides)")
    return parser


def load_spec(config: str, overrides: Sequence[str], storage_dtype: str):
    """The FeatureSpec of a training YAML with `--set` overrides, and the merged mapping."""
    from unimo_g.config_tools import ConfigError, deep_merge, parse_overrides, read_yaml
    from unimo_g.features import spec_from_train_config

    try:
        raw = deep_merge(read_yaml(resolve_config_path(config)), parse_overrides(overrides))
        return spec_from_train_config(raw, storage_dtype), raw
    except ConfigError as err:
        raise UsageError(str(err)) from None


def run(argv: Optional[Sequence[str]] = None) -> dict:
    """Parse arguments, run the feature job to completion and return the manifest written."""
    args, beam_args = build_parser().parse_known_args(argv)
    spec, raw = load_spec(args.config, args.set, args.storage_dtype)

    # Beam and the models are imported only once the arguments are known to be usable (slow imports).
    from unimo_g.quiet_logs import install

    install()  # Beam's import-time warnings that say nothing here
    import apache_beam as beam
    import torch

    from pipelines import metrics
    from pipelines.features_build import (
        OUTPUT_FOLDERS,
        FeatureJobConfig,
        build_feature_lineage,
        build_feature_manifest,
        build_feature_pipeline,
        feature_layout,
        random_weights,
        resolve_inputs,
    )
    from pipelines.features_stages import NAMESPACE
    from pipelines.manifest import write_manifest
    from pipelines.write import earlier_output, prepare_output_dir
    from unimo_g.devices import resolve_dtype
    from unimo_g.pipeline_config import WriteConfig

    try:
        # The trainer's own image bound (data.max_pixels) unless the command line names one.
        max_pixels = args.max_pixels if args.max_pixels is not None else (raw.get("data") or {}).get("max_pixels")
        job = FeatureJobConfig(
            device=args.device,
            vae_dtype=args.vae_dtype,
            batch_size=args.batch_size,
            write=WriteConfig(row_group_rows=args.row_group_rows, num_shards=args.num_shards),
            **({} if max_pixels is None else {"max_pixels": int(max_pixels)}),
        )
        resolve_dtype(spec.encoder.dtype, torch.device(job.device))  # e.g. fp16 refused on cpu
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None
    try:
        inputs = resolve_inputs(args.input)
    except ValueError as err:  # no such input, no shards, or a file that is not a sample shard
        raise UsageError(str(err)) from None
    try:
        layout = feature_layout(spec)
    except (OSError, ValueError) as err:  # a model not found, or a resolution the VAE cannot take
        raise UsageError(str(err).splitlines()[0]) from None

    earlier = earlier_output(args.output, OUTPUT_FOLDERS)
    if earlier and not args.overwrite:
        raise UsageError(f"output folder {args.output!r} holds an earlier run ({', '.join(earlier)}): pass "
                         "--overwrite to replace it, or choose another --output")
    options = pipeline_options(beam_args)

    lineage = build_feature_lineage(spec, job, inputs)
    started = time.time()
    pipeline = beam.Pipeline(options=options)
    build_feature_pipeline(pipeline, inputs, args.output, spec, layout, job, lineage)
    if random_weights(spec):
        print("WARNING: the config uses RANDOM-WEIGHT models; the features are not meaningful.", file=sys.stderr)
    try:
        prepare_output_dir(args.output, OUTPUT_FOLDERS)
    except ValueError as err:  # the output path is a file
        raise UsageError(str(err)) from None
    result = pipeline.run()
    result.wait_until_finish()
    manifest = build_feature_manifest(
        args.output,
        inputs,
        spec,
        layout,
        lineage,
        runner=options.get_all_options()["runner"],
        wall_time_s=time.time() - started,
        counters=metrics.counters(result, NAMESPACE),
    )
    manifest["path"] = write_manifest(args.output, manifest)
    return manifest


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        manifest = run(argv)
    except UsageError as err:
        print(f"features_runner.py: error: {err}", file=sys.stderr)
        return 2
    counts = manifest["counts"]
    print(
        f"{counts['inputs']} inputs -> {counts['rows']} feature rows + {counts['rejects']} rejects "
        f"(+ {counts['unconditional_rows']} unconditional) in {manifest['wall_time_s']:.1f} s; "
        f"output: {manifest['output_dir']}"
    )
    if counts["accounted"] is False:
        print("ERROR: inputs != rows + rejects, or not one unconditional row; some inputs were lost",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from unimo_g.process_exit import exit_now

    exit_now(main())
