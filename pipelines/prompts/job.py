"""The data-construction job, from typed values: a `BuildRequest` → the output folder's manifest.

`pipelines.prompts.command` turns a command line into a `BuildRequest`; `run_build` holds the output
folder's lease, builds the graph (`pipelines.prompts.graph`), runs it and reads the manifest it wrote.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable, Literal, Optional

from unimo_g.pipeline_config import PipelineConfig
from unimo_g.usage import UsageError

LOGGER = logging.getLogger(__name__)
LOCAL_RUNNERS = ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "FnApiRunner",
                 "PortableRunner", "PrismRunner")
INPUT_FORMATS = ("auto", "img2dataset", "folder", "jsonl", "parquet")
# Local runs commit files at least this often: a kill loses at most this much of a writer's work. Files
# of fewer rows cost little to read (BENCHMARKS.md, small shard files: 256 rows per file read all
# columns at 1.1x the time of 1024), and the local runners never retry a bundle (which would commit
# a time-cut file's rows twice).
LOCAL_COMMIT_EVERY_S = 60.0

Mode = Literal["new", "resume", "overwrite"]
Started = Callable[[dict, str], None]


@dataclass(frozen=True)
class BuildRequest:
    """One run of the job.

    mode: "new" (the output folder must be empty), "resume" (process only inputs without a row or a
      reject) or "overwrite" (replace shards, rejects, ledger and manifest).
    retry_rejects: with resume, the reject reasons to process again.
    commit_every_s: commit a file once open this long; None: LOCAL_COMMIT_EVERY_S on the local
      runners, off on others (their retried bundles would commit rows twice); 0: off.
    beam_args: Beam's own pipeline options (DirectRunner unless they name a runner).
    """

    input: str
    output: str
    config: PipelineConfig
    input_format: str = "auto"
    mode: Mode = "new"
    retry_rejects: tuple[str, ...] = ()
    break_lease: bool = False
    lease_expiry_s: float = 120.0
    commit_every_s: Optional[float] = None
    detach: bool = False
    progress_interval_s: float = 5.0
    beam_args: tuple[str, ...] = ()


def check_before_imports(request: BuildRequest) -> None:
    """The usage errors found without importing Beam or torch: an unknown option (when the installed
    Beam is the release `pipelines/beam_flags.txt` lists), a missing local input, a local output that
    is a file or, for a new run, not empty. Beam's own checks follow once it is imported."""
    from pipelines.beam_options import check_known
    from pipelines.local_checks import local_refusal

    check_known(request.beam_args)
    refusal = local_refusal(request.input, request.output, request.mode)
    if refusal:
        raise UsageError(refusal)


def run_build(request: BuildRequest, started: Optional[Started] = None) -> Optional[dict]:
    """Run the job and return the manifest it wrote (None when it wrote none yet: a dry run or a
    detached job). `started(run_info, output_dir)` is called once the run holds its output folder's
    lease, before anything in it changes."""
    from unimo_g.model_sources import ModelUnavailable, check_models, pipeline_models

    check_before_imports(request)
    try:  # before anything is created: a model that cannot load would fail the run on its workers
        check_models(pipeline_models(request.config))
    except ModelUnavailable as err:
        raise UsageError(str(err)) from None

    # Beam is imported only once the arguments are known to be usable (it is slow to import).
    from apache_beam.options.pipeline_options import TestOptions

    from pipelines.beam_options import pipeline_options
    from pipelines.io.resume import new_run_id
    from pipelines.io.write import _is_local
    from pipelines.outputs.manifest import build_lineage

    options = pipeline_options(request.beam_args)
    runner = options.get_all_options()["runner"]
    dry_run = bool(options.view_as(TestOptions).dry_run)
    try:
        lineage = build_lineage(request.config)
    except ValueError as err:  # a file the config names (scores.aesthetic_head) cannot be read
        raise UsageError(str(err)) from None
    try:
        _is_local(request.output)
    except ValueError as err:
        raise UsageError(f"--output {request.output!r}: {err}") from None
    commit_every_s = request.commit_every_s if request.commit_every_s is not None else (
        LOCAL_COMMIT_EVERY_S if runner in LOCAL_RUNNERS else 0.0)
    run_info = {"id": new_run_id(), "runner": runner, "mode": request.mode,
                "retry_rejects": list(request.retry_rejects),
                "input": {"path": request.input, "format": request.input_format}, "detached": request.detach,
                "commit_every_s": commit_every_s,
                "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "started_at_s": time.time()}
    keeper, made = None, False
    if not dry_run:  # a dry run submits nothing, so it must not touch (or even list) the output
        keeper, made = hold_output(request, lineage["config"], run_info)
        if started is not None:
            started(run_info, request.output)
    try:
        return _build_and_run(request, lineage, options, run_info)
    except UsageError:  # refused before the job ran: leave no folder behind that this run made
        if made and keeper is not None and release(request.output, run_info["id"]) and not os.listdir(request.output):
            os.rmdir(request.output)
        raise
    finally:
        if keeper is not None:
            keeper.stop()
            if not request.detach:  # a detached job's last step gives the lease back
                release(request.output, run_info["id"])


def hold_output(request: BuildRequest, config: dict, run_info: dict):
    """Take the output folder's lease, then check the folder for a run in `request.mode`; returns
    the running `LeaseKeeper` and whether this made the (local) folder. A refusal gives the lease
    back (and the folder, when this made it)."""
    from pipelines.io.lease import DETACHED_EXPIRY_S, LeaseHeld, LeaseKeeper, acquire
    from pipelines.io.resume import OutputRefused, check_output, count_rejects_of
    from pipelines.io.write import _is_local

    output = request.output
    made = _is_local(output) and not os.path.exists(output)
    try:
        lease = acquire(output, run_info["id"], " ".join(sys.argv), resume=request.mode == "resume",
                        break_lease=request.break_lease,
                        expiry_s=DETACHED_EXPIRY_S if request.detach else request.lease_expiry_s)
    except LeaseHeld as err:
        raise UsageError(str(err)) from None
    try:
        check_output(output, request.mode, config)
        run_info["retried_rejects"] = count_rejects_of(output, run_info["retry_rejects"]) \
            if run_info["retry_rejects"] else 0
    except OutputRefused as err:
        release(output, run_info["id"])
        if made:
            os.rmdir(output)
        raise UsageError(str(err)) from None
    keeper = LeaseKeeper(output, lease, _lease_lost)
    if not request.detach:
        keeper.start()
    return keeper, made


def _lease_lost(message: str) -> None:
    """Another run took this one's lease (`--break-lease`): stop, as on SIGTERM."""
    LOGGER.error(message)
    os.kill(os.getpid(), signal.SIGTERM)


def release(output_dir: str, run_id: str) -> bool:
    """Give back run `run_id`'s lease of `output_dir`; True when it held it."""
    from pipelines.io.lease import release as release_lease

    return release_lease(output_dir, run_id)


def _build_and_run(request: BuildRequest, lineage: dict, options, run_info: dict) -> Optional[dict]:
    """Build the job's graph, prepare the output folder, run the job and read its manifest."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import TestOptions

    from pipelines.io.resume import clean_output
    from pipelines.io.sources import planned_inputs
    from pipelines.io.write import MANIFEST_NAME, _is_local
    from pipelines.outputs.manifest import read_manifest, summary_line
    from pipelines.progress import Progress
    from pipelines.prompts.graph import build_pipeline

    output, config, mode, retry = request.output, request.config, request.mode, list(request.retry_rejects)
    dry_run, runner = bool(options.view_as(TestOptions).dry_run), run_info["runner"]
    try:
        pipeline = beam.Pipeline(options=options)
        plan = build_pipeline(pipeline, request.input, output, config, request.input_format, lineage, run_info,
                              resume=mode == "resume")
    except ValueError as err:  # unusable input path or format, found while building the graph
        raise UsageError(str(err)) from None
    if config.random_weights:
        LOGGER.warning("config %r uses RANDOM-WEIGHT models; boxes, masks and prompts are not meaningful.",
                       config.name)
    if not dry_run:
        cleaned = clean_output(output, mode, retry)
        if cleaned["leftovers"]:
            LOGGER.info("deleted %d temporary files of an unfinished run", cleaned["leftovers"])
        if retry:
            LOGGER.info("removed %d rejects of reasons %s to process them again", cleaned["retried"], ",".join(retry))
    progress = None
    if request.progress_interval_s > 0 and not dry_run and runner in LOCAL_RUNNERS and _is_local(output):
        progress = Progress(output, run_info["id"], request.progress_interval_s, total=planned_inputs(plan))
        progress.start()
    LOGGER.info("run %s (%s) on %s -> %s", run_info["id"], mode, runner, output)
    try:
        result = pipeline.run()
        if request.detach or dry_run:
            if dry_run:
                LOGGER.info("dry run: the job was translated, nothing ran and nothing was written")
            else:
                LOGGER.info("job submitted; its last step writes %s", FileSystems.join(output, MANIFEST_NAME))
            return None
        result.wait_until_finish()
    finally:
        if progress is not None:
            progress.stop()
            progress.poll()
    manifest = read_manifest(output)
    if manifest.get("run_id") != run_info["id"]:
        raise RuntimeError(f"the job finished but {MANIFEST_NAME} is not this run's (run {run_info['id']})")
    manifest["path"] = FileSystems.join(output, MANIFEST_NAME)
    counts = manifest["counts"]
    if counts["inputs"] and not counts["rows"]:
        LOGGER.warning("every input became a reject: no row was written (the manifest and `unimo-g report %s` "
                       "list the reasons)", output)
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
