"""Pre-compute stage-1 training features from prompt shards: VAE posteriors and encoder hidden states.

    python features_runner.py --input SHARDS --output DIR --config configs/train_tiny.yaml
        [--set key=value ...] [--overwrite] [--storage-dtype fp16|bf16|fp32] [--batch-size N] [--device cpu|cuda|cuda:N]
        [--vae-dtype fp32|bf16] [--max-pixels N] [--row-group-rows N] [--num-shards N]
        [any Beam pipeline option, e.g. --runner=DirectRunner --direct_num_workers=2
        --direct_running_mode=multi_processing]

The same job as `unimo-g features`; the job is `pipelines.features.command`.
"""

from __future__ import annotations

from typing import Optional, Sequence

from pipelines.features import command as features_command
from unimo_g.usage import first_paragraph, job_parser, parse, run_job

PROG = "features_runner.py"


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, features_command.add_arguments, features_command.run, argv, first_paragraph(__doc__))


def run(argv: Optional[Sequence[str]] = None) -> dict:
    """The job for callers in Python: run it on a command line and return the manifest it wrote.
    Raises `UsageError` for unusable arguments."""
    from pipelines.features.job import run_features

    args = parse(job_parser(PROG, features_command.add_arguments), argv)
    return run_features(features_command.features_request(args))


if __name__ == "__main__":
    from unimo_g.process_exit import exit_now

    exit_now(main())
