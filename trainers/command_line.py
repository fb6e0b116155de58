"""`unimo-g train` (`python -m trainers.train`): the training job's arguments and its run.

Importable without torch, so that --help and usage errors answer at once; `run` turns the
arguments into a `trainers.train.TrainRequest` and trains.
"""

from __future__ import annotations

import argparse

from unimo_g.usage import RunFailed, UsageError, spellings

PROG = "python -m trainers.train"
DESCRIPTION = ("Train the UNIMO-G denoiser: stage 1 (text-to-image) or stage 2 (multimodal prompts, with the "
               "attention-to-mask loss).")
STAGES = (1, 2)  # 1: text-to-image pre-training; 2: multimodal instruction tuning


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training YAML (a path, or a preset name such as train_tiny)")
    parser.add_argument("--stage", required=True, type=int, choices=STAGES,
                        help="1: text-to-image pre-training; 2: multimodal instruction tuning")
    parser.add_argument("--data", required=True,
                        help="prompt shards or pre-computed features: directory, glob or file (local or fsspec URL)")
    parser.add_argument("--output", required=True, help="run directory: metrics.jsonl and checkpoints/")
    parser.add_argument(*spellings("--init-from"), help="start from this checkpoint's denoiser (fresh optimizer)")
    parser.add_argument(*spellings("--init-weights"), choices=("ema", "raw"), default="ema",
                        help="which weights --init-from takes")
    parser.add_argument(*spellings("--max-steps"), type=int, help="optimizer steps to train to (overrides max_steps)")
    parser.add_argument("--resume", action="store_true", help="continue OUTPUT's latest checkpoint")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument(*spellings("--report-to"), action="append", default=[], metavar="NAME[,NAME]",
                        help="also log to tensorboard and/or wandb (beside OUTPUT/metrics.jsonl)")


def train_request(args: argparse.Namespace):
    """The typed `TrainRequest` of the arguments."""
    from trainers.reporting import parse_report_to
    from trainers.train import TrainRequest

    try:
        report_to = tuple(parse_report_to(args.report_to))
    except ValueError as err:
        raise UsageError(str(err)) from None
    return TrainRequest(config=args.config, stage=args.stage, data=args.data, output=args.output,
                        overrides=tuple(args.set), max_steps=args.max_steps, init_from=args.init_from,
                        use_ema=args.init_weights == "ema", resume=args.resume, report_to=report_to)


def run(args: argparse.Namespace) -> int:
    from trainers.data import ShardError
    from trainers import train

    request = train_request(args)
    try:
        train.run(request)
    except ShardError as err:  # a row met during training that cannot be read; checkpoints so far stay
        raise RunFailed(f"{train.shard_error_line(err)} (data.skip_corrupt=true skips such rows; --resume continues "
                        "from the last checkpoint)") from None
    return 0
