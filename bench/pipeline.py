"""Throughput and peak memory of the Beam pipeline beside two baselines, in one invocation.

    python -m bench.pipeline --quick
    python -m bench.pipeline --preset full --n 8 [--device cuda --dtype bf16 --batch-size 16] [--json FILE]

The same models (one seeded config) and the same N inputs (`bench.inputs`) go through:
- `beam`:  beam_runner.run with the DirectRunner (`--direct-running-mode`, in_memory by default);
- `plain`: the pipeline's batched calls in a plain Python loop (`bench.loops.plain_loop`);
- `one`:   batch-of-one, Grounding DINO per image and SAM per box (`bench.loops.batch_of_one_loop`);
  `--one-sam per_image` encodes each image once and decodes its boxes together instead.
Each run is a fresh process (`bench.runs`); runs are interleaved over `--repeats` and the fastest of
each mode counts. Model loading is excluded from throughput: the loops start with models loaded
(the load is timed); a Beam run loads its own inside the run, so its steady time is its wall time
minus the load seconds measured in the same process (its raw wall time is reported too). The plain
run then counts model FLOPs per image (`bench.flops`). Printed ratios: beam vs one, plain vs one, and
the pipeline's overhead over the plain loop (beam seconds / plain seconds - 1).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import psutil

from bench.flops import peak_flops, utilisation
from bench.inputs import KEEP_NEAR_DUPLICATES, make_inputs
from bench.results import write_json

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"tiny": ROOT / "configs" / "tiny.yaml", "full": ROOT / "configs" / "bench_full.yaml"}
MODES = ("plain", "one", "beam")
QUICK_N = 24
DEFAULT_N = {"tiny": 200, "full": 8}


def runtime_overrides(
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    grounding_batch_size: Optional[int] = None,
    segmentation_batch_size: Optional[int] = None,
) -> list[str]:
    """`--set` overrides of both models' runtime sections (None leaves the config's value)."""
    overrides = []
    for section, batch_size in (("grounding", grounding_batch_size), ("segmentation", segmentation_batch_size)):
        for key, value in (("device", device), ("dtype", dtype), ("batch_size", batch_size)):
            if value is not None:
                overrides.append(f"{section}.runtime.{key}={value}")
    return overrides


def run_in_process(mode: str, input_dir: Path, output_dir: Path, config_path: Path, overrides: Sequence[str],
                   workdir: Path, options: Sequence[str] = ()) -> dict:
    """`python -m bench.runs --mode MODE ...` in a fresh process; its JSON record.

    Raises RuntimeError with the child's output when it fails.
    """
    result = workdir / f"record-{mode}-{output_dir.name}.json"
    command = [sys.executable, "-m", "bench.runs", "--mode", mode, "--input", str(input_dir),
               "--output", str(output_dir), "--config", str(config_path), "--result", str(result), *options]
    for override in overrides:
        command += ["--set", override]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(result.read_text(encoding="utf-8"))


def machine_info(device: str) -> dict:
    """What the figures were measured on (the GPU's name when `device` is cuda)."""
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def model_seconds(record: dict) -> Optional[float]:
    """Seconds a run spent in the two model stages (None when they were not timed)."""
    stages = record.get("stage_seconds")
    if not stages or "ground" not in stages:
        return None
    return stages["ground"] + stages.get("segment", 0.0)


def ratios(best: dict) -> dict:
    """Throughput ratios between the modes present, and Beam's overhead over the plain loop in %."""
    sps = {mode: record["samples_per_s"] for mode, record in best.items()}
    out = {}
    if sps.get("beam") and sps.get("one"):
        out["beam_vs_one"] = sps["beam"] / sps["one"]
    if sps.get("plain") and sps.get("one"):
        out["plain_vs_one"] = sps["plain"] / sps["one"]
    if "beam" in best and "plain" in best:
        out["beam_overhead_pct"] = 100.0 * (best["beam"]["steady_seconds"] / best["plain"]["steady_seconds"] - 1.0)
        out["beam_overhead_raw_pct"] = 100.0 * (best["beam"]["seconds"] / best["plain"]["seconds"] - 1.0)
        out["outputs_agree_beam_plain"] = best["beam"]["output"]["digest"] == best["plain"]["output"]["digest"]
    if "beam" in best and "plain" in best and model_seconds(best["beam"]) is not None:
        plain_rest = best["plain"]["steady_seconds"] - model_seconds(best["plain"])
        beam_rest = best["beam"]["steady_seconds"] - model_seconds(best["beam"])
        out["beam_seconds_outside_models"] = beam_rest
        out["plain_seconds_outside_models"] = plain_rest
        out["beam_overhead_outside_models_pct"] = 100.0 * (beam_rest - plain_rest) / best["plain"]["steady_seconds"]
    if "one" in best and "plain" in best:
        out["outputs_agree_one_plain"] = best["one"]["output"]["digest"] == best["plain"]["output"]["digest"]
    return out


def _with_utilisation(best: dict, flops: Optional[dict], peak: Optional[float]) -> None:
    for record in best.values():
        sps = record["samples_per_s"]
        per_image = flops["total_per_image"] if flops else None
        record["model_tflops_per_s"] = per_image * sps / 1e12 if per_image and sps else None
        record["mfu"] = utilisation(per_image, sps, peak) if per_image and sps else None


def benchmark(args, config_path: Path, overrides: list[str], workdir: Path) -> dict:
    """Write the inputs, run every mode `args.repeats` times (interleaved, fresh processes), count FLOPs."""
    from unimo_g.config_tools import load_config
    from unimo_g.pipeline_config import PipelineConfig

    config = load_config(PipelineConfig, config_path, overrides)  # fail here on a bad config
    input_dir = make_inputs(workdir / "input", args.n)
    options = ["--one-sam", args.one_sam, "--direct-running-mode", args.direct_running_mode,
               "--workers", str(args.workers), "--warmup-images", str(args.warmup_images),
               "--flops-images", str(args.flops_images)]
    if args.threads is not None:
        options += ["--threads", str(args.threads)]
    runs: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for repeat in range(args.repeats):
        for mode in args.modes:
            print(f"[bench] {mode} run {repeat + 1}/{args.repeats} on {args.n} samples ...",
                  file=sys.stderr, flush=True)
            out = workdir / "out" / f"{mode}-{repeat}"
            runs[mode].append(run_in_process(mode, input_dir, out, config_path, overrides, workdir, options))
    flops = next((r["flops"] for r in runs.get("plain", []) if r.get("flops")), None)
    if flops is None and args.flops_images > 0:
        print(f"[bench] counting FLOPs on {args.flops_images} images ...", file=sys.stderr, flush=True)
        flops = run_in_process("flops", input_dir, workdir / "out" / "flops", config_path, overrides, workdir,
                               options)["flops"]
    best = {mode: min(records, key=lambda r: r["steady_seconds"]) for mode, records in runs.items()}
    device, dtype = config.grounding.runtime.device, config.grounding.runtime.dtype
    peak = _peak(device, dtype)
    _with_utilisation(best, flops, peak)
    return {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python -m bench.pipeline", *sys.argv[1:]]),
        "machine": machine_info(device),
        "preset": args.preset,
        "config": str(config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path),
        "overrides": overrides,
        "n": args.n,
        "dtype": dtype,
        "batch_sizes": {"grounding": config.grounding.runtime.batch_size,
                        "segmentation": config.segmentation.runtime.batch_size},
        "one_sam": args.one_sam,
        "runner": f"DirectRunner, direct_running_mode={args.direct_running_mode}, direct_num_workers={args.workers}",
        "repeats": args.repeats,
        "warmup_images": args.warmup_images,
        "threads": args.threads,
        "flops": flops,
        "peak_flops": peak,
        "runs": runs,
        "best": best,
        "ratios": ratios(best),
    }


def _batch_summary(record: dict) -> str:
    sizes = record.get("batch_sizes") or {}
    return ", ".join(f"{stage} {len(s)} calls (mean {sum(s) / len(s):.1f})" for stage, s in sizes.items() if s)


def _peak(device: str, dtype: str) -> Optional[float]:
    import torch

    from unimo_g.devices import torch_dtype

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    return peak_flops(torch.device(device), torch_dtype(dtype))


def _fmt(value, spec: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def format_report(report: dict) -> str:
    """A human-readable table of `benchmark`'s report."""
    lines = [
        f"preset {report['preset']} ({report['config']}), n={report['n']}, dtype {report['dtype']}, "
        f"device {report['machine']['device']}, batch sizes {report['batch_sizes']}, {report['runner']}, "
        f"best of {report['repeats']}, torch threads {report['threads'] or report['machine']['torch_threads']}",
    ]
    flops = report["flops"]
    if flops:
        lines.append(
            f"model GFLOPs per image: grounding {flops['grounding_per_image'] / 1e9:.1f}, SAM "
            f"{flops['sam_per_image'] / 1e9:.1f} (encoder {flops['sam_encoder_per_image'] / 1e9:.1f}/image, "
            f"prompt+decoder {flops['sam_decoder_per_box'] / 1e9:.2f}/box), total {flops['total_per_image'] / 1e9:.1f} "
            f"({flops['boxes']} boxes on {flops['images']} images)"
        )
    lines.append(
        f"{'mode':<6} {'samples/s':>10} {'steady s':>9} {'raw s':>8} {'load s':>7} {'rows':>5} {'entities':>8} "
        f"{'peak RSS MiB':>13} {'TFLOP/s':>8} {'MFU':>6}"
    )
    for mode, record in report["best"].items():
        mfu = _fmt(record.get("mfu") and record["mfu"] * 100, ".1f")
        lines.append(
            f"{mode:<6} {record['samples_per_s']:>10.3f} {record['steady_seconds']:>9.2f} {record['seconds']:>8.2f} "
            f"{sum(record['load_seconds'].values()):>7.1f} {record['output']['rows']:>5} "
            f"{record['output']['entities']:>8} {record['peak_rss_mib']:>13.0f} "
            f"{_fmt(record.get('model_tflops_per_s'), '.3f'):>8} {mfu + ('%' if mfu != 'n/a' else ''):>6}"
        )
    for mode, record in report["best"].items():
        if record.get("batch_sizes"):
            lines.append(f"{mode} model calls: {_batch_summary(record)}")
    r = report["ratios"]
    if "beam_vs_one" in r:
        lines.append(f"beam vs batch-of-one ({report['one_sam']}): {r['beam_vs_one']:.2f}x")
    if "plain_vs_one" in r:
        lines.append(f"plain batched loop vs batch-of-one ({report['one_sam']}): {r['plain_vs_one']:.2f}x")
    if "beam_overhead_pct" in r:
        lines.append(
            f"beam overhead over the plain batched loop: {r['beam_overhead_pct']:+.1f}% "
            f"(raw, Beam's model loading included: {r['beam_overhead_raw_pct']:+.1f}%); "
            f"same rows as the plain loop: {r['outputs_agree_beam_plain']}"
        )
    if "beam_overhead_outside_models_pct" in r:
        lines.append(
            f"seconds outside the model calls: beam {r['beam_seconds_outside_models']:.2f}, plain "
            f"{r['plain_seconds_outside_models']:.2f}: Beam's own overhead "
            f"{r['beam_overhead_outside_models_pct']:+.1f}% of the plain loop's time "
            "(insensitive to model-compute noise)"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--config", type=Path, help="a pipeline config instead of the preset's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--n", type=int, help=f"samples (default: {DEFAULT_N})")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny preset, n={QUICK_N}, one torch thread: under a minute on 2 cores")
    parser.add_argument("--device", help="cpu, cuda or cuda:N for both models")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--batch-size", type=int, help="both models' batch size")
    parser.add_argument("--grounding-batch-size", type=int)
    parser.add_argument("--sam-batch-size", type=int)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--one-sam", choices=("per_box", "per_image"), default="per_box",
                        help="batch-of-one SAM calls: one per box (default) or one per image")
    parser.add_argument("--direct-running-mode", choices=("in_memory", "multi_processing", "multi_threading"),
                        default="in_memory")
    parser.add_argument("--workers", type=int, default=1, help="DirectRunner workers (--direct_num_workers)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode, interleaved; the fastest counts")
    parser.add_argument("--warmup-images", type=int, default=1,
                        help="images through both models before each timed run (0: none)")
    parser.add_argument("--flops-images", type=int, default=2, help="images the FLOP count runs on (0: skip)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads in every run (default: torch's, "
                        "one per core)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--workdir", type=Path, help="keep inputs and outputs here (default: a temp dir)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:  # one torch thread: tiny models' small ops are slowed many times by shared cores
        args.preset, args.n = "tiny", args.n or QUICK_N
        args.threads = 1 if args.threads is None else args.threads
    args.n = args.n or DEFAULT_N[args.preset]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown or not args.modes:
        print(f"bench.pipeline: error: --modes must name some of {MODES}, got {unknown or args.modes}", file=sys.stderr)
        return 2
    config_path = (args.config or PRESETS[args.preset]).resolve()
    overrides = [*KEEP_NEAR_DUPLICATES, *runtime_overrides(
        args.device, args.dtype, args.grounding_batch_size or args.batch_size, args.sam_batch_size or args.batch_size
    ), *args.set]
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = benchmark(args, config_path, overrides, args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder:
            report = benchmark(args, config_path, overrides, Path(folder))
    print(format_report(report))
    if args.json is not None:
        write_json(args.json, report)
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
