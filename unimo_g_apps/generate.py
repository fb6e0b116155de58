"""Generate an image from a multimodal prompt with a trained checkpoint or export, or export one.

    python -m unimo_g_apps.generate --checkpoint DIR --prompt "a <img>photos/dog.png</img> on a beach" \\
        --out FILE.png [--force] [--steps 50] [--guidance 5.0] [--seed 0] [--resolution R] [--device cuda] \\
        [--raw-weights]
    python -m unimo_g_apps.generate --checkpoint DIR --export OUT_DIR [--raw-weights] [--device cuda]
    python -m unimo_g_apps.generate --checkpoint DIR --export-unet OUT_DIR [--raw-weights]

DIR is a checkpoint written by the trainer, a training output directory (its latest checkpoint) or
an export folder. --export writes a folder diffusers loads alone (`unimo_g.export_format`: UNet with the
condition projection inside, VAE, scheduler, model_index.json, the empty prompt's conditions, a
model card); --export-unet writes the UNet alone. Entity image paths are relative to the working
directory; they are squared on white and resized as the training data's entity images were. The
EMA weights are used when the checkpoint has them (--raw-weights: the trained weights). --out is
never one of the prompt's entity images nor a path inside the --checkpoint folder, and an existing
--out file is replaced only with --force. Unusable arguments exit with code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from unimo_g.usage import UsageError, first_paragraph, job_parser, parse, run_job, spellings

PROG = "python -m unimo_g_apps.generate"


@dataclass(frozen=True)
class GenerateRequest:
    """An image to generate (`prompt`, `out`) or a checkpoint to export (`export` or `export_unet`),
    with the EMA weights when `use_ema`; `device` None: cuda when available, else cpu."""

    checkpoint: str
    prompt: Optional[str] = None
    out: Optional[str] = None
    force: bool = False
    export: Optional[str] = None
    export_unet: Optional[str] = None
    steps: int = 50
    guidance: float = 5.0
    seed: int = 0
    resolution: Optional[int] = None
    device: Optional[str] = None
    use_ema: bool = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory or training output directory")
    parser.add_argument("--prompt", help='text with inline entity images: "a <img>dog.png</img> on grass"')
    parser.add_argument("--out", help="PNG file to write (never an entity image of the prompt or a file of the "
                        "checkpoint; an existing file only with --force)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    parser.add_argument("--export", metavar="OUT_DIR", help="write a folder that diffusers loads alone")
    parser.add_argument(*spellings("--export-unet"), metavar="OUT_DIR",
                        help="write the UNet alone as a diffusers model folder")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    parser.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale (default 5.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise (default 0)")
    parser.add_argument("--resolution", type=int, help="image side in pixels (default: the training resolution)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument(*spellings("--raw-weights"), action="store_true", help="use the trained weights, not their EMA")


def generate_request(args: argparse.Namespace) -> GenerateRequest:
    """The typed request of the arguments, refused (`UsageError`) before any model or image loads."""
    exporting = [flag for flag, value in (("--export", args.export), ("--export-unet", args.export_unet)) if value]
    if not exporting and (args.prompt is None or args.out is None):
        raise UsageError("pass --prompt and --out to generate, or --export OUT_DIR (or --export-unet OUT_DIR)")
    if len(exporting) > 1:
        raise UsageError("pass --export or --export-unet, not both")
    if exporting and (args.prompt is not None or args.out is not None or args.force):
        raise UsageError(f"{exporting[0]} does not take --prompt, --out or --force")
    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if args.resolution is not None and args.resolution < 8:
        raise UsageError(f"--resolution must be >= 8, got {args.resolution}")
    if args.out is not None and Path(args.out).suffix.lower() != ".png":
        raise UsageError(f"--out must name a .png file, got {args.out!r}")
    if args.out is not None:
        check_out(args.out, args.prompt, args.checkpoint, args.force)
    return GenerateRequest(
        checkpoint=args.checkpoint, prompt=args.prompt, out=args.out, force=args.force, export=args.export,
        export_unet=args.export_unet, steps=args.steps, guidance=args.guidance, seed=args.seed,
        resolution=args.resolution, device=args.device, use_ema=not args.raw_weights,
    )


def parse_args(argv: Optional[Sequence[str]] = None) -> GenerateRequest:
    """The request of a `python -m unimo_g_apps.generate` command line (for callers in Python)."""
    return generate_request(parse(job_parser(PROG, add_arguments), argv))


def _same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file: the same resolved path (symlinks, `..`), or, when both
    exist, the same file on disk (hard links, case-insensitive file systems)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or cannot be examined): not the same existing file
        return False


def check_out(out: str, prompt: str, checkpoint: str, force: bool) -> None:
    """Refuse an --out that would write over an input: one of the prompt's entity images or a path
    inside the checkpoint folder (even with --force); or an existing file, unless `force`. Paths
    are named in the messages as the user wrote them."""
    # the prompt parser lives beside the models (torch); it is imported once the cheap checks passed
    from unimo_g.inference import PromptError, parse_prompt

    try:
        _, entity_paths = parse_prompt(prompt)
    except PromptError as err:
        raise UsageError(str(err)) from None
    for entity in entity_paths:  # relative to the working directory, as generation reads them
        if _same_file(Path(out), Path(entity)):
            raise UsageError(f"--out {out} is the entity image {entity} of the prompt; write to another file")
    path = Path(out)
    if path.resolve().is_relative_to(Path(checkpoint).resolve()):
        raise UsageError(f"--out {out} is inside the checkpoint folder {checkpoint}; write outside it")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise UsageError(f"--out {out} exists and is not a file")
        if not force:
            raise UsageError(f"--out {out} exists; pass --force to replace it")


def run(args: argparse.Namespace) -> int:
    print(generate_or_export(generate_request(args)))
    return 0


def generate_or_export(request: GenerateRequest) -> str:
    """Do what `request` asks; return a one-line summary."""
    # torch, transformers and diffusers load only once the arguments are known to be usable (slow imports)
    import torch
    from PIL import Image

    from unimo_g.checkpoint_format import CheckpointError, resolve_checkpoint
    from unimo_g.devices import resolve_device
    from unimo_g.export_format import ExportError, is_export
    from unimo_g.inference import (
        PromptError,
        export_model,
        export_unet,
        generate,
        load_entity_image,
        load_generation_models,
        parse_prompt,
        read_spec,
    )

    try:
        device = resolve_device(request.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"--device: {err}") from None
    try:
        source = request.checkpoint
        checkpoint = Path(source) if is_export(source) else resolve_checkpoint(source)
        if (request.export or request.export_unet) and is_export(checkpoint):
            raise UsageError(f"{checkpoint} is an export already; export a checkpoint")
        if request.export_unet is not None:
            out_dir, weights = export_unet(checkpoint, request.export_unet, request.use_ema)
            return f"exported the {weights} UNet of {checkpoint} to {out_dir}"
        if request.export is not None:
            out_dir, weights = export_model(checkpoint, request.export, request.use_ema, device)
            return f"exported the {weights} weights of {checkpoint} to {out_dir} (diffusers pipeline folder)"
        prompt, paths = parse_prompt(request.prompt)
        images = [load_entity_image(path, read_spec(checkpoint).entity_image) for path in paths]
    except (CheckpointError, ExportError, PromptError, OSError) as err:
        raise UsageError(str(err).strip().splitlines()[0]) from None
    try:
        models = load_generation_models(checkpoint, device, request.use_ema)
    except (CheckpointError, ExportError, OSError) as err:  # e.g. an encoder or VAE the hub or disk does not have
        raise UsageError(str(err).strip().splitlines()[0]) from None
    try:
        pixels = generate(models, prompt, images, request.steps, request.guidance, request.seed, request.resolution)
    except ValueError as err:  # e.g. a resolution the VAE cannot produce, or a prompt the encoder refuses
        raise UsageError(str(err)) from None
    out = Path(request.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(out, format="PNG")
    return f"wrote {out} ({pixels.shape[1]}x{pixels.shape[0]}, {models.weights} weights of {checkpoint})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(PROG, add_arguments, run, argv, first_paragraph(__doc__))


if __name__ == "__main__":
    from unimo_g.quiet_logs import install

    install()  # known third-party noise of the libraries it loads
    sys.exit(main())
