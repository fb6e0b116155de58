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
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from unimo_g.usage import OneLineParser, UsageError

LOGGER = logging.getLogger("beam_runner")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PROJECT_LOGGERS = ("beam_runner", "pipelines", "unimo_g", "grounding", "segmentation")
LOCAL_RUNNERS = ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "FnApiRunner",
                 "PortableRunner", "PrismRunner")
INPUT_FORMATS = ("auto", "img2dataset", "folder", "jsonl", "parquet")
# Local runs commit files at least this often: a kill loses at most this much of a writer's work. Files
# of fewer rows cost little to read (BENCHMARKS.md, small shard files: 256 rows per file read all
# columns at 1.1x the time of 1024), and the local runners never retry a bundle (which would commit
# a time-cut file's rows twice).
LOCAL_COMMIT_EVERY_S = 60.0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="beam_runner.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--input", required=True, help="input path: img2dataset dir, folder, .jsonl or .parquet")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument("--input-format", default="auto", choices=INPUT_FORMATS,
                        help="how to read --input (default auto: img2dataset output, a manifest or a folder)")
    parser.add_argument("--config", default="configs/default.yaml", help="YAML preset (path or preset name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="keep what DIR holds and process only inputs without a row or a reject")
    mode.add_argument("--overwrite", action="store_true",
                      help="delete DIR's shards, rejects, ledger and manifest first (nothing else)")
    parser.add_argument("--retry-rejects", default="", metavar="REASON,...",
                        help="with --resume: reprocess the rejects of these reasons (e.g. failed_to_download,"
                             "model_error) and replace them")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                        help="INFO (default): progress and a summary; DEBUG also shows Beam's logs and full tracebacks")
    parser.add_argument("--break-lease", action="store_true",
                        help="with --resume: take over the lease of a run that is gone (killed, its workers too) "
                             "before it went stale")
    parser.add_argument("--lease-expiry", type=float, default=120.0, metavar="SECONDS",
                        help="a run's lease of the output folder unrenewed this long is stale: the next launch takes "
                             "it over (default 120; a running launcher renews it every 10 s)")
    parser.add_argument("--commit-every", type=float, default=None, metavar="SECONDS",
                        help="also commit a shard or reject file once it has been open this long, so a killed run "
                             "keeps what it did (default: 60 on the local runners, off on others, whose retried "
                             "bundles would then commit rows twice; 0: off)")
    parser.add_argument("--detach", action="store_true",
                        help="return once the job is submitted (the job writes its manifest itself)")
    parser.add_argument("--progress-interval", type=float, default=5.0, metavar="SECONDS",
                        help="seconds between progress lines of a local run (default 5; 0: none)")
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
    from pipelines.beam_flags import beam_options_parser

    _, unknown = beam_options_parser().parse_known_args(list(beam_args))
    return unknown


def _unknown_option_error(unknown: Sequence[str]) -> UsageError:
    return UsageError(f"unknown option {unknown[0]!r}: neither beam_runner.py nor Beam knows it")


def check_before_imports(args: argparse.Namespace, beam_args: Sequence[str], mode: str) -> None:
    """The usage errors found without importing Beam or torch: an unknown option (when the installed
    Beam is the release `pipelines/beam_flags.txt` lists), a missing local input, a local output that
    is a file or, for a new run, not empty. Beam's own checks follow once it is imported."""
    from pipelines.beam_flags import known_flags, unknown_options
    from pipelines.local_checks import local_refusal

    flags = known_flags()
    unknown = unknown_options(list(beam_args), flags) if flags is not None else []
    if unknown:
        raise _unknown_option_error(unknown)
    refusal = local_refusal(args.input, args.output, mode)
    if refusal:
        raise UsageError(refusal)


def pipeline_options(beam_args: list[str]):
    """Beam `PipelineOptions` of the arguments the runner's own parser left (DirectRunner unless one
    is named); an option neither knows, or a malformed one, is a `UsageError`."""
    from apache_beam.options.pipeline_options import PipelineOptions  # Beam is slow to import

    beam_args = with_default_runner(beam_args)
    unknown = unknown_beam_options(beam_args)
    if unknown:
        raise _unknown_option_error(unknown)
    try:
        options = PipelineOptions(beam_args)
        options.get_all_options(retain_unknown_options=False)
    except (SystemExit, ValueError) as err:
        raise UsageError(f"bad Beam pipeline option in {' '.join(beam_args)}: {err}") from None
    return options


def setup_logging(level: str) -> None:
    """Project loggers at `level`; other libraries (Beam is chatty) at WARNING unless DEBUG, without
    the third-party messages `unimo_g.quiet_logs` knows to be noise, and without the tracebacks Beam
    logs before it raises (the failure is reported once, by `main`)."""
    from unimo_g.quiet_logs import WithoutTraceback, install

    logging.basicConfig(level=logging.DEBUG if level == "DEBUG" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)
    install(quiet=level != "DEBUG")
    if level != "DEBUG":
        for handler in logging.getLogger().handlers:
            handler.addFilter(WithoutTraceback())


def _retry_reasons(value: str) -> list[str]:
    reasons = [r.strip() for r in value.split(",") if r.strip()]
    if value and not reasons:
        raise UsageError(f"--retry-rejects: no reason in {value!r}")
    return reasons


def run(argv: Optional[Sequence[str]] = None,
        started: Optional[Callable[[dict, str], None]] = None) -> Optional[dict]:
    """Parse arguments, run the pipeline and return the manifest the job wrote (None when the job
    wrote none yet: a dry run or a detached job). `started(run_info, output_dir)` is called once
    the run holds its output folder's lease, before anything in it changes."""
    from unimo_g.config_tools import ConfigError, load_config
    from unimo_g.model_sources import ModelUnavailable, check_models, pipeline_models
    from unimo_g.pipeline_config import PipelineConfig

    args, beam_args = build_parser().parse_known_args(argv)
    setup_logging(args.log_level)
    retry = _retry_reasons(args.retry_rejects)
    if retry and not args.resume:
        raise UsageError("--retry-rejects needs --resume (it reprocesses rejects of an existing output folder)")
    if args.break_lease and not args.resume:
        raise UsageError("--break-lease needs --resume (it takes over the folder of a run that is gone)")
    try:
        config = load_config(PipelineConfig, resolve_config_path(args.config), args.set)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    check_before_imports(args, beam_args, mode)
    try:  # before anything is created: a model that cannot load would fail the run on its workers
        check_models(pipeline_models(config))
    except ModelUnavailable as err:
        raise UsageError(str(err)) from None

    # Beam is imported only once the arguments are known to be usable (it is slow to import).
    from apache_beam.options.pipeline_options import TestOptions

    from pipelines.manifest import build_lineage
    from pipelines.resume import new_run_id
    from pipelines.write import _is_local

    options = pipeline_options(beam_args)
    runner = options.get_all_options()["runner"]
    dry_run = bool(options.view_as(TestOptions).dry_run)
    try:
        lineage = build_lineage(config)
    except ValueError as err:  # a file the config names (scores.aesthetic_head) cannot be read
        raise UsageError(str(err)) from None
    try:
        _is_local(args.output)
    except ValueError as err:
        raise UsageError(f"--output {args.output!r}: {err}") from None
    commit_every_s = args.commit_every if args.commit_every is not None else (
        LOCAL_COMMIT_EVERY_S if runner in LOCAL_RUNNERS else 0.0)
    run_info = {"id": new_run_id(), "runner": runner, "mode": mode, "retry_rejects": retry,
                "input": {"path": args.input, "format": args.input_format}, "detached": bool(args.detach),
                "commit_every_s": commit_every_s,
                "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "started_at_s": time.time()}
    keeper, made = None, False
    if not dry_run:  # a dry run submits nothing, so it must not touch (or even list) the output
        keeper, made = hold_output(args, mode, lineage["config"], run_info)
        if started is not None:
            started(run_info, args.output)
    try:
        return _build_and_run(args, config, lineage, options, run_info)
    except UsageError:  # refused before the job ran: leave no folder behind that this run made
        if made and keeper is not None and release(args.output, run_info["id"]) and not os.listdir(args.output):
            os.rmdir(args.output)
        raise
    finally:
        if keeper is not None:
            keeper.stop()
            if not args.detach:  # a detached job's last step gives the lease back
                release(args.output, run_info["id"])


def hold_output(args: argparse.Namespace, mode: str, config: dict, run_info: dict):
    """Take the output folder's lease, then check the folder for a run in `mode`; returns the
    running `LeaseKeeper` and whether this made the (local) folder. A refusal gives the lease back
    (and the folder, when this made it)."""
    from pipelines.lease import DETACHED_EXPIRY_S, LeaseHeld, LeaseKeeper, acquire
    from pipelines.resume import OutputRefused, check_output, count_rejects_of
    from pipelines.write import _is_local

    made = _is_local(args.output) and not os.path.exists(args.output)
    try:
        lease = acquire(args.output, run_info["id"], " ".join(sys.argv), resume=args.resume,
                        break_lease=args.break_lease, expiry_s=DETACHED_EXPIRY_S if args.detach else args.lease_expiry)
    except LeaseHeld as err:
        raise UsageError(str(err)) from None
    try:
        check_output(args.output, mode, config)
        run_info["retried_rejects"] = count_rejects_of(args.output, run_info["retry_rejects"]) \
            if run_info["retry_rejects"] else 0
    except OutputRefused as err:
        release(args.output, run_info["id"])
        if made:
            os.rmdir(args.output)
        raise UsageError(str(err)) from None
    keeper = LeaseKeeper(args.output, lease, _lease_lost)
    if not args.detach:
        keeper.start()
    return keeper, made


def _lease_lost(message: str) -> None:
    """Another run took this one's lease (`--break-lease`): stop, as on SIGTERM."""
    LOGGER.error(message)
    os.kill(os.getpid(), signal.SIGTERM)


def release(output_dir: str, run_id: str) -> bool:
    """Give back run `run_id`'s lease of `output_dir`; True when it held it."""
    from pipelines.lease import release as release_lease

    return release_lease(output_dir, run_id)


def _build_and_run(args, config, lineage: dict, options, run_info: dict) -> Optional[dict]:
    """Build the job's graph, prepare the output folder, run the job and read its manifest."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import TestOptions

    from pipelines.build import build_pipeline
    from pipelines.manifest import read_manifest, summary_line
    from pipelines.progress import Progress
    from pipelines.resume import clean_output
    from pipelines.sources import planned_inputs
    from pipelines.write import MANIFEST_NAME, _is_local

    dry_run, runner, mode, retry = (bool(options.view_as(TestOptions).dry_run), run_info["runner"],
                                    run_info["mode"], run_info["retry_rejects"])
    try:
        pipeline = beam.Pipeline(options=options)
        plan = build_pipeline(pipeline, args.input, args.output, config, args.input_format, lineage, run_info,
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
        total = planned_inputs(plan)
        progress = Progress(args.output, run_info["id"], args.progress_interval, total=total)
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
    counts = manifest["counts"]
    if counts["inputs"] and not counts["rows"]:
        LOGGER.warning("every input became a reject: no row was written (the manifest and `unimo-g report %s` "
                       "list the reasons)", args.output)
    LOGGER.info("%s in %.1f s; manifest: %s", summary_line(manifest), manifest.get("wall_time_s") or 0,
                manifest["path"])
    return manifest


def committed_line(run_info: Optional[dict], output_dir: Optional[str]) -> str:
    """What a run that ended early left in its output folder, from the files (local outputs)."""
    from pipelines.local_checks import is_local_path

    if run_info is None:
        return "the run had not started: nothing was written"
    if not is_local_path(output_dir):
        return f"what was committed is in {output_dir}"
    from pipelines.progress import Progress

    snap = Progress(output_dir, run_info["id"]).snapshot()
    return (f"{snap['rows']} rows + {snap['rejects']} rejects of {snap['read']} inputs read are committed in "
            f"{output_dir}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the job; exit code 0 done, 1 failed or not accounted, 2 usage, 130/143 stopped by a signal.
    A failure is one paragraph (what failed, what was committed, how to continue); its traceback
    shows with --log-level DEBUG."""
    from pipelines.interrupt import StopOnSignals, resume_command

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["verify"]:
        from pipelines.verify import main as verify_main

        return verify_main(argv[1:], prog="beam_runner.py verify")
    state: dict = {"run": None, "output": None}
    program = "unimo-g build" if Path(sys.argv[0]).name == "unimo-g" else "python beam_runner.py"
    continue_with = resume_command(program, argv)

    def started(run_info: dict, output_dir: str) -> None:
        state["run"], state["output"] = run_info, output_dir
        stop.verbose = LOGGER.isEnabledFor(logging.DEBUG)
        if run_info["runner"] in LOCAL_RUNNERS:  # its SDK workers will share this standard error
            stop.relay_stderr()

    def stopped(signal_name: str) -> list[str]:
        if state["run"] is not None:  # its workers are gone: nothing writes the folder any more
            release(state["output"], state["run"]["id"])
        lines = [f"stopped by {signal_name}: {committed_line(state['run'], state['output'])}."]
        return lines + ([f"continue with: {continue_with}"] if state["run"] else [])

    with StopOnSignals(stopped) as stop:
        try:
            manifest = run(argv, started)
        except UsageError as err:
            print(f"beam_runner.py: error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        except Exception as err:  # noqa: BLE001 - the command's last word on any failure; DEBUG re-raises
            if LOGGER.isEnabledFor(logging.DEBUG):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            LOGGER.error("the run failed: %s: %s", type(err).__name__, first)
            resume = f"; continue with: {continue_with}" if state["run"] else ""
            LOGGER.error("%s%s (--log-level DEBUG shows the traceback)",
                         committed_line(state["run"], state["output"]), resume)
            return 1
    if manifest is not None and not manifest["counts"]["accounted"]:
        LOGGER.error("inputs != rows + rejects: %d inputs missing; `python beam_runner.py verify %s` says more, "
                     "--resume processes them", manifest["counts"]["missing"], manifest["output_dir"])
        return 1
    return 0


if __name__ == "__main__":
    from unimo_g.process_exit import exit_now

    exit_now(main())
