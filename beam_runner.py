"""Run the data-construction pipeline: image–caption pairs → multimodal-prompt shards.

    python beam_runner.py --input PATH --output DIR [--input-format F] [--config configs/NAME.yaml]
        [--set key=value ...] [--resume | --overwrite] [--retry-rejects REASON,...] [--log-level L]
        [--detach] [any Beam pipeline option, e.g. --runner=DirectRunner
        --direct_num_workers=2 --direct_running_mode=multi_processing]
    python beam_runner.py verify DIR [--write]

Writes DIR/shards/*.parquet, DIR/rejects/*.parquet, DIR/ledger/ (what each run read) and, as the
job's last step, DIR/manifest.json. A non-empty DIR is refused unless --resume (skip inputs that
already have a row or a reject, process the rest) or --overwrite (replace shards, rejects, ledger
and manifest). Unusable arguments, unknown options and config values exit with code 2 and a
one-line message; a finished run whose inputs are not all accounted for exits 1.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from unimo_g.usage import OneLineParser, UsageError

LOGGER = logging.getLogger("beam_runner")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PROJECT_LOGGERS = ("beam_runner", "pipelines", "unimo_g", "grounding", "segmentation")
LOCAL_RUNNERS = ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "FnApiRunner",
                 "PortableRunner", "PrismRunner")
INPUT_FORMATS = ("auto", "img2dataset", "folder", "jsonl", "parquet")


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="beam_runner.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--input", required=True, help="input path: img2dataset dir, folder, .jsonl or .parquet")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument("--input-format", "--input_format", dest="input_format", default="auto", choices=INPUT_FORMATS)
    parser.add_argument("--config", default="configs/default.yaml", help="YAML preset (path or preset name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="keep what DIR holds and process only inputs without a row or a reject")
    mode.add_argument("--overwrite", action="store_true",
                      help="delete DIR's shards, rejects, ledger and manifest first (nothing else)")
    parser.add_argument("--retry-rejects", "--retry_rejects", dest="retry_rejects", default="", metavar="REASON,...",
                        help="with --resume: reprocess the rejects of these reasons (e.g. failed_to_download,"
                             "model_error) and replace them")
    parser.add_argument("--log-level", "--log_level", dest="log_level", default="INFO", type=str.upper,
                        choices=LOG_LEVELS)
    parser.add_argument("--detach", action="store_true",
                        help="return once the job is submitted (the job writes its manifest itself)")
    parser.add_argument("--progress-interval", "--progress_interval", dest="progress_interval", type=float,
                        default=5.0, help="seconds between progress lines of a local run (0: none)")
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


def unknown_beam_options(beam_args: Sequence[str]) -> list[str]:
    """The arguments no registered Beam `PipelineOptions` class knows (Beam itself only warns)."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    classes: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # the same parser Beam builds in get_all_options
    _, unknown = parser.parse_known_args(list(beam_args))
    return unknown


def pipeline_options(beam_args: list[str]):
    """Beam `PipelineOptions` of the arguments the runner's own parser left (DirectRunner unless one
    is named); an option neither knows, or a malformed one, is a `UsageError`."""
    from apache_beam.options.pipeline_options import PipelineOptions  # Beam is slow to import

    beam_args = with_default_runner(beam_args)
    unknown = unknown_beam_options(beam_args)
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r}: neither beam_runner.py nor Beam knows it")
    try:
        options = PipelineOptions(beam_args)
        options.get_all_options(retain_unknown_options=False)
    except (SystemExit, ValueError) as err:
        raise UsageError(f"bad Beam pipeline option in {' '.join(beam_args)}: {err}") from None
    return options


def setup_logging(level: str) -> None:
    """Project loggers at `level`; other libraries (Beam is chatty) at WARNING unless DEBUG."""
    logging.basicConfig(level=logging.DEBUG if level == "DEBUG" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)


def _retry_reasons(value: str) -> list[str]:
    reasons = [r.strip() for r in value.split(",") if r.strip()]
    if value and not reasons:
        raise UsageError(f"--retry-rejects: no reason in {value!r}")
    return reasons


def run(argv: Optional[Sequence[str]] = None) -> Optional[dict]:
    """Parse arguments, run the pipeline and return the manifest the job wrote (None when the job
    wrote none yet: a dry run or a detached job)."""
    from unimo_g.config_tools import ConfigError, load_config
    from unimo_g.pipeline_config import PipelineConfig

    args, beam_args = _parser().parse_known_args(argv)
    setup_logging(args.log_level)
    retry = _retry_reasons(args.retry_rejects)
    if retry and not args.resume:
        raise UsageError("--retry-rejects needs --resume (it reprocesses rejects of an existing output folder)")
    try:
        config = load_config(PipelineConfig, resolve_config_path(args.config), args.set)
    except ConfigError as err:
        raise UsageError(str(err)) from None

    # Beam is imported only once the arguments are known to be usable (it is slow to import).
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import TestOptions

    from pipelines.build import build_pipeline
    from pipelines.manifest import build_lineage, read_manifest, summary_line
    from pipelines.progress import Progress
    from pipelines.resume import OutputRefused, check_output, clean_output, count_rejects_of, new_run_id
    from pipelines.write import MANIFEST_NAME, _is_local

    options = pipeline_options(beam_args)
    runner = options.get_all_options()["runner"]
    dry_run = bool(options.view_as(TestOptions).dry_run)
    try:
        lineage = build_lineage(config)
    except ValueError as err:  # a file the config names (scores.aesthetic_head) cannot be read
        raise UsageError(str(err)) from None
    mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    try:
        _is_local(args.output)
    except ValueError as err:
        raise UsageError(f"--output {args.output!r}: {err}") from None
    run_info = {"id": new_run_id(), "runner": runner, "mode": mode, "retry_rejects": retry,
                "input": {"path": args.input, "format": args.input_format},
                "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "started_at_s": time.time()}
    if not dry_run:  # a dry run submits nothing, so it must not touch (or even list) the output
        try:
            check_output(args.output, mode, lineage["config"])
        except OutputRefused as err:
            raise UsageError(str(err)) from None
        run_info["retried_rejects"] = count_rejects_of(args.output, retry) if retry else 0
    try:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, args.input, args.output, config, args.input_format, lineage, run_info,
                       resume=mode == "resume")
    except ValueError as err:  # unusable input path or format, found while building the graph
        raise UsageError(str(err)) from None
    if config.random_weights:
        LOGGER.warning("config %r uses RANDOM-WEIGHT models; boxes, masks and prompts are not meaningful.",
                       config.name)
    if not dry_run:
        cleaned = clean_output(args.output, mode, retry)
        if cleaned["leftovers"]:
            LOGGER.info("deleted %d temporary files of an unfinished run", cleaned["leftovers"])
        if retry:
            LOGGER.info("removed %d rejects of reasons %s to process them again", cleaned["retried"], ",".join(retry))
    progress = None
    if args.progress_interval > 0 and not dry_run and runner in LOCAL_RUNNERS and _is_local(args.output):
        progress = Progress(args.output, run_info["id"], args.progress_interval)
        progress.start()
    LOGGER.info("run %s (%s) on %s -> %s", run_info["id"], mode, runner, args.output)
    try:
        result = pipeline.run()
        if args.detach or dry_run:
            if dry_run:
                LOGGER.info("dry run: the job was translated, nothing ran and nothing was written")
            else:
                LOGGER.info("job submitted; its last step writes %s", FileSystems.join(args.output, MANIFEST_NAME))
            return None
        result.wait_until_finish()
    finally:
        if progress is not None:
            progress.stop()
            progress.poll()
    manifest = read_manifest(args.output)
    if manifest.get("run_id") != run_info["id"]:
        raise RuntimeError(f"the job finished but {MANIFEST_NAME} is not this run's (run {run_info['id']})")
    manifest["path"] = FileSystems.join(args.output, MANIFEST_NAME)
    LOGGER.info("%s in %.1f s; manifest: %s", summary_line(manifest), manifest.get("wall_time_s") or 0,
                manifest["path"])
    return manifest


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["verify"]:
        from pipelines.verify import main as verify_main

        return verify_main(argv[1:], prog="beam_runner.py verify")
    try:
        manifest = run(argv)
    except UsageError as err:
        print(f"beam_runner.py: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if manifest is not None and not manifest["counts"]["accounted"]:
        LOGGER.error("inputs != rows + rejects: %d inputs missing; `python beam_runner.py verify %s` says more, "
                     "--resume processes them", manifest["counts"]["missing"], manifest["output_dir"])
        return 1
    return 0


if __name__ == "__main__":
    from unimo_g.process_exit import exit_now

    exit_now(main())
