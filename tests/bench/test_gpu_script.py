"""`bench/gpu.sh` run dry: `python`, `timeout` and `nvidia-smi` are stubs that record the commands, and
every benchmark command the script would run on a GPU must parse with its benchmark's own parser."""

import os
import shlex
import stat
import subprocess
from pathlib import Path

from bench import pipeline as bench_pipeline
from bench import train as bench_train

ROOT = Path(__file__).resolve().parents[2]
STUBS = {
    "python": '#!/bin/sh\nprintf "%s\\n" "$*" >> "$COMMANDS"\n',
    "timeout": '#!/bin/sh\nshift\nexec "$@"\n',  # drop the limit, run the command (the python stub)
    "nvidia-smi": "#!/bin/sh\nexit 0\n",
}


def _dry_run(tmp_path: Path) -> list[list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "commands.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "COMMANDS": str(log), "OUT": str(tmp_path / "out")}
    subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh")], check=True, env=env, cwd=ROOT, capture_output=True,
                   timeout=120)
    return [shlex.split(line) for line in log.read_text().splitlines()]


def test_every_gpu_benchmark_command_parses(tmp_path):
    commands = [c for c in _dry_run(tmp_path) if c[:1] == ["-m"]]
    pipeline_runs = [c[2:] for c in commands if c[1] == "bench.pipeline"]
    train_runs = [c[2:] for c in commands if c[1] == "bench.train"]
    assert len(pipeline_runs) == 3 and len(train_runs) == 2
    for argv in pipeline_runs:
        args = bench_pipeline._parser().parse_args(argv)
        assert (args.preset, args.device, args.dtype) == ("full", "cuda", "bf16") and args.json is not None
    assert {bench_pipeline._parser().parse_args(a).direct_running_mode for a in pipeline_runs} == {
        "in_memory", "multi_processing"}
    for argv in train_runs:
        options, json_path = bench_train.parse_args(argv)
        assert (options.preset, options.device, options.dtype) == ("sd15", "cuda", "bf16") and json_path is not None
    assert [bench_train.parse_args(a)[0].stages for a in train_runs] == [(1,), (2,)]
