"""`unimo-g build` (`python beam_runner.py`): image–caption pairs → multimodal-prompt shards.

Writes DIR/shards/*.parquet, DIR/rejects/*.parquet, DIR/ledger/ (what each run read) and, as the
job's last step, DIR/manifest.json. A non-empty DIR is refused unless --resume (skip inputs that
already have a row or a reject, process the rest) or --overwrite (replace shards, rejects, ledger
and manifest). Unusable arguments, unknown options and config values exit with code 2 and a
one-line message; a finished run whose inputs are not all accounted for exits 1; 130 / 143 when
stopped by SIGINT / SIGTERM. A failure is one paragraph (what failed, what was committed, how to
continue); its traceback shows with --log-level DEBUG.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from pipelines.beam_options import add_beam_options
from pipelines.interrupt import StopOnSignals, resume_command
from pipelines.prompts.job import INPUT_FORMATS, LOCAL_RUNNERS, BuildRequest, committed_line, release, run_build
from unimo_g.usage import UsageError, spellings

LOGGER = logging.getLogger(__name__)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PROJECT_LOGGERS = ("pipelines", "unimo_g", "grounding", "segmentation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="input path: img2dataset dir, folder, .jsonl or .parquet")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument(*spellings("--input-format"), default="auto", choices=INPUT_FORMATS,
                        help="how to read --input (default auto: img2dataset output, a manifest or a folder)")
    parser.add_argument("--config", default="configs/default.yaml", help="YAML preset (path or preset name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="keep what DIR holds and process only inputs without a row or a reject")
    mode.add_argument("--overwrite", action="store_true",
                      help="delete DIR's shards, rejects, ledger and manifest first (nothing else)")
    parser.add_argument(*spellings("--retry-rejects"), default="", metavar="REASON,...",
                        help="with --resume: reprocess the rejects of these reasons (e.g. failed_to_download,"
                             "model_error) and replace them")
    parser.add_argument(*spellings("--log-level"), default="INFO", type=str.upper, choices=LOG_LEVELS,
                        help="INFO (default): progress and a summary; DEBUG also shows Beam's logs and full tracebacks")
    parser.add_argument(*spellings("--break-lease"), action="store_true",
                        help="with --resume: take over the lease of a run that is gone (killed, its workers too) "
                             "before it went stale")
    parser.add_argument(*spellings("--lease-expiry"), type=float, default=120.0, metavar="SECONDS",
                        help="a run's lease of the output folder unrenewed this long is stale: the next launch takes "
                             "it over (default 120; a running launcher renews it every 10 s)")
    parser.add_argument(*spellings("--commit-every"), type=float, default=None, metavar="SECONDS",
                        help="also commit a shard or reject file once it has been open this long, so a killed run "
                             "keeps what it did (default: 60 on the local runners, off on others, whose retried "
                             "bundles would then commit rows twice; 0: off)")
    parser.add_argument("--detach", action="store_true",
                        help="return once the job is submitted (the job writes its manifest itself)")
    parser.add_argument(*spellings("--progress-interval"), type=float, default=5.0, metavar="SECONDS",
                        help="seconds between progress lines of a local run (default 5; 0: none)")
    add_beam_options(parser)


def build_request(args: argparse.Namespace) -> BuildRequest:
    """The typed request of the arguments, its config loaded; a `UsageError` names what is wrong."""
    from unimo_g.config_tools import ConfigError, load_preset
    from unimo_g.pipeline_config import PipelineConfig

    retry = tuple(reason.strip() for reason in args.retry_rejects.split(",") if reason.strip())
    if args.retry_rejects and not retry:
        raise UsageError(f"--retry-rejects: no reason in {args.retry_rejects!r}")
    if retry and not args.resume:
        raise UsageError("--retry-rejects needs --resume (it reprocesses rejects of an existing output folder)")
    if args.break_lease and not args.resume:
        raise UsageError("--break-lease needs --resume (it takes over the folder of a run that is gone)")
    try:
        config = load_preset(PipelineConfig, args.config, args.set)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    return BuildRequest(
        input=args.input, output=args.output, config=config, input_format=args.input_format,
        mode="resume" if args.resume else "overwrite" if args.overwrite else "new", retry_rejects=retry,
        break_lease=args.break_lease, lease_expiry_s=args.lease_expiry, commit_every_s=args.commit_every,
        detach=args.detach, progress_interval_s=args.progress_interval, beam_args=tuple(args.passthrough),
    )


def setup_logging(level: str) -> None:
    """Project loggers at `level`; other libraries (Beam is chatty) at WARNING unless DEBUG, without
    the third-party messages `unimo_g.quiet_logs` knows to be noise, and without the tracebacks Beam
    logs before it raises (the failure is reported once, by `run`)."""
    from unimo_g.quiet_logs import WithoutTraceback, install

    logging.basicConfig(level=logging.DEBUG if level == "DEBUG" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)
    install(quiet=level != "DEBUG")
    if level != "DEBUG":
        for handler in logging.getLogger().handlers:
            handler.addFilter(WithoutTraceback())


def run(args: argparse.Namespace) -> int:
    """Run the job; exit code 0 done, 1 failed or not accounted, 130/143 stopped by a signal (usage
    errors raise `UsageError`)."""
    setup_logging(args.log_level)
    request = build_request(args)
    state: dict = {"run": None, "output": None}
    program, *argv = args.command_line
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
            manifest = run_build(request, started)
        except UsageError:  # refused before the job ran: the caller reports it
            raise
        except Exception as err:  # noqa: BLE001 - the command's last word on any failure; DEBUG re-raises
            if LOGGER.isEnabledFor(logging.DEBUG):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            LOGGER.error("the run failed: %s: %s", type(err).__name__, first)
            resume = f"; continue with: {continue_with}" if state["run"] else ""
            LOGGER.error("%s%s (--log-level DEBUG shows the traceback)",
                         committed_line(state["run"], state["output"]), resume)
            return 1
    return 0 if _accounted(manifest) else 1


def _accounted(manifest: Optional[dict]) -> bool:
    if manifest is None or manifest["counts"]["accounted"]:
        return True
    LOGGER.error("inputs != rows + rejects: %d inputs missing; `unimo-g verify %s` says more, --resume processes "
                 "them", manifest["counts"]["missing"], manifest["output_dir"])
    return False
