"""Throughput of the build on a distributed engine against the DirectRunner, on the same input.

    python -m bench.engines [--engine portable|spark|flink] [--n 200] [--repeats 3]
        [--config configs/tiny.yaml] [--set key=value ...] [--json FILE]

Writes N image-caption pairs (`bench.inputs.make_inputs`, near-duplicate rejection off so every input
becomes a row), runs the build on them with the DirectRunner, then on the engine, each as its own
`python -m unimo_g_cli build` process, the way users run it. The engine's processes are started
first and are not timed (tests/cluster/engines.py: a Beam job service and SDK worker pool for
`portable`; a Spark standalone master and two workers, or a Flink session cluster, with Beam's job
server jar and the worker pool). Times are the runs' own `wall_time_s` in their manifests (graph
construction to the manifest) and the process wall times; the runs alternate (direct, engine, direct,
...) `--repeats` times each, so a load that comes and goes on a shared machine falls on both. Prints the
median inputs/s of both and their ratio, engine over direct.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

from bench.inputs import KEEP_NEAR_DUPLICATES, make_inputs
from bench.results import write_json
from tests.cluster import distributions
from tests.cluster.beam_services import deployment
from tests.cluster.engines import flink_session, spark_standalone
from tests.cluster.jobs import build_command, build_env
from tests.run_outputs import ROOT

ENGINES = ("portable", "spark", "flink")


def timed_build(inputs: Path, out: Path, flags: Sequence[str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run(build_command(inputs, out, "--progress-interval", "0", *flags), env=build_env(), cwd=ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    process_s = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"build exited {done.returncode}: {(done.stdout + done.stderr)[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    return {"run_s": round(manifest["wall_time_s"], 2), "process_s": round(process_s, 2),
            "rows": manifest["counts"]["rows"], "rejects": manifest["counts"]["rejects"]}


@contextlib.contextmanager
def engine_flags(engine: str, folder: Path) -> Iterator[list[str]]:
    """The build's flags for `engine`, with its processes running for the block's duration."""
    with deployment(folder / "beam", job_service=engine == "portable") as deployed:
        workers = deployed.pool.environment_flags()
        if engine == "portable":
            yield ["--runner=PortableRunner", f"--job_endpoint={deployed.job_endpoint}", *workers]
        elif engine == "spark":
            jar = distributions.job_server_jar("spark")
            with spark_standalone(folder / "spark") as spark:
                yield ["--runner=SparkRunner", f"--spark_master_url={spark.master_url}",
                       f"--spark_job_server_jar={jar}", *workers]
        else:
            jar = distributions.job_server_jar("flink")
            with flink_session(folder / "flink") as flink:
                yield ["--runner=FlinkRunner", f"--flink_master={flink.rest_url}",
                       f"--flink_version={distributions.FLINK_JOB_SERVER_MINOR}", f"--flink_job_server_jar={jar}",
                       *workers]


def compare(workdir: Path, engine: str, n: int, repeats: int, config: str, overrides: Sequence[str]) -> dict:
    inputs = make_inputs(workdir / "input", n)
    common = ["--config", config, "--overwrite"]
    for override in (*KEEP_NEAR_DUPLICATES, *overrides):
        common += ["--set", override]
    runs: dict[str, list[dict]] = {"direct": [], engine: []}
    with engine_flags(engine, workdir) as flags:
        for _ in range(repeats):
            runs["direct"].append(timed_build(inputs, workdir / "direct", [*common, "--runner=DirectRunner"]))
            runs[engine].append(timed_build(inputs, workdir / engine, [*common, *flags]))
    written = {name: {(run["rows"], run["rejects"]) for run in done} for name, done in runs.items()}
    if len(written["direct"] | written[engine]) != 1:
        raise RuntimeError(f"the runs wrote different counts: {written}")
    median = {name: statistics.median(run["run_s"] for run in done) for name, done in runs.items()}
    return {"engine": engine, "n": n, "repeats": repeats, "config": config, "runs": runs,
            "direct_inputs_per_s": round(n / median["direct"], 2),
            f"{engine}_inputs_per_s": round(n / median[engine], 2),
            "ratio_engine_over_direct": round(median["direct"] / median[engine], 3)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=ENGINES, default="portable")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_engines_") as workdir:
        result = compare(Path(workdir), args.engine, args.n, args.repeats, args.config, args.overrides)
    seconds = {name: [run["run_s"] for run in done] for name, done in result["runs"].items()}
    print(f"{args.n} inputs, {Path(args.config).name}, median of {args.repeats}: DirectRunner "
          f"{result['direct_inputs_per_s']} inputs/s {seconds['direct']} s; {args.engine} "
          f"{result[f'{args.engine}_inputs_per_s']} inputs/s {seconds[args.engine]} s; "
          f"throughput {args.engine}/direct = {result['ratio_engine_over_direct']}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
