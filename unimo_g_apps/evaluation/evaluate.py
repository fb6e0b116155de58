"""The paper's evaluation: generate a benchmark's images with a model, then score them beside the paper.

    unimo-g evaluate --model CHECKPOINT_OR_EXPORT --bench DIR --out DIR
        [--layout auto|dreambench|multibench|custom] [--subjects N] [--prompts-per-subject K]
        [--sample N] [--seed S] [--limit N] [--config YAML] [--set key=value ...] [--device cuda] [--raw-weights]
    unimo-g evaluate --model ... --bench coco --captions captions_val2014.json --images val2014/ --out DIR

--bench is a DreamBench folder, the authors' MultiBench folder or a custom benchmark
(`unimo_g_apps.evaluation.benchmarks`): DINO, CLIP-I and CLIP-T (`unimo_g_apps.evaluation.metrics`), beside the
paper's Table 2 or 3. `--bench coco`: zero-shot FID on MS-COCO captions (`unimo_g_apps.evaluation.coco_captions`,
`unimo_g_apps.evaluation.fid`), 30,000 captions by default, beside Table 1. --subjects / --prompts-per-subject /
--sample draw a representative subset (`unimo_g_apps.evaluation.subsets`); --limit then keeps the first N.

Images go to OUT/images/CASE/K.png, seeded per image by (seed, case, K), generated in batches
across prompts (bf16 autocast on CUDA by default), and kept: a rerun with the same settings makes
only the missing ones, whatever subset chose them (other settings are refused). OUT/results.json
and OUT/results.md hold the scores (`unimo_g_apps.evaluation.report`). Unusable arguments exit with
code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from unimo_g.usage import UsageError, first_paragraph, job_parser, parse, run_job, spellings

PROG = "python -m unimo_g_apps.evaluation.evaluate"
SETTINGS_FILE = "evaluation.json"
RESULTS_JSON, RESULTS_MD = "results.json", "results.md"
METRICS = ("dino", "clip_i", "clip_t")
LAYOUT_CHOICES = ("auto", "dreambench", "multibench", "custom")
COCO = "coco"  # --bench coco: the FID protocol
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# DreamBooth's DINO metric: self-supervised ViT-S/16 (Caron et al. 2021)
DEFAULT_DINO_MODEL = "facebook/dino-vits16"
# CLIP ViT-B/32, the variant of DreamBooth's CLIP-I / CLIP-T; the UNIMO-G paper does not name its own
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
FID_CAPTIONS = 30_000  # the paper's FID-30K


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
class FidConfig:
    """The MS-COCO FID protocol (`unimo_g_apps.evaluation.fid`). size: side the images are resized to (the paper:
    256); inception: "download" (the published TorchScript FID Inception, cached), a local path to
    it, or "tiny" (random weights, tests); reference: the real images, "sampled" (those of the
    sampled captions) or "all" (every image of the captions file); batch_size: images per forward."""

    size: int = 256
    inception: str = "download"
    reference: str = "sampled"
    batch_size: int = 32

    def __post_init__(self):
        if self.size < 16 or self.batch_size < 1:
            raise ValueError(f"fid.size must be >= 16 and fid.batch_size >= 1, got {self.size}, {self.batch_size}")
        if self.reference not in ("sampled", "all"):
            raise ValueError(f"fid.reference must be 'sampled' or 'all', got {self.reference!r}")


@dataclass(frozen=True)
class EvaluationConfig:
    """images_per_prompt: images per case (DreamBooth's protocol: 4; the COCO protocol makes 1);
    steps / guidance: DDIM steps and classifier-free guidance (the paper samples with 50 and 5.0);
    seed: base of the per-image seeds; batch_size: images sampled together (across prompts);
    resolution: None = the model's training resolution; entity_image: which reference photo (sorted
    by name) is the prompt's entity image; compose: "replace" (the entity phrase becomes the image,
    as in training) or "append" (the class noun stays, the image follows); precision: autocast of
    sampling, "auto" = bf16 on CUDA (fp16 where bf16 is missing), fp32 on the CPU."""

    images_per_prompt: int = 4
    steps: int = 50
    guidance: float = 5.0
    seed: int = 0
    batch_size: int = 4
    resolution: Optional[int] = None
    entity_image: int = 0
    compose: str = "replace"
    precision: str = "auto"
    metrics: MetricModelsConfig = field(default_factory=MetricModelsConfig)
    fid: FidConfig = field(default_factory=FidConfig)

    def __post_init__(self):
        for name in ("images_per_prompt", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.seed < 0 or self.entity_image < 0:
            raise ValueError("seed and entity_image must be >= 0")
        if self.resolution is not None and self.resolution < 8:
            raise ValueError(f"resolution must be >= 8 or null, got {self.resolution!r}")
        if self.compose not in ("replace", "append"):
            raise ValueError(f"compose must be 'replace' or 'append', got {self.compose!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass(frozen=True)
class EvaluateRequest:
    """One evaluation as asked for: `model` on benchmark `bench` (or `coco` with `captions` and
    `images`) into `out`; the subset (`subjects`, `prompts_per_subject`, `sample`, `seed`, then the
    first `limit` cases); the EvaluationConfig YAML `config` (None: defaults) with `overrides`."""

    model: str
    bench: str
    out: str
    layout: str = "auto"
    captions: Optional[str] = None
    images: Optional[str] = None
    subjects: Optional[int] = None
    prompts_per_subject: Optional[int] = None
    sample: Optional[int] = None
    seed: int = 0
    limit: Optional[int] = None
    config: Optional[str] = None
    overrides: tuple[str, ...] = ()
    device: Optional[str] = None
    raw_weights: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint, training output or export folder")
    parser.add_argument("--bench", required=True,
                        help="benchmark folder (DreamBench, the authors' MultiBench, or a custom benchmark.json), "
                             "or 'coco' for FID on MS-COCO captions (with --captions and --images)")
    parser.add_argument("--out", required=True, help="folder for the images and the results")
    parser.add_argument("--layout", choices=LAYOUT_CHOICES, default="auto",
                        help="benchmark folder layout (default auto: from the files the folder holds)")
    parser.add_argument("--captions", help="--bench coco: COCO captions file (captions_val2014.json)")
    parser.add_argument("--images", help="--bench coco: folder of the COCO images it names (val2014/)")
    parser.add_argument("--subjects", type=int, help="evaluate N subjects, drawn spread over the benchmark")
    parser.add_argument(*spellings("--prompts-per-subject"), type=int,
                        help="evaluate K prompts of each subject, spread over its templates")
    parser.add_argument("--sample", type=int, help="evaluate N prompts spread over subjects and templates (--bench "
                                                   f"coco: N captions, default {FID_CAPTIONS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset or caption draw (default 0)")
    parser.add_argument("--limit", type=int, help="then keep the first N cases only (smoke runs: one subject)")
    parser.add_argument("--config", help="YAML with EvaluationConfig values")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument(*spellings("--raw-weights"), action="store_true", help="use the trained weights, not their EMA")


def evaluate_request(args: argparse.Namespace) -> EvaluateRequest:
    """The typed request of the arguments, refused (`UsageError`) before anything loads."""
    for name in ("subjects", "prompts_per_subject", "sample", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    coco = args.bench == COCO
    if coco and not (args.captions and args.images):
        raise UsageError("--bench coco needs --captions (captions_val2014.json) and --images (val2014/)")
    if not coco and (args.captions or args.images):
        raise UsageError("--captions and --images go with --bench coco")
    if coco and (args.subjects or args.prompts_per_subject or args.layout != "auto"):
        raise UsageError("--bench coco takes --sample N (captions) and --seed, not --subjects, "
                         "--prompts-per-subject or --layout")
    return EvaluateRequest(
        model=args.model, bench=args.bench, out=args.out, layout=args.layout, captions=args.captions,
        images=args.images, subjects=args.subjects, prompts_per_subject=args.prompts_per_subject, sample=args.sample,
        seed=args.seed, limit=args.limit, config=args.config, overrides=tuple(args.set), device=args.device,
        raw_weights=args.raw_weights,
    )


def parse_args(argv: Optional[Sequence[str]] = None) -> EvaluateRequest:
    """The request of a `python -m unimo_g_apps.evaluation.evaluate` command line (for callers in Python)."""
    return evaluate_request(parse(job_parser(PROG, add_arguments), argv))


def image_seed(seed: int, case: str, index: int) -> int:
    """The seed of image `index` of `case`: independent of batching and of which images exist."""
    return int.from_bytes(hashlib.sha256(repr((seed, case, index)).encode()).digest()[:7], "little")


def resolve_precision(precision: str, device) -> str:
    """The autocast dtype name sampling runs in on `device`; ValueError for one it cannot run."""
    import torch

    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (bf16 and fp32 run on the CPU)")
    return precision


def autocast(precision: str, device):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def _save_png(pixels, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    Image.fromarray(pixels).save(temporary, format="PNG")
    os.replace(temporary, path)  # a killed run leaves whole images only


def generate_images(models, cases, config: EvaluationConfig, images_dir: Path, precision: str = "fp32",
                    images_per_prompt: Optional[int] = None) -> int:
    """Generate every missing image of `cases`, batched across prompts; returns how many were made."""
    from unimo_g.inference import generate_batch, load_entity_image, parse_prompt

    per_prompt = images_per_prompt or config.images_per_prompt
    jobs = [(case, k) for case in cases for k in range(per_prompt)
            if not (images_dir / case.key / f"{k}.png").is_file()]
    entity_cache: dict = {}
    for start in range(0, len(jobs), config.batch_size):
        batch = jobs[start : start + config.batch_size]
        prompts, images = [], []
        for case, _ in batch:
            prompt, paths = parse_prompt(case.prompt(config.entity_image, config.compose))
            for path in paths:
                if path not in entity_cache:
                    entity_cache[path] = load_entity_image(path, models.spec.entity_image)
            prompts.append(prompt)
            images.append([entity_cache[path] for path in paths])
        seeds = [image_seed(config.seed, case.key, k) for case, k in batch]
        with autocast(precision, models.device):
            pixels = generate_batch(models, prompts, images, seeds, config.steps, config.guidance, config.resolution)
        for (case, k), image in zip(batch, pixels):
            _save_png(image, images_dir / case.key / f"{k}.png")
    return len(jobs)


def score(cases, config: EvaluationConfig, images_dir: Path, metric_models) -> dict:
    """Per-case scores: DINO and CLIP-I averaged over the case's entities (and per entity), CLIP-T."""
    from PIL import Image

    from unimo_g.inference import load_entity_image
    from unimo_g_apps.evaluation.metrics import mean_cosine, paired_cosine

    references: dict = {}

    def reference(entity):
        if entity.name not in references:  # RGB, transparency on white, upright, first frame of an MPO
            photos = [load_entity_image(path) for path in entity.images]
            references[entity.name] = (metric_models.dino_images(photos), metric_models.clip_images(photos))
        return references[entity.name]

    per_case = {}
    for case in cases:
        generated = [Image.open(images_dir / case.key / f"{k}.png").convert("RGB")
                     for k in range(config.images_per_prompt)]
        dino, clip = metric_models.dino_images(generated), metric_models.clip_images(generated)
        text = metric_models.clip_texts([case.text()]).expand(len(generated), -1)
        per_entity = {entity.name: {"dino": mean_cosine(dino, reference(entity)[0]),
                                    "clip_i": mean_cosine(clip, reference(entity)[1])} for entity in case.entities}
        per_case[case.key] = {
            "subject": case.subject, "template": case.template_name, "text": case.text(),
            "entities": [entity.name for entity in case.entities], "per_entity": per_entity,
            "dino": sum(v["dino"] for v in per_entity.values()) / len(per_entity),
            "clip_i": sum(v["clip_i"] for v in per_entity.values()) / len(per_entity),
            "clip_t": paired_cosine(clip, text),
        }
    return per_case


def _load_config(request: EvaluateRequest) -> EvaluationConfig:
    from unimo_g.config_tools import ConfigError, load_config

    try:
        return load_config(EvaluationConfig, request.config, request.overrides)
    except (ConfigError, ValueError, OSError) as err:
        raise UsageError(str(err)) from None


def _prepare_out(out: Path, settings: dict) -> None:
    """Refuse a folder whose images were made with other settings; record ours."""
    settings_path = out / SETTINGS_FILE
    if settings_path.is_file():
        # folders made before compose and precision were recorded used these values
        saved = {"compose": "replace", "precision": "fp32", **json.loads(settings_path.read_text(encoding="utf-8"))}
        changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if changed:
            raise UsageError(f"{out} holds images made with other settings ({', '.join(changed)}); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    settings_path.write_text(json.dumps(settings, indent=2, sort_keys=True), encoding="utf-8")


def _generate(request: EvaluateRequest, cases, config, settings, device, images_per_prompt=None):
    """Load the model, make the missing images; (images made now, "ema" | "raw")."""
    from unimo_g.checkpoint_format import CheckpointError
    from unimo_g.export_format import ExportError
    from unimo_g.inference import PromptError, load_generation_models

    out = Path(request.out)
    _prepare_out(out, settings)
    try:
        models = load_generation_models(request.model, device, not request.raw_weights)
        made = generate_images(models, cases, config, out / "images", settings["precision"], images_per_prompt)
        return made, models.weights
    except (CheckpointError, ExportError, PromptError, OSError) as err:
        raise UsageError(str(err).strip().splitlines()[0]) from None


def _write_results(out: Path, results: dict, page: str) -> None:
    (out / RESULTS_JSON).write_text(json.dumps(results, indent=2, sort_keys=True), encoding="utf-8")
    (out / RESULTS_MD).write_text(page, encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    print(evaluate(evaluate_request(args)))
    return 0


def evaluate(request: EvaluateRequest) -> str:
    """Generate the benchmark's missing images, score them and write the results; a summary line."""
    import torch

    from unimo_g.config_tools import to_dict
    from unimo_g.devices import resolve_device

    config = _load_config(request)
    try:
        device = resolve_device(request.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        precision = resolve_precision(config.precision, device)
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"--device: {err}") from None
    settings = {"model": str(Path(request.model).resolve()), "raw_weights": request.raw_weights,
                **{k: v for k, v in to_dict(config).items() if k not in ("metrics", "fid", "batch_size")},
                "precision": precision}
    if request.bench == COCO:
        from unimo_g_apps.evaluation.coco_fid import run_fid

        return run_fid(request, config, settings, device)
    return _run_subject_bench(request, config, settings, device)


def _run_subject_bench(request: EvaluateRequest, config: EvaluationConfig, settings: dict, device) -> str:
    from unimo_g_apps.evaluation.benchmarks import BenchmarkError, detect_layout, read_benchmark
    from unimo_g_apps.evaluation.metrics import build_metric_models
    from unimo_g_apps.evaluation.paper_results import paper_tables
    from unimo_g_apps.evaluation.report import METRIC_NAMES, markdown, summarize
    from unimo_g_apps.evaluation.subsets import select_cases

    try:
        layout = detect_layout(request.bench) if request.layout == "auto" else request.layout
        every = read_benchmark(request.bench, layout)
    except BenchmarkError as err:
        raise UsageError(str(err)) from None
    subset = select_cases(every, request.subjects, request.prompts_per_subject, request.sample, request.seed)
    cases = subset[: request.limit]
    settings = {**settings, "layout": layout, "bench": str(Path(request.bench).resolve())}
    made, weights = _generate(request, cases, config, settings, device)
    try:
        metric_models = build_metric_models(config.metrics, device)
    except OSError as err:  # a metric model the hub or disk does not have
        raise UsageError(f"metric models: {str(err).strip().splitlines()[0]}") from None
    per_case = score(cases, config, Path(request.out) / "images", metric_models)
    paper = paper_tables().get(layout)
    selection = {"cases": len(cases), "of": len(every), "subjects": request.subjects,
                 "prompts_per_subject": request.prompts_per_subject, "sample": request.sample,
                 "seed": request.seed if (request.subjects or request.prompts_per_subject or request.sample) else None,
                 "limit": request.limit}
    results = {"layout": layout, "model": request.model, "weights": weights, "settings": settings,
               "metrics": {"dino": config.metrics.dino, "clip": config.metrics.clip}, "selection": selection,
               **summarize(per_case, layout), "cases": per_case, "paper": paper.to_dict() if paper else None}
    out = Path(request.out)
    _write_results(out, results, markdown(results))
    overall = results["overall"]
    summary = ", ".join(f"{METRIC_NAMES[m]} {overall[m]:.3f}" for m in METRICS)
    if paper and paper.reference:
        summary += " (paper: " + ", ".join(f"{paper.reference.values[m]:.3f}" for m in METRICS) + ")"
    return f"{len(cases)} of {len(every)} prompts ({made} images generated now): {summary}; see {out / RESULTS_MD}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, add_arguments, run, argv, first_paragraph(__doc__))


if __name__ == "__main__":
    from unimo_g.quiet_logs import install

    install()  # known third-party noise of the libraries it loads
    sys.exit(main())
