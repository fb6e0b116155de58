"""Beam's own pipeline options on a job's command line: checked, then given to Beam.

The jobs' parsers leave Beam's options (`--runner`, `--direct_num_workers`, ...) to Beam, in Beam's
spelling. An option Beam does not know either is refused (Beam itself only warns, and
`--runer=DataflowRunner` would run locally): before Beam is imported from `beam_flags.txt`, and
again by Beam's own parser.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from pipelines.runner_support import refusal
from unimo_g.usage import UsageError

HELP = """\
Any option of Beam's PipelineOptions goes to Beam, in Beam's spelling: --runner=DataflowRunner,
--direct_num_workers=2 --direct_running_mode=multi_processing, ... (the list: pipelines/beam_flags.txt).
Without --runner the DirectRunner runs."""


def add_beam_options(parser: argparse.ArgumentParser) -> None:
    """Let `parser`'s job take Beam's options (in `args.passthrough`), shown once as a pointer."""
    parser.add_argument_group("Beam pipeline options", HELP)
    parser.set_defaults(passthrough=[])


def with_default_runner(beam_args: Sequence[str]) -> list[str]:
    # Beam's default runner tries to download the Prism binary; name the DirectRunner instead.
    if any(a == "--runner" or a.startswith("--runner=") for a in beam_args):
        return list(beam_args)
    return ["--runner=DirectRunner", *beam_args]


def unknown_option_error(unknown: Sequence[str]) -> UsageError:
    return UsageError(f"unknown option {unknown[0]!r}: neither the job nor Beam knows it")


def check_known(beam_args: Sequence[str]) -> None:
    """Refuse an option Beam does not know, without importing Beam, when the installed Beam is the
    release `pipelines/beam_flags.txt` lists (else Beam's own parser decides, in `pipeline_options`)."""
    from pipelines.beam_flags import known_flags, unknown_options

    flags = known_flags()
    unknown = unknown_options(list(beam_args), flags) if flags is not None else []
    if unknown:
        raise unknown_option_error(unknown)


def unknown_beam_options(beam_args: Sequence[str]) -> list[str]:
    """The arguments no registered Beam `PipelineOptions` class knows (Beam itself only warns)."""
    from pipelines.beam_flags import beam_options_parser

    _, unknown = beam_options_parser().parse_known_args(list(beam_args))
    return unknown


def pipeline_options(beam_args: Sequence[str]):
    """Beam `PipelineOptions` of `beam_args` (DirectRunner unless one is named); an option Beam does
    not know, a malformed one, or a runner the jobs refuse (pipelines.runner_support) is a `UsageError`."""
    from apache_beam.options.pipeline_options import PipelineOptions  # Beam is slow to import

    beam_args = with_default_runner(beam_args)
    unknown = unknown_beam_options(beam_args)
    if unknown:
        raise unknown_option_error(unknown)
    try:
        options = PipelineOptions(beam_args)
        options.get_all_options(retain_unknown_options=False)
    except (SystemExit, ValueError) as err:
        raise UsageError(f"bad Beam pipeline option in {' '.join(beam_args)}: {err}") from None
    runner = options.get_all_options()["runner"]
    why = refusal(runner) if isinstance(runner, str) else None
    if why:
        raise UsageError(f"--runner={runner}: {why}")
    return options
