"""The paper's evaluation: generate a benchmark's images with a model, then score DINO, CLIP-I, CLIP-T.

    python -m unimo_g.evaluate --model CHECKPOINT_OR_EXPORT --bench DIR --out DIR
        [--layout auto|dreambench|multibench] [--config YAML] [--set key=value ...] [--device cuda]
        [--raw-weights] [--limit N]

--model is a checkpoint, a training output (its latest checkpoint) or an export folder; --bench a
folder in the DreamBench or MultiBench layout (`unimo_g.evaluation_bench`). Images go to
OUT/images/CASE/K.png, seeded per image by (seed, case, K), generated in batches, and kept: a
rerun with the same settings generates only the missing ones (other settings are refused). Then
OUT/results.json and OUT/results.md hold DINO, CLIP-I and CLIP-T (`unimo_g.evaluation_metrics`)
per subject and overall, beside the paper's reported values. Unusable arguments exit with code 2
and a one-line message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from unimo_g.usage import OneLineParser, UsageError, run_command

PROG = "python -m unimo_g.evaluate"
SETTINGS_FILE = "evaluation.json"
RESULTS_JSON, RESULTS_MD = "results.json", "results.md"
METRICS = ("dino", "clip_i", "clip_t")
METRIC_NAMES = {"dino": "DINO", "clip_i": "CLIP-I", "clip_t": "CLIP-T"}

# DreamBooth's DINO metric: self-supervised ViT-S/16 (Caron et al. 2021)
DEFAULT_DINO_MODEL = "facebook/dino-vits16"
# CLIP ViT-B/32, the variant of DreamBooth's CLIP-I / CLIP-T; the UNIMO-G paper does not name its own
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


@dataclass(frozen=True)
class MetricModelsConfig:
    """Which models embed images and texts. dino / clip: hub ids, local directories or "tiny";
    batch_size: images per forward."""

    dino: str = DEFAULT_DINO_MODEL
    clip: str = DEFAULT_CLIP_MODEL
    batch_size: int = 16
    seed: int = 0  # weights of the tiny models

    def __post_init__(self):
        if not self.dino or not self.clip:
            raise ValueError("metrics.dino and metrics.clip must name a model")
        if self.batch_size < 1:
            raise ValueError(f"metrics.batch_size must be >= 1, got {self.batch_size!r}")


@dataclass(frozen=True)
class ReportedScores:
    """Scores a paper reports for one benchmark; None where not filled in."""

    dino: Optional[float] = None
    clip_i: Optional[float] = None
    clip_t: Optional[float] = None


@dataclass(frozen=True)
class PaperValues:
    """UNIMO-G's reported values, shown beside ours. NOT FILLED IN: the paper's tables could not be
    checked from here; set them from the paper (e.g. --set paper.dreambench.dino=0.xxx)."""

    dreambench: ReportedScores = field(default_factory=ReportedScores)
    multibench: ReportedScores = field(default_factory=ReportedScores)


@dataclass(frozen=True)
class EvaluationConfig:
    """images_per_prompt: images per case (DreamBooth's protocol: 4); steps / guidance: DDIM steps
    and classifier-free guidance (the paper samples with 50 and 5.0); seed: base of the per-image
    seeds; batch_size: images sampled together; resolution: None = the model's training
    resolution; entity_image: which reference photo (sorted by name) is the prompt's entity image."""

    images_per_prompt: int = 4
    steps: int = 50
    guidance: float = 5.0
    seed: int = 0
    batch_size: int = 4
    resolution: Optional[int] = None
    entity_image: int = 0
    metrics: MetricModelsConfig = field(default_factory=MetricModelsConfig)
    paper: PaperValues = field(default_factory=PaperValues)

    def __post_init__(self):
        for name in ("images_per_prompt", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.seed < 0 or self.entity_image < 0:
            raise ValueError("seed and entity_image must be >= 0")
        if self.resolution is not None and self.resolution < 8:
            raise ValueError(f"resolution must be >= 8 or null, got {self.resolution!r}")


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--model", required=True, help="checkpoint, training output or export folder")
    parser.add_argument("--bench", required=True, help="benchmark folder (DreamBench or MultiBench layout)")
    parser.add_argument("--out", required=True, help="folder for the images and the results")
    parser.add_argument("--layout", choices=("auto", "dreambench", "multibench"), default="auto",
                        help="benchmark folder layout (default auto: from the files the folder holds)")
    parser.add_argument("--config", help="YAML with EvaluationConfig values")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--raw-weights", action="store_true", help="use the trained weights, not their EMA")
    parser.add_argument("--limit", type=int, help="evaluate the first N cases only (smoke runs)")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    return args


def image_seed(seed: int, case: str, index: int) -> int:
    """The seed of image `index` of `case`: independent of batching and of which images exist."""
    return int.from_bytes(hashlib.sha256(repr((seed, case, index)).encode()).digest()[:7], "little")


def _save_png(pixels, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    Image.fromarray(pixels).save(temporary, format="PNG")
    os.replace(temporary, path)  # a killed run leaves whole images only


def generate_images(models, cases, config: EvaluationConfig, images_dir: Path) -> int:
    """Generate every missing image of `cases`; returns how many were made."""
    from unimo_g.generation import generate_batch, load_entity_image, parse_prompt

    jobs = [(case, k) for case in cases for k in range(config.images_per_prompt)
            if not (images_dir / case.key / f"{k}.png").is_file()]
    entity_cache: dict = {}
    for start in range(0, len(jobs), config.batch_size):
        batch = jobs[start : start + config.batch_size]
        prompts, images = [], []
        for case, _ in batch:
            prompt, paths = parse_prompt(case.prompt(config.entity_image))
            for path in paths:
                if path not in entity_cache:
                    entity_cache[path] = load_entity_image(path, models.spec.entity_image)
            prompts.append(prompt)
            images.append([entity_cache[path] for path in paths])
        seeds = [image_seed(config.seed, case.key, k) for case, k in batch]
        pixels = generate_batch(models, prompts, images, seeds, config.steps, config.guidance, config.resolution)
        for (case, k), image in zip(batch, pixels):
            _save_png(image, images_dir / case.key / f"{k}.png")
    return len(jobs)


def score(cases, config: EvaluationConfig, images_dir: Path, metric_models) -> dict:
    """Per-case scores, then their means per subject and overall."""
    from PIL import Image

    from unimo_g.evaluation_metrics import mean_cosine, paired_cosine

    references: dict = {}

    def reference(entity):
        if entity.name not in references:
            photos = [Image.open(path).convert("RGB") for path in entity.images]
            references[entity.name] = (metric_models.dino_images(photos), metric_models.clip_images(photos))
        return references[entity.name]

    per_case = {}
    for case in cases:
        generated = [Image.open(images_dir / case.key / f"{k}.png").convert("RGB")
                     for k in range(config.images_per_prompt)]
        dino, clip = metric_models.dino_images(generated), metric_models.clip_images(generated)
        text = metric_models.clip_texts([case.text()]).expand(len(generated), -1)
        refs = [reference(entity) for entity in case.entities]
        per_case[case.key] = {
            "subject": case.subject,
            "dino": sum(mean_cosine(dino, ref_dino) for ref_dino, _ in refs) / len(refs),
            "clip_i": sum(mean_cosine(clip, ref_clip) for _, ref_clip in refs) / len(refs),
            "clip_t": paired_cosine(clip, text),
        }
    subjects: dict[str, dict] = {}
    for values in per_case.values():
        subjects.setdefault(values["subject"], []).append(values)
    table = {name: _mean(rows) for name, rows in subjects.items()}
    return {"subjects": table, "overall": _mean(list(per_case.values())), "cases": per_case}


def _mean(rows: list[dict]) -> dict:
    return {**{m: sum(r[m] for r in rows) / len(rows) for m in METRICS}, "prompts": len(rows)}


def markdown(results: dict) -> str:
    """The results as a Markdown table: one row per subject, the overall mean, the paper's values."""
    head = "| subject | prompts | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " |"
    lines = [f"# {results['layout']} evaluation of `{results['model']}` ({results['weights']} weights)", "",
             f"DINO: `{results['metrics']['dino']}`; CLIP-I and CLIP-T: `{results['metrics']['clip']}`; "
             f"{results['settings']['images_per_prompt']} images per prompt, {results['settings']['steps']} DDIM "
             f"steps, guidance {results['settings']['guidance']}.", "", head,
             "|" + "---|" * (2 + len(METRICS))]
    for name, row in sorted(results["subjects"].items()):
        lines.append(f"| {name} | {row['prompts']} | " + " | ".join(f"{row[m]:.3f}" for m in METRICS) + " |")
    overall = results["overall"]
    lines.append(f"| **overall** | {overall['prompts']} | " + " | ".join(f"**{overall[m]:.3f}**" for m in METRICS)
                 + " |")
    paper = results["paper"]
    lines.append("| paper (reported) | | " + " | ".join("n/a" if paper[m] is None else f"{paper[m]:.3f}"
                                                   for m in METRICS) + " |")
    if all(paper[m] is None for m in METRICS):
        lines += ["", "The paper's values are not filled in: set `paper.<benchmark>.<metric>` from its tables."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> str:
    import torch

    from unimo_g.checkpoint_format import CheckpointError
    from unimo_g.config_tools import ConfigError, load_config, to_dict
    from unimo_g.devices import resolve_device
    from unimo_g.evaluation_bench import BenchmarkError, detect_layout, read_benchmark
    from unimo_g.evaluation_metrics import build_metric_models
    from unimo_g.export import ExportError
    from unimo_g.generation import PromptError, load_generation_models

    try:
        config = load_config(EvaluationConfig, args.config, args.set)
    except (ConfigError, ValueError, OSError) as err:
        raise UsageError(str(err)) from None
    try:
        layout = detect_layout(args.bench) if args.layout == "auto" else args.layout
        cases = read_benchmark(args.bench, layout)[: args.limit]
    except BenchmarkError as err:
        raise UsageError(str(err)) from None
    try:
        device = resolve_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"--device: {err}") from None
    out = Path(args.out)
    settings = {"model": str(Path(args.model).resolve()), "raw_weights": args.raw_weights, "layout": layout,
                "bench": str(Path(args.bench).resolve()),
                **{k: v for k, v in to_dict(config).items() if k not in ("metrics", "paper", "batch_size")}}
    settings_path = out / SETTINGS_FILE
    if settings_path.is_file():
        saved = json.loads(settings_path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if changed:
            raise UsageError(f"{out} holds images made with other settings ({', '.join(changed)}); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    settings_path.write_text(json.dumps(settings, indent=2, sort_keys=True), encoding="utf-8")

    images_dir = out / "images"
    try:
        models = load_generation_models(args.model, device, not args.raw_weights)
        made = generate_images(models, cases, config, images_dir)
        weights = models.weights
    except (CheckpointError, ExportError, PromptError, OSError) as err:
        raise UsageError(str(err).strip().splitlines()[0]) from None
    del models
    try:
        metric_models = build_metric_models(config.metrics, device)
    except OSError as err:  # a metric model the hub or disk does not have
        raise UsageError(f"metric models: {str(err).strip().splitlines()[0]}") from None
    scores = score(cases, config, images_dir, metric_models)
    results = {"layout": layout, "model": args.model, "weights": weights,
               "metrics": {"dino": config.metrics.dino, "clip": config.metrics.clip}, "settings": settings,
               **scores, "paper": to_dict(getattr(config.paper, layout))}
    (out / RESULTS_JSON).write_text(json.dumps(results, indent=2, sort_keys=True), encoding="utf-8")
    (out / RESULTS_MD).write_text(markdown(results), encoding="utf-8")
    overall = scores["overall"]
    summary = ", ".join(f"{METRIC_NAMES[m]} {overall[m]:.3f}" for m in METRICS)
    return f"{len(cases)} prompts ({made} images generated now): {summary}; see {out / RESULTS_MD}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(PROG, lambda: run(parse_args(argv)))


if __name__ == "__main__":
    from unimo_g.quiet_logs import install

    install()  # known third-party noise of the libraries it loads
    sys.exit(main())
