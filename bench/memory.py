"""Does the pipeline's memory grow with the dataset? Peak RSS over N and over FACTOR x N samples.

    python -m bench.memory [--job pipeline|features] [--preset tiny] [--n 100] [--factor 10] [--json FILE]

`--job pipeline` (default) runs the data pipeline on N synthetic image-caption pairs
(`bench.inputs`); `--job features` runs the feature job (`features_runner.py`, the training config
`configs/train_tiny.yaml` unless --config names another) on N prompt-shard rows: the pipeline's
output on the bundled sample, replicated (`bench.train_inputs`).

Each pipeline run (`beam_runner.run`, DirectRunner) is a fresh process (`--child`), so the two peaks
do not mix; the peak is the larger of the sampled RSS of that process and its descendants
(`bench.rss.PeakRss`, covers multi_processing workers) and the kernel's high-water mark of the process
itself (`ru_maxrss`). Reported: both peaks and their ratio (target: at most 1.2).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from bench.inputs import make_inputs
from bench.pipeline import PRESETS, ROOT
from bench.results import write_json
from bench.rss import PeakRss, rusage_peaks

TARGET_RATIO = 1.2
JOBS = ("pipeline", "features")
FEATURES_CONFIG = ROOT / "configs" / "train_tiny.yaml"  # the feature job's default training config


def measure_run(input_dir: Path, output_dir: Path, config_path: Path, overrides: Sequence[str] = (),
                running_mode: str = "in_memory", workers: int = 1, job: str = "pipeline") -> dict:
    """One run of `job` in this process: peak RSS (MiB) and seconds. Call it in a fresh process."""
    from bench.runs import run_beam, run_features  # imports Beam

    with PeakRss() as rss:
        run = run_features if job == "features" else run_beam
        result = run(input_dir, output_dir, config_path, overrides, running_mode, workers)
    own = rusage_peaks()["self_mib"]
    return {**result, "tree_peak_mib": rss.peak_mib, "self_maxrss_mib": own, "peak_mib": max(rss.peak_mib, own)}


def run_child(input_dir: Path, output_dir: Path, config_path: Path, overrides: Sequence[str], running_mode: str,
              workers: int, result: Path, job: str = "pipeline") -> dict:
    """`measure_run` in a fresh `python -m bench.memory --child` process; its record."""
    command = [sys.executable, "-m", "bench.memory", "--child", "--job", job, "--input", str(input_dir), "--output",
               str(output_dir), "--config", str(config_path), "--direct-running-mode", running_mode,
               "--workers", str(workers), "--result", str(result)]
    for override in overrides:
        command += ["--set", override]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(result.read_text(encoding="utf-8"))


def make_job_inputs(job: str, folder: Path, size: int) -> Path:
    """`size` inputs of `job` under `folder`: image-caption pairs, or one prompt shard of `size` rows."""
    if job == "pipeline":
        return make_inputs(folder, size)
    from bench.train_inputs import pipeline_shards, replicate_rows
    from trainers.data import list_shards

    source = list_shards(str(pipeline_shards(Path(tempfile.gettempdir()) / "unimo-g-bench")))
    replicate_rows(source, folder / "shards" / "part-00000.parquet", size)
    return folder


def memory_ratio(workdir: Path, config_path: Path, n: int, factor: int, overrides: Sequence[str] = (),
                 running_mode: str = "in_memory", workers: int = 1, job: str = "pipeline") -> dict:
    """Peak RSS of a run over `n` and over `factor * n` samples, each in a fresh process, and the ratio."""
    runs = {}
    for size in (n, factor * n):
        input_dir = make_job_inputs(job, workdir / f"input-{size}", size)
        print(f"[bench] {job} run over {size} samples ...", file=sys.stderr, flush=True)
        runs[size] = run_child(input_dir, workdir / f"out-{size}", config_path, overrides, running_mode, workers,
                               workdir / f"record-{size}.json", job)
    small, large = runs[n], runs[factor * n]
    return {
        "n": n,
        "factor": factor,
        "runs": {str(size): record for size, record in runs.items()},
        "ratio": large["peak_mib"] / small["peak_mib"],
        "tree_ratio": large["tree_peak_mib"] / small["tree_peak_mib"],
        "target": TARGET_RATIO,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", choices=JOBS, default="pipeline", help="the data pipeline or the feature job")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--config", type=Path, help="a pipeline config instead of the preset's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--direct-running-mode", choices=("in_memory", "multi_processing", "multi_threading"),
                        default="in_memory")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--workdir", type=Path, help="keep inputs and outputs here (default: a temp dir)")
    # one measured run, in the fresh process the parent starts
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    default_config = FEATURES_CONFIG if args.job == "features" else PRESETS[args.preset]
    config_path = (args.config or default_config).resolve()
    if args.child:
        record = measure_run(args.input, args.output, config_path, args.set, args.direct_running_mode, args.workers,
                             args.job)
        write_json(args.result, record)
        return 0
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = memory_ratio(args.workdir.resolve(), config_path, args.n, args.factor, args.set,
                              args.direct_running_mode, args.workers, args.job)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
            report = memory_ratio(Path(folder), config_path, args.n, args.factor, args.set,
                                  args.direct_running_mode, args.workers, args.job)
    report.update({
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python -m bench.memory", *sys.argv[1:]]),
        "job": args.job,
        "preset": args.preset if args.job == "pipeline" else None,
        "config": str(config_path),
        "runner": f"DirectRunner, direct_running_mode={args.direct_running_mode}, direct_num_workers={args.workers}",
    })
    for size, record in report["runs"].items():
        print(f"{size:>6} samples: peak RSS {record['peak_mib']:.0f} MiB (process tree sampled "
              f"{record['tree_peak_mib']:.0f}, ru_maxrss {record['self_maxrss_mib']:.0f}), {record['seconds']:.1f} s")
    verdict = "meets" if report["ratio"] <= TARGET_RATIO else "misses"
    print(f"peak RSS ratio {report['factor']}N / N = {report['ratio']:.3f} ({verdict} the target <= {TARGET_RATIO}); "
          f"{report['runner']}")
    if args.json is not None:
        write_json(args.json, report)
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
