"""The subcommands of `unimo-g`: one `register(...)` line each.

Each subcommand is a job module that exposes `add_arguments(parser)` and `run(args) -> int`
(`unimo_g.usage`), named here, not imported: the module is loaded only when its command runs (the
command layer imports no job, so neither torch nor Beam), and importing it loads neither torch nor
Beam (they load inside `run`), so `unimo-g COMMAND --help` and usage errors answer at once.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    module: str  # the job: add_arguments(parser), run(args) -> int
    summary: str
    example: str

    def job(self) -> ModuleType:
        return importlib.import_module(self.module)


COMMANDS: dict[str, Command] = {}


def register(name: str, module: str, summary: str, example: str) -> None:
    """Add a subcommand `unimo-g NAME` that runs the job `module`."""
    if name in COMMANDS:
        raise ValueError(f"subcommand {name!r} is registered twice")
    COMMANDS[name] = Command(name, module, summary, example)


# fmt: off
register("demo", "unimo_g_cli.demo", "the data job on the bundled sample (tiny offline models), then its report",
         "unimo-g demo demo_output")
register("build", "pipelines.prompts.command", "image-caption pairs -> prompt shards (Beam; Beam options pass through)",
         "unimo-g build --input data/sample --output demo_output --config tiny --runner=DirectRunner")
register("verify", "pipelines.outputs.verify", "re-count an output folder from its files: inputs = rows + rejects (exit 1 if not)",
         "unimo-g verify demo_output")
register("features", "pipelines.features.command",
         "prompt shards -> pre-computed VAE posteriors and encoder states (Beam)",
         "unimo-g features --input demo_output --output demo_features --config train_tiny")
register("train", "trainers.command_line", "train the denoiser, stage 1 (text-to-image) or 2 (multimodal prompts)",
         "unimo-g train --config train_tiny --stage 1 --data demo_output --output runs/s1 --max-steps 10")
register("generate", "unimo_g_apps.generate", "an image from a multimodal prompt and a trained checkpoint",
         'unimo-g generate --checkpoint runs/s2 --prompt "a <img>data/entities/cat.png</img> on a sofa" --out cat_on_sofa.png')
register("evaluate", "unimo_g_apps.evaluation.evaluate",
         "DINO, CLIP-I, CLIP-T on DreamBench / MultiBench, FID on MS-COCO, beside the paper's tables",
         "unimo-g evaluate --model runs/s2 --bench /data/dreambench --out runs/s2_eval")
register("report", "pipelines.outputs.report.main", "a self-contained HTML report of an output (local or object store)",
         "unimo-g report demo_output")
register("gallery", "pipelines.outputs.gallery", "the first N samples of a local output folder as one HTML page",
         "unimo-g gallery demo_output --limit 20")
register("presets", "unimo_g_cli.presets_command", "list the bundled presets, or print one", "unimo-g presets show tiny")
register("check-config", "unimo_g_cli.check_config", "validate a config with --set overrides, print it resolved",
         "unimo-g check-config default --set grounding.box_threshold=0.3")
# fmt: on
