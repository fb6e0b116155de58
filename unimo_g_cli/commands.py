"""The subcommands of `unimo-g`: one `register(...)` line each.

Each subcommand delegates to an existing `main(argv) -> int` ("module:function"), so a job's flags
are defined once, by its own parser (`parser`: "module:function" returning it, from a module that
imports neither torch nor Beam). The dispatcher shows that parser's help and checks the arguments
with it before it loads the job, so usage errors answer at once. `prog` is the job's own program
name, shown as `unimo-g NAME` instead; `passthrough` jobs take options their parser does not know
(Beam's pipeline options).
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    target: str  # "module:function", called with the remaining argv; returns an exit code
    summary: str
    example: str
    parser: str  # "module:function" returning the target's argparse parser
    prog: Optional[str] = None  # the program name the target prints in usage and error lines
    passthrough: bool = False  # unknown options go on to the job (Beam's own)


COMMANDS: dict[str, Command] = {}


def register(name: str, target: str, summary: str, example: str, parser: str, prog: Optional[str] = None,
             passthrough: bool = False) -> None:
    """Add a subcommand `unimo-g NAME` that runs `target(argv)`."""
    if name in COMMANDS:
        raise ValueError(f"subcommand {name!r} is registered twice")
    COMMANDS[name] = Command(name, target, summary, example, parser, prog, passthrough)


# fmt: off
register("demo", "unimo_g_cli.demo:main", "the data job on the bundled sample (tiny offline models), then its report",
         "unimo-g demo demo_output", "unimo_g_cli.demo:build_parser", prog="unimo-g demo", passthrough=True)
register("build", "beam_runner:main", "image-caption pairs -> prompt shards (Beam; Beam options pass through)",
         "unimo-g build --input data/sample --output demo_output --config tiny --runner=DirectRunner",
         "beam_runner:build_parser", prog="beam_runner.py", passthrough=True)
register("verify", "pipelines.verify:main", "re-count an output folder from its files: inputs = rows + rejects (exit 1 if not)",
         "unimo-g verify demo_output", "pipelines.verify:build_parser", prog="python -m pipelines.verify")
register("features", "features_runner:main", "prompt shards -> pre-computed VAE posteriors and encoder states (Beam)",
         "unimo-g features --input demo_output --output demo_features --config train_tiny",
         "features_runner:build_parser", prog="features_runner.py", passthrough=True)
register("train", "trainers.train:main", "train the denoiser, stage 1 (text-to-image) or 2 (multimodal prompts)",
         "unimo-g train --config train_tiny --stage 1 --data demo_output --output runs/s1 --max-steps 20",
         "trainers.command_line:build_parser", prog="python -m trainers.train")
register("generate", "unimo_g.generate:main", "an image from a multimodal prompt and a trained checkpoint",
         'unimo-g generate --checkpoint runs/s2 --prompt "a <img>data/entities/cat.png</img> on a sofa" --out cat_on_sofa.png',
         "unimo_g.generate:build_parser", prog="python -m unimo_g.generate")
register("evaluate", "unimo_g.evaluate:main",
         "DINO, CLIP-I, CLIP-T on DreamBench / MultiBench, FID on MS-COCO, beside the paper's tables",
         "unimo-g evaluate --model runs/s2 --bench /data/dreambench --out runs/s2_eval",
         "unimo_g.evaluate:build_parser", prog="python -m unimo_g.evaluate")
register("report", "pipelines.report.main:main", "a self-contained HTML report of an output (local or object store)",
         "unimo-g report demo_output", "pipelines.report.main:build_parser", prog="unimo-g report")
register("gallery", "unimo_g.gallery:main", "the first N samples of a local output folder as one HTML page",
         "unimo-g gallery demo_output --limit 20", "unimo_g.gallery:build_parser", prog="python -m unimo_g.gallery")
register("presets", "unimo_g_cli.presets_command:main", "list the bundled presets, or print one",
         "unimo-g presets show tiny", "unimo_g_cli.presets_command:build_parser", prog="unimo-g presets")
register("check-config", "unimo_g_cli.check_config:main", "validate a config with --set overrides, print it resolved",
         "unimo-g check-config default --set grounding.box_threshold=0.3", "unimo_g_cli.check_config:build_parser",
         prog="unimo-g check-config")
# fmt: on
