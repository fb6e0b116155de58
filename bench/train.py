"""Training throughput of the real trainer beside a plain UNet loop, in one invocation.

    python -m bench.train --quick
    python -m bench.train [--preset tiny|sd15] [--steps N] [--batch-size B] [--resolution R]
        [--device cpu|cuda] [--dtype fp32|bf16] [--encoder auto|preset|tiny|random-full] [--stages 1 2]
        [--warmup N] [--num-workers W] [--threads T] [--peak-tflops P] [--data DIR] [--set KEY=VALUE ...]
        [--json FILE] [--flops-only]

For each stage (1: ε-MSE; 2: ε-MSE + λ·L_attn with cross-attention capture, λ > 0), in this order:
- `loader`:  `trainers.data.make_loader` over the stage's `ShardStream`, no model: samples/s alone;
- `trainer`: `trainers.step.train_step` on a `TrainState` built as `trainers.train` builds it
  (frozen encoder + VAE, denoiser, AdamW, LR schedule, EMA), fed by `trainers.train.BatchFeed`,
  timed over --steps after --warmup untimed steps, with the time spent waiting for batches.
  Then the frozen encoder and the VAE encode are timed alone on the same batches: their share of
  the step is the most that pre-computed conditions and latents could save;
- `features` (stage 1, unless --no-features): the trainer again, on pre-computed VAE posteriors
  and caption encodings of the same rows (`bench.train_features`, the feature job's functions run
  with the benchmarked encoder and VAE); its state holds neither, as for a feature run. Its
  loader alone too;
- `plain`:   the same UNet (size, cross-attention width, mixed precision, AdamW settings) in a bare
  loop: forward + ε-MSE + backward + AdamW on pre-made random latents and conditions (of the
  stage's mean length), nothing else. trainer / plain shows the trainer's overhead.
The first warm-up step of `trainer` and `plain` runs under FlopCounterMode (`bench.train_flops`):
FLOP/s, and MFU against --peak-tflops (default 989, H100 SXM dense bf16, on CUDA with bf16;
FLOP/s only otherwise). `--flops-only` times nothing: it counts the model FLOPs per image of each
stage at the chosen size on the meta device (for sd15: LLaVA-1.5-7B, SD-1.5 UNet and VAE).

Input: prompt shards the pipeline makes from the bundled sample (`bench.train_inputs`), or --data,
replicated to the rows the run needs. Models carry random weights (the same compute as trained
ones). `--encoder`: `preset` builds the YAML's encoder (LLaVA-1.5-7B for sd15: its weights must be
on disk); `random-full` the LLaVA-1.5-7B layout with random weights on the device; `tiny` the
32-wide random LLaVA behind a projection to the UNet's cross-attention width. `auto`: the preset's
for tiny, `tiny` for sd15 on CPU, `random-full` for sd15 on CUDA. A pretrained VAE named by the
preset is replaced by the random one of its layout.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from bench.results import write_json
from bench.train_features import write_feature_run
from bench.train_flops import (
    LLAVA_7B_TEXT,
    build_random_llava,
    count_flops,
    full_encoder_flops,
    unet_train_flops,
    vae_encode_flops,
)
from bench.train_inputs import pipeline_shards, replicate_rows, rows_needed
from bench.train_loops import (
    release,
    time_frozen,
    time_loader,
    time_plain,
    time_trainer,
)
from trainers import train
from trainers.data import list_shards, make_loader
from trainers.distributed import DistInfo, setup_distributed
from unimo_g.models.encoder import build_encoder
from unimo_g.models.vae import vae_scale_factor

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"tiny": ROOT / "configs" / "train_tiny.yaml", "sd15": ROOT / "configs" / "train_sd15.yaml"}
PRESET_VAE = {"tiny": "tiny", "sd15": "sd15"}  # random-weight VAE of each preset's layout
ENCODERS = ("auto", "preset", "tiny", "random-full")
QUICK = {"preset": "tiny", "steps": 12, "warmup": 2, "batch_size": 4, "threads": 1}
PEAK_TFLOPS_CUDA_BF16 = 989.0  # H100 SXM, dense bf16 tensor cores (vendor spec sheet)


@dataclass
class BenchOptions:
    preset: str = "tiny"
    stages: tuple[int, ...] = (1, 2)
    steps: int = 10
    warmup: Optional[int] = None  # None: 1 on CPU, 3 on CUDA
    batch_size: Optional[int] = None  # None: the preset's
    resolution: Optional[int] = None  # None: the preset's
    device: str = "cpu"
    dtype: str = "fp32"
    encoder: str = "auto"
    num_workers: Optional[int] = None  # None: the preset's
    threads: Optional[int] = None  # torch CPU threads; None: torch's default
    flops_only: bool = False
    features: bool = True  # stage 1 also runs the trainer on pre-computed features
    peak_tflops: Optional[float] = None
    data: Optional[str] = None
    cache_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "unimo-g-bench")
    overrides: tuple[str, ...] = ()

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.steps < 1 or (self.warmup is not None and self.warmup < 1):
            raise ValueError(f"steps and warmup must be >= 1 (the first warm-up step counts FLOPs), got {self}")
        if not self.stages or set(self.stages) - {1, 2}:
            raise ValueError(f"stages must be a non-empty subset of 1 2, got {self.stages}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else (3 if self.device == "cuda" else 1)

    def encoder_kind(self) -> str:
        if self.encoder != "auto":
            return self.encoder
        if self.preset == "tiny":
            return "preset"
        return "random-full" if self.device == "cuda" else "tiny"

    def peak_flops(self) -> Optional[float]:
        """Peak FLOP/s for MFU; None prints FLOP/s only."""
        if self.peak_tflops is not None:
            return self.peak_tflops * 1e12
        return PEAK_TFLOPS_CUDA_BF16 * 1e12 if self.device == "cuda" and self.dtype == "bf16" else None


def bench_request(options: BenchOptions, stage: int, data: str) -> train.TrainRequest:
    """The `trainers.train` request of the benchmarked run: the preset plus the options' overrides."""
    # One process, one GPU: "cuda:0", as trainers.distributed.setup_distributed passes a bare "cuda"
    # to torch.cuda.set_device, which refuses a device without an index.
    sets = [
        f"device={'cuda:0' if options.device == 'cuda' else options.device}",
        f"mixed_precision={options.dtype}",
        f"denoiser.vae={PRESET_VAE[options.preset]}",
        "denoiser.init_from=null",
    ]
    if options.batch_size is not None:
        sets.append(f"batch_size={options.batch_size}")
    if options.resolution is not None:
        sets.append(f"data.resolution={options.resolution}")
    if options.num_workers is not None:
        sets.append(f"data.num_workers={options.num_workers}")
    if options.encoder_kind() == "tiny":
        sets += ["encoder.model=tiny", "encoder.dtype=fp32", "encoder.revision=null", "encoder.image_size=null"]
    return train.TrainRequest(config=str(PRESETS[options.preset]), stage=stage, data=data, output="unused",
                              overrides=(*sets, *options.overrides))


# ---------------------------------------------------------------------------------------------
# One stage


def bench_stage(options: BenchOptions, stage: int, data: str) -> dict:
    """Loader alone, trainer, frozen parts and plain loop of one stage (see the module docstring)."""
    request = bench_request(options, stage, data)
    config = train.load_train_config(request)
    dist = setup_distributed(config.device)
    warmup = options.warmup_steps
    loader = time_loader(
        train.build_stream(data, config, stage, dist),
        config.batch_size,
        (warmup + options.steps) * config.optim.grad_accum,
    )

    random_full = options.encoder_kind() == "random-full"
    encoder = build_random_llava(config.encoder, dist.device) if random_full else None
    state = train.build_state(request, config, dist, encoder)
    del encoder  # the state holds it
    if stage == 2 and state.store is None:
        raise ValueError("stage 2 is benchmarked with the attention loss on: lambda_attn must be > 0")
    feed = train.BatchFeed(train.build_stream(data, config, stage, dist), config.batch_size)
    trainer, kept = time_trainer(state, feed, options.steps, warmup)
    frozen = time_frozen(state, kept)
    full_encoder = full_encoder_flops(kept, config.encoder.max_length) if options.preset == "sd15" else None
    side = config.data.resolution // vae_scale_factor(state.vae)
    latent_shape = (config.batch_size, state.vae.config.latent_channels, side, side)
    cross_dim = state.denoiser.unet.config.cross_attention_dim
    encoder_width = state.encoder.hidden_size
    feature_dir = None
    if stage == 1 and options.features:
        shards = list_shards(data)
        feature_dir = str(write_feature_run(state, shards, Path(data).parent / "features-run", config.batch_size))
    del state, feed, kept
    release(dist.device)

    features = None
    if feature_dir is not None:
        features = bench_features(request, config, dist, feature_dir, options.steps, warmup)
        release(dist.device)

    cond_tokens = round(frozen["cond_tokens"])
    plain = time_plain(config, cross_dim, dist.device, latent_shape, cond_tokens, options.steps, warmup)
    release(dist.device)
    return {
        "stage": stage,
        "lambda_attn": config.lambda_attn if stage == 2 else 0.0,
        "batch_size": config.batch_size,
        "grad_accum": config.optim.grad_accum,
        "resolution": config.data.resolution,
        "latent_shape": list(latent_shape),
        "encoder_width": encoder_width,
        "cross_attention_dim": cross_dim,
        "loader": loader,
        "trainer": trainer,
        "frozen": frozen,
        "plain": plain,
        "features": features,
        "full_encoder_flops": full_encoder,
    }


def bench_features(request: train.TrainRequest, config, dist: DistInfo, feature_dir: str, steps: int,
                   warmup: int) -> dict:
    """The loader alone and the trainer on the pre-computed features of `feature_dir` (stage 1):
    the state holds neither the encoder nor the VAE, as `trainers.train` builds it for a feature run."""
    loader = time_loader(train.build_stream(feature_dir, config, 1, dist), config.batch_size,
                         (warmup + steps) * config.optim.grad_accum)
    stream = train.build_stream(feature_dir, config, 1, dist)
    state = train.build_state(request, config, dist, features=train.open_features(stream, config, feature_dir))
    trainer, _ = time_trainer(state, train.BatchFeed(stream, config.batch_size), steps, warmup)
    del state, stream
    return {"loader": loader, "trainer": trainer}


def flop_budget(options: BenchOptions, stage: int, data: str) -> dict:
    """Model FLOPs per image of one stage's trainer step at the options' size, nothing timed: the
    encoder on `--steps` real batches of the stage (sd15: LLaVA-1.5-7B by `full_encoder_flops`;
    otherwise the preset's encoder run on the CPU), the UNet forward + backward at the encoder's
    mean padded length and the VAE encode on the meta device."""
    config = train.load_train_config(bench_request(options, stage, data))
    stream = train.build_stream(data, config, stage, DistInfo(0, 1, 0, torch.device("cpu")))
    iterator = iter(make_loader(stream, config.batch_size))
    batches = [next(iterator) for _ in range(options.steps)]
    del iterator
    full = None
    if options.preset == "sd15":
        full = full_encoder_flops(batches, config.encoder.max_length)
        encoder_flops, tokens = full["per_sample_padded"], full["padded_tokens_per_sample"]
        width = LLAVA_7B_TEXT["hidden_size"]
    else:
        encoder = build_encoder(config.encoder, torch.device("cpu"))
        counted = [count_flops(encoder, batch.prompts, batch.entity_images) for batch in batches]
        samples = sum(len(batch.ids) for batch in batches)
        encoder_flops = sum(flops for flops, _ in counted) / samples
        tokens = sum(out.hidden.shape[0] * out.hidden.shape[1] for _, out in counted) / samples
        width = encoder.hidden_size
    vae_flops, latent_shape = vae_encode_flops(PRESET_VAE[options.preset], config.data.resolution)
    unet_flops = unet_train_flops(
        config.denoiser.size, config.denoiser.cross_attention_dim or width, latent_shape, round(tokens)
    )
    total = unet_flops + vae_flops + encoder_flops
    return {
        "stage": stage,
        "resolution": config.data.resolution,
        "batch_size": config.batch_size,
        "cond_tokens": tokens,
        "unet_train_flops": unet_flops,
        "vae_encode_flops": vae_flops,
        "encoder_flops": encoder_flops,
        "total_flops": total,
        "frozen_share": (vae_flops + encoder_flops) / total,
        "encoder_detail": full,
    }


def derive(stage: dict, peak: Optional[float]) -> dict:
    """Ratios, FLOP/s and MFU of one stage's measurements."""
    trainer, plain, frozen, loader = stage["trainer"], stage["plain"], stage["frozen"], stage["loader"]
    accum = stage["grad_accum"]
    per_image = plain["flops_per_step"] / stage["batch_size"]  # UNet training FLOPs per image
    out = {
        "trainer_over_plain": trainer["images_per_s"] / plain["images_per_s"],
        "trainer_over_plain_median": plain["median_step_s"] / trainer["median_step_s"] * accum,
        "loader_over_trainer": loader["samples_per_s"] / trainer["images_per_s"],
        "frozen_share": (frozen["encoder_s"] + frozen["vae_s"]) * accum / trainer["step_s"],
        "encoder_share": frozen["encoder_s"] * accum / trainer["step_s"],
        "vae_share": frozen["vae_s"] * accum / trainer["step_s"],
        "unet_flops_per_image": per_image,
        "plain_flops_per_s": plain["flops_per_step"] / plain["step_s"],
        "trainer_unet_flops_per_s": per_image * trainer["images_per_s"],
        "trainer_counted_flops_per_s": trainer["flops_per_step"] / trainer["step_s"],
        "trainer_counted_flops_per_image": trainer["flops_per_step"] * trainer["steps"] / trainer["images"],
    }
    features = stage["features"]
    if features is not None:
        out["features_over_trainer"] = features["trainer"]["images_per_s"] / trainer["images_per_s"]
        out["features_over_plain"] = features["trainer"]["images_per_s"] / plain["images_per_s"]
        out["features_unet_flops_per_s"] = per_image * features["trainer"]["images_per_s"]
        out["features_loader_over_trainer"] = features["loader"]["samples_per_s"] / features["trainer"]["images_per_s"]
    if stage["full_encoder_flops"] is not None:
        out["full_encoder_over_unet"] = stage["full_encoder_flops"]["per_sample_padded"] / per_image
    if peak is not None:
        out["plain_mfu"] = out["plain_flops_per_s"] / peak
        out["trainer_mfu"] = out["trainer_unet_flops_per_s"] / peak
        if features is not None:
            out["features_mfu"] = out["features_unet_flops_per_s"] / peak
    return out


# ---------------------------------------------------------------------------------------------
# The run


def machine() -> dict:
    info = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_bench(options: BenchOptions, work_dir: Path) -> dict:
    """Every stage of `options` (or its FLOP budget with `flops_only`); shards go under `work_dir`."""
    source = list_shards(options.data if options.data is not None else str(pipeline_shards(options.cache_dir)))
    probe = train.load_train_config(bench_request(options, options.stages[0], "unused"))
    batches = (options.warmup_steps + options.steps) * probe.optim.grad_accum
    rows = rows_needed(batches, probe.batch_size, probe.data.num_workers)
    # Row groups of one batch each: the stream deals whole row groups to its units, so every unit
    # gets the batches `rows_needed` counts on.
    replicate_rows(source, Path(work_dir) / "shards" / "part-00000.parquet", rows, row_group_rows=probe.batch_size)
    data = str(work_dir)
    result = {
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()},
        "encoder_kind": options.encoder_kind(),
        "warmup": options.warmup_steps,
        "rows": rows,
        "machine": machine(),
        "peak_flops": options.peak_flops(),
    }
    if options.flops_only:
        result["budget"] = [flop_budget(options, stage, data) for stage in options.stages]
        return result
    result["stages"] = []
    for stage in options.stages:
        load_before = os.getloadavg()[0]
        measured = bench_stage(options, stage, data)
        measured["load_average"] = [load_before, os.getloadavg()[0]]  # 1-minute, before and after the stage
        measured["derived"] = derive(measured, options.peak_flops())
        result["stages"].append(measured)
    result["max_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return result


# ---------------------------------------------------------------------------------------------
# Report


def _flops(value: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} "


def format_budget(result: dict) -> str:
    lines = [
        f"bench.train --flops-only  preset {result['options']['preset']}: model FLOPs per image "
        "(matrix products, convolutions, attention), counted without running the models"
    ]
    for b in result["budget"]:
        detail = b["encoder_detail"]
        unpadded = f" ({_flops(detail['per_sample_unpadded'])}FLOP unpadded)" if detail else ""
        lines.append(
            f"stage {b['stage']} at {b['resolution']} px, batch {b['batch_size']}: UNet training "
            f"{_flops(b['unet_train_flops'])}FLOP ({b['cond_tokens']:.0f} cond tokens) + VAE encode "
            f"{_flops(b['vae_encode_flops'])}FLOP + encoder {_flops(b['encoder_flops'])}FLOP{unpadded} = "
            f"{_flops(b['total_flops'])}FLOP; frozen encoder + VAE {b['frozen_share']:.1%} of it: "
            "the FLOPs pre-computed conditions and latents would save"
        )
    return "\n".join(lines)


def _stage_lines(stage: dict, peak: Optional[float], cpus: int) -> list[str]:
    t, p, f, ld, d = stage["trainer"], stage["plain"], stage["frozen"], stage["loader"], stage["derived"]

    def extras(timing: dict, mfu_key: str) -> str:
        mfu = f", MFU {d[mfu_key]:.1%} of {_flops(peak)}FLOP/s" if peak else ""
        return mfu + (f"; peak {timing['peak_gib']:.1f} GiB" if timing["peak_gib"] is not None else "")

    title = f"stage {stage['stage']}"
    if stage["stage"] == 2:
        title += f" (lambda_attn {stage['lambda_attn']}, attention capture on)"
    load = stage["load_average"]
    lines = [
        f"{title}; 1-min load average {load[0]:.1f} -> {load[1]:.1f} on {cpus} CPUs",
        f"  trainer  {t['images_per_s']:9.2f} img/s  {t['step_s']:.3f} s/step, waiting for data "
        f"{t['data_wait_share']:.1%}; UNet {_flops(d['trainer_unet_flops_per_s'])}FLOP/s{extras(t, 'trainer_mfu')}",
        f"  plain    {p['images_per_s']:9.2f} img/s  {p['step_s']:.3f} s/step, {_flops(p['flops_per_step'])}FLOP/step"
        f" ({p['cond_tokens']} cond tokens) -> {_flops(d['plain_flops_per_s'])}FLOP/s{extras(p, 'plain_mfu')}",
        f"  trainer / plain = {d['trainer_over_plain']:.2f} ({d['trainer_over_plain_median']:.2f} from median "
        f"steps: trainer {t['median_step_s']:.3f} s, plain {p['median_step_s']:.3f} s)",
        f"  loader   {ld['samples_per_s']:9.2f} samples/s alone ({ld['workers']} workers, first batch after "
        f"{ld['startup_s']:.2f} s) = {d['loader_over_trainer']:.1f}x the trainer's images/s",
        f"  frozen   encoder {f['encoder_s']:.4f} s + VAE encode {f['vae_s']:.4f} s per micro-batch = "
        f"{d['frozen_share']:.1%} of the trainer step (encoder {d['encoder_share']:.1%}, VAE {d['vae_share']:.1%}): "
        "the most pre-computed conditions and latents could save"
        + (f"; EMA {f['ema_s']:.4f} s/update" if f["ema_s"] is not None else "; EMA off"),
        f"  counted  trainer step {_flops(t['flops_per_step'])}FLOP = {_flops(d['trainer_counted_flops_per_image'])}"
        f"FLOP/image: UNet training {_flops(d['unet_flops_per_image'])}FLOP + VAE encode "
        f"{_flops(f['vae_flops_per_image'])}FLOP + encoder {_flops(f['encoder_flops_per_sample'])}FLOP; "
        f"{f['cond_tokens']:.0f} cond tokens, {f['entity_images_per_sample']:.2f} entity images/sample",
    ]
    features = stage["features"]
    if features is not None:
        ft, fl = features["trainer"], features["loader"]
        lines.append(
            f"  features {ft['images_per_s']:9.2f} img/s  {ft['step_s']:.3f} s/step, waiting for data "
            f"{ft['data_wait_share']:.1%}: the trainer on pre-computed latents and conditions (no encoder, no VAE) = "
            f"{d['features_over_trainer']:.2f}x the trainer on images, {d['features_over_plain']:.2f}x plain; UNet "
            f"{_flops(d['features_unet_flops_per_s'])}FLOP/s{extras(ft, 'features_mfu')}; its loader "
            f"{fl['samples_per_s']:.1f} samples/s alone = {d['features_loader_over_trainer']:.1f}x"
        )
    full = stage["full_encoder_flops"]
    if full is not None:
        lines.append(
            f"  LLaVA-1.5-7B encoder on these batches (meta device): {_flops(full['per_sample_padded'])}FLOP/sample "
            f"as batched ({_flops(full['per_sample_unpadded'])}FLOP unpadded; {full['tokens_per_sample']:.0f} "
            f"tokens, {full['images_per_sample']:.2f} images of {_flops(full['vision_per_image'])}FLOP) = "
            f"{d['full_encoder_over_unet']:.2f}x the UNet training FLOPs per image at {stage['resolution']} px"
        )
    return lines


def format_report(result: dict) -> str:
    if "budget" in result:
        return format_budget(result)
    options, first, host = result["options"], result["stages"][0], result["machine"]
    lines = [
        f"bench.train  preset {options['preset']}, {options['device']} {options['dtype']}, encoder "
        f"{result['encoder_kind']}, batch {first['batch_size']} x accum {first['grad_accum']}, resolution "
        f"{first['resolution']} (latents {first['latent_shape'][1:]}), {options['steps']} timed steps after "
        f"{result['warmup']} warm-up; {host['cpus']} CPUs, {host['torch_threads']} torch threads"
        + (f", {host['gpu']}" if "gpu" in host else "")
    ]
    for stage in result["stages"]:
        lines += _stage_lines(stage, result["peak_flops"], host["cpus"])
    lines.append(f"max RSS {result['max_rss_gib']:.1f} GiB")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[BenchOptions, Optional[Path]]:
    """The options, and the --json path (None: print only)."""
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="tiny (default) or sd15")
    parser.add_argument("--stages", type=int, nargs="+", choices=(1, 2), default=[1, 2])
    parser.add_argument("--steps", type=int, help="timed steps per loop (default 10)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 1 on cpu, 3 on cuda)")
    parser.add_argument("--batch-size", type=int, help="micro-batch (default: the preset's)")
    parser.add_argument("--resolution", type=int, help="image side (default: the preset's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="the trainer's mixed precision")
    parser.add_argument("--encoder", choices=ENCODERS, default="auto")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers (default: the preset's)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 with --quick)")
    parser.add_argument("--peak-tflops", type=float, help="peak for MFU (default 989 on cuda bf16)")
    parser.add_argument("--data", help="prompt shards to replicate (default: the pipeline's on data/sample)")
    parser.add_argument("--cache-dir", type=Path, help="where the default shards are cached")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training config override")
    parser.add_argument("--flops-only", action="store_true", help="count model FLOPs per image; time nothing")
    parser.add_argument("--no-features", dest="features", action="store_false",
                        help="skip the stage-1 run on pre-computed features")
    parser.add_argument("--json", type=Path, help="write the full result here")
    parser.add_argument("--quick", action="store_true", help="tiny preset, 12 steps, 1 thread (< 1 min on 2 cores)")
    args = parser.parse_args(argv)
    given = {
        name: getattr(args, name)
        for name in ("preset", "steps", "warmup", "batch_size", "threads", "cache_dir")
        if getattr(args, name) is not None
    }
    if args.quick:
        if args.preset not in (None, "tiny"):
            parser.error("--quick runs the tiny preset")
        given = {**QUICK, **given}
    options = BenchOptions(
        stages=tuple(args.stages),
        resolution=args.resolution,
        device=args.device,
        dtype=args.dtype,
        encoder=args.encoder,
        num_workers=args.num_workers,
        flops_only=args.flops_only,
        features=args.features,
        peak_tflops=args.peak_tflops,
        data=args.data,
        overrides=tuple(args.set),
        **given,
    )
    return options, args.json


def main(argv: Optional[Sequence[str]] = None) -> int:
    options, json_path = parse_args(argv)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as work_dir:
        result = run_bench(options, Path(work_dir))
    result["command"] = " ".join(["python -m bench.train", *(sys.argv[1:] if argv is None else argv)])
    print(format_report(result))
    if json_path is not None:
        write_json(json_path, result)
        print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
