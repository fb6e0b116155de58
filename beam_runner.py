"""Run the data-construction pipeline: image–caption pairs → multimodal-prompt shards.

    python beam_runner.py --input PATH --output DIR [--input_format F] [--config configs/NAME.yaml]
        [--set key=value ...] [any Beam pipeline option, e.g. --runner=DirectRunner
        --direct_num_workers=2 --direct_running_mode=multi_processing]

Writes DIR/shards/*.parquet, DIR/rejects/*.parquet and DIR/manifest.json. Unusable arguments or
config values exit with code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

INPUT_FORMATS = ("auto", "img2dataset", "folder", "jsonl", "parquet")


class UsageError(Exception):
    """An argument or config value that cannot be used; reported in one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are `UsageError`s (one line, exit 2) instead of a usage dump."""

    def error(self, message: str):  # one line, exit 2, instead of argparse's usage dump
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="beam_runner.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--input", required=True, help="input path: img2dataset dir, folder, .jsonl or .parquet")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument("--input_format", default="auto", choices=INPUT_FORMATS)
    parser.add_argument("--config", default="configs/default.yaml", help="YAML preset (path or preset name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    return parser


def resolve_config_path(name: str) -> Path:
    """A config path as given, or a bundled preset name (`unimo_g.presets`, also in an installed wheel)."""
    from unimo_g.presets import PresetNotFound, resolve_preset

    try:
        return resolve_preset(name)
    except PresetNotFound as err:
        raise UsageError(str(err)) from None


def with_default_runner(beam_args: list[str]) -> list[str]:
    # Beam's default runner tries to download the Prism binary; name the DirectRunner instead.
    if any(a == "--runner" or a.startswith("--runner=") for a in beam_args):
        return beam_args
    return ["--runner=DirectRunner", *beam_args]


def pipeline_options(beam_args: list[str]):
    """Beam `PipelineOptions` of the arguments the runner's own parser left (DirectRunner unless one
    is named); an unknown or malformed option is a `UsageError`."""
    from apache_beam.options.pipeline_options import PipelineOptions  # Beam is slow to import

    beam_args = with_default_runner(beam_args)
    try:
        options = PipelineOptions(beam_args)
        options.get_all_options(retain_unknown_options=False)
    except (SystemExit, ValueError) as err:
        raise UsageError(f"bad Beam pipeline option in {' '.join(beam_args)}: {err}") from None
    return options


def run(argv: Optional[Sequence[str]] = None) -> dict:
    """Parse arguments, run the pipeline to completion and return the manifest written."""
    from unimo_g.config_tools import ConfigError, load_config
    from unimo_g.pipeline_config import PipelineConfig

    args, beam_args = _parser().parse_known_args(argv)
    try:
        config = load_config(PipelineConfig, resolve_config_path(args.config), args.set)
    except ConfigError as err:
        raise UsageError(str(err)) from None

    # Beam is imported only once the arguments are known to be usable (it is slow to import).
    import apache_beam as beam

    from pipelines import metrics
    from pipelines.build import build_pipeline
    from pipelines.dataset_card import write_dataset_card
    from pipelines.manifest import build_lineage, build_manifest, write_manifest
    from pipelines.write import prepare_output_dir

    options = pipeline_options(beam_args)
    lineage = build_lineage(config)
    started = time.time()
    try:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, args.input, args.output, config, args.input_format, lineage)
    except ValueError as err:  # unusable input path or format, found while building the graph
        raise UsageError(str(err)) from None
    if config.random_weights:
        print(
            f"WARNING: config {config.name!r} uses RANDOM-WEIGHT models; boxes, masks and prompts are not meaningful.",
            file=sys.stderr,
        )
    prepare_output_dir(args.output)
    result = pipeline.run()
    result.wait_until_finish()
    manifest = build_manifest(
        config,
        args.output,
        inputs=metrics.counter_value(result, metrics.READ, metrics.INPUTS),
        runner=options.get_all_options()["runner"],
        wall_time_s=time.time() - started,
        input_path=args.input,
        input_format=args.input_format,
        lineage=lineage,
    )
    manifest["path"] = write_manifest(args.output, manifest)
    write_dataset_card(args.output, manifest)
    return manifest


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        manifest = run(argv)
    except UsageError as err:
        print(f"beam_runner.py: error: {err}", file=sys.stderr)
        return 2
    counts = manifest["counts"]
    print(
        f"{counts['inputs']} inputs -> {counts['rows']} rows + {counts['rejects']} rejects "
        f"in {manifest['wall_time_s']:.1f} s; manifest: {manifest['path']}"
    )
    if counts["accounted"] is False:
        print("ERROR: inputs != rows + rejects; some inputs were lost", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
