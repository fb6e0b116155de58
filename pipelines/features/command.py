"""`unimo-g features` (`python features_runner.py`): prompt shards → stage-1 training features, the VAE
posteriors and encoder hidden states the trainer would compute.

The config is a TRAINING config: its `encoder`, `denoiser` (VAE) and `data.resolution` say what to
compute, so the trainer with that config accepts the features. Writes DIR/features/*.parquet,
DIR/unconditional/*.parquet (one row), DIR/rejects/*.parquet and DIR/manifest.json. A DIR that
already holds any of them is refused unless --overwrite (which replaces exactly those). Unusable
arguments or config values exit with code 2 and a one-line message.
"""

from __future__ import annotations

import argparse

from pipelines.beam_options import add_beam_options
from unimo_g.usage import RunFailed, UsageError, spellings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="prompt shards: run folder, folder, glob or file")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument("--config", required=True, help="training YAML (path or preset name, e.g. train_tiny)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the features, rejects and manifest of an earlier run in --output")
    parser.add_argument(*spellings("--storage-dtype"), default="fp16", metavar="DTYPE",
                        help="precision of stored tensors: fp16 (default), bf16 or fp32")
    parser.add_argument(*spellings("--batch-size"), type=int, metavar="N",
                        help="images / captions per model batch (default 8)")
    parser.add_argument("--device", help="cpu (default), cuda or cuda:N (no fallback to cpu)")
    parser.add_argument(*spellings("--vae-dtype"), metavar="DTYPE",
                        help="fp32 (default, as the trainer) or bf16 (cuda only)")
    parser.add_argument(*spellings("--max-pixels"), type=int, metavar="N", help="default: the config's data.max_pixels")
    parser.add_argument(*spellings("--row-group-rows"), type=int, default=64, metavar="N",
                        help="feature rows per Parquet row group (default 64)")
    parser.add_argument(*spellings("--num-shards"), type=int, default=0, metavar="N",
                        help="feature files (0: the runner decides)")
    add_beam_options(parser)


def features_request(args: argparse.Namespace):
    """The typed `FeaturesRequest` of the arguments, its config loaded."""
    from pipelines.features.job import FeaturesRequest, load_features_config
    from unimo_g.config_tools import ConfigError
    from unimo_g.pipeline_config import WriteConfig

    try:
        write = WriteConfig(row_group_rows=args.row_group_rows, num_shards=args.num_shards)
        job = {"device": args.device, "vae_dtype": args.vae_dtype, "batch_size": args.batch_size,
               "max_pixels": args.max_pixels, "write": write}
        config = load_features_config(args.config, args.set, args.storage_dtype, job)
    except (ConfigError, ValueError) as err:
        raise UsageError(str(err)) from None
    return FeaturesRequest(input=args.input, output=args.output, config=config, overwrite=args.overwrite,
                           beam_args=tuple(args.passthrough))


def run(args: argparse.Namespace) -> int:
    from unimo_g.quiet_logs import install

    install()  # Beam's import-time warnings that say nothing here
    from pipelines.features.job import run_features

    manifest = run_features(features_request(args))
    counts = manifest["counts"]
    print(f"{counts['inputs']} inputs -> {counts['rows']} feature rows + {counts['rejects']} rejects "
          f"(+ {counts['unconditional_rows']} unconditional) in {manifest['wall_time_s']:.1f} s; "
          f"output: {manifest['output_dir']}")
    if counts["accounted"] is False:
        raise RunFailed("inputs != rows + rejects, or not one unconditional row; some inputs were lost")
    return 0
