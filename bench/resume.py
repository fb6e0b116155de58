"""Cost of a `--resume` that finds everything done, against the full run on the same inputs.

    python -m bench.resume --n 400 [--config configs/tiny.yaml] [--threads 1] [--set key=value ...]

Writes N image-caption pairs (`bench.inputs.make_inputs`, folder layout), runs the pipeline over them
(`beam_runner.run`, DirectRunner in_memory), then runs it again with `--resume` into the same output:
it reads the done keys from the shards' and rejects' key columns, opens none of the images, and writes
only its ledger and the manifest. Both runs are timed in this process from the call to its return
(graph construction, model loading and the manifest step included). Prints both and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

from bench.inputs import KEEP_NEAR_DUPLICATES, make_inputs

ROOT = Path(__file__).resolve().parents[1]


def timed_run(argv: Sequence[str]) -> tuple[float, dict]:
    import beam_runner  # imports Beam

    started = time.perf_counter()
    manifest = beam_runner.run(list(argv))
    return time.perf_counter() - started, manifest


def resume_cost(workdir: Path, n: int, config: Path, overrides: Sequence[str] = ()) -> dict:
    """Full run then a --resume of it; their seconds, counts and the ratio."""
    inputs = make_inputs(workdir / "input", n)
    argv = ["--input", str(inputs), "--output", str(workdir / "out"), "--input-format", "folder",
            "--config", str(config), "--runner=DirectRunner", "--progress-interval", "0", "--log-level", "WARNING"]
    for override in (*KEEP_NEAR_DUPLICATES, *overrides):
        argv += ["--set", override]
    full_s, full = timed_run(argv)
    resume_s, resumed = timed_run([*argv, "--resume"])
    run = resumed["runs"][resumed["run_id"]]
    if run["inputs_read"] or run["rows"] or run["rejects"] or not resumed["counts"]["accounted"]:
        raise RuntimeError(f"the resume did work or lost inputs: {run}")
    return {"n": n, "full_s": round(full_s, 2), "resume_s": round(resume_s, 2),
            "ratio": round(resume_s / full_s, 4), "rows": full["counts"]["rows"], "rejects": full["counts"]["rejects"],
            "skipped": run["inputs_skipped"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resume", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "tiny.yaml")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", type=Path, help="default: a fresh temporary folder")
    args = parser.parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="unimo-g-resume-") as temporary:
        record = resume_cost(args.workdir or Path(temporary), args.n, args.config, args.set)
    print(json.dumps(record))
    print(f"full run {record['full_s']:.1f} s, resume with everything done {record['resume_s']:.1f} s: "
          f"{100 * record['ratio']:.1f}% of the full run ({record['skipped']} inputs skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
