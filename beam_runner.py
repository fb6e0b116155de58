"""Run the data-construction pipeline: image–caption pairs → multimodal-prompt shards.

    python beam_runner.py --input PATH --output DIR [--input-format F] [--config configs/NAME.yaml]
        [--set key=value ...] [--resume | --overwrite] [--retry-rejects REASON,...] [--log-level L]
        [--detach] [any Beam pipeline option, e.g. --runner=DirectRunner
        --direct_num_workers=2 --direct_running_mode=multi_processing]
    python beam_runner.py verify DIR [--write]

The same job as `unimo-g build` (and `unimo-g verify`); the job is `pipelines.prompts.command`.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from pipelines.outputs import verify
from pipelines.prompts import command as build_command
from unimo_g.usage import first_paragraph, job_parser, parse, run_job

PROG = "beam_runner.py"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["verify"]:
        return run_job(f"{PROG} verify", verify.add_arguments, verify.run, argv[1:], first_paragraph(verify.__doc__))
    return run_job(PROG, build_command.add_arguments, build_command.run, argv, first_paragraph(__doc__))


def run(argv: Optional[Sequence[str]] = None, started=None) -> Optional[dict]:
    """The job for callers in Python: run it on a command line and return the manifest it wrote
    (None for a dry run or a detached job). Raises `UsageError` for unusable arguments."""
    args = parse(job_parser(PROG, build_command.add_arguments), argv)
    build_command.setup_logging(args.log_level)
    return build_command.run_build(build_command.build_request(args), started)


if __name__ == "__main__":
    from unimo_g.process_exit import exit_now

    exit_now(main())
