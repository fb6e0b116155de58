"""The arguments of `python -m trainers.train` (`unimo-g train`), importable without torch, so
that a usage error answers at once; `trainers.train` checks and runs them."""

from __future__ import annotations

from unimo_g.usage import OneLineParser

PROG = "python -m trainers.train"
STAGES = (1, 2)  # 1: text-to-image pre-training; 2: multimodal instruction tuning


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Train the UNIMO-G denoiser: stage 1 (text-to-image) or "
                           "stage 2 (multimodal prompts, with the attention-to-mask loss).", allow_abbrev=False)
    parser.add_argument("--config", required=True, help="training YAML (a path, or a preset name such as train_tiny)")
    parser.add_argument("--stage", required=True, type=int, choices=STAGES,
                        help="1: text-to-image pre-training; 2: multimodal instruction tuning")
    parser.add_argument("--data", required=True,
                        help="prompt shards or pre-computed features: directory, glob or file (local or fsspec URL)")
    parser.add_argument("--output", required=True, help="run directory: metrics.jsonl and checkpoints/")
    parser.add_argument("--init-from", help="start from this checkpoint's denoiser (fresh optimizer)")
    parser.add_argument("--init-weights", choices=("ema", "raw"), default="ema", help="which weights --init-from takes")
    parser.add_argument("--max-steps", type=int, help="optimizer steps to train to (overrides max_steps)")
    parser.add_argument("--resume", action="store_true", help="continue OUTPUT's latest checkpoint")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--report-to", action="append", default=[], metavar="NAME[,NAME]",
                        help="also log to tensorboard and/or wandb (beside OUTPUT/metrics.jsonl)")
    return parser
