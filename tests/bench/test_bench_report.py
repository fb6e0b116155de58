"""bench.report runs end to end on tiny outputs, and every benchmark runs as a module (`python -m bench.NAME`)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report

ROOT = Path(__file__).resolve().parents[2]
PROJECT_IMPORT = re.compile(r"^(from|import) (bench|unimo_g|unimo_g_apps|pipelines|grounding|segmentation|trainers)\b", re.M)
# Benchmark scripts that import the project
SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py")
                 if 'if __name__ == "__main__"' in p.read_text() and PROJECT_IMPORT.search(p.read_text()))


def test_bench_report_prints_ratio_and_rate(capsys, tmp_path):
    code = report.main(["--n", "10", "--factor", "2", "--image-kib", "1", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "peak RSS ratio 2·N / N:" in out and "rows/s" in out
    assert code == (0 if "(target <= 1.2: ok)" in out else 1)
    assert (tmp_path / "r.json").is_file()


@pytest.mark.parametrize("module", ["pipeline", "report"])
def test_benchmark_runs_as_a_module_from_the_repository_root(module):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # `python -m` puts the root on sys.path
    result = subprocess.run([sys.executable, "-m", f"bench.{module}", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-1500:]


def test_no_benchmark_script_edits_the_import_path():
    """Every benchmark is a module of the `bench` package (each of the others takes ~20 s to import)."""
    assert {"pipeline.py", "memory.py", "train.py", "cpu_stages.py", "report.py"} <= set(SCRIPTS)
    for script in sorted(p.name for p in (ROOT / "bench").glob("*.py")):
        text = (ROOT / "bench" / script).read_text()
        assert "__package__" not in text and "sys.path" not in text, script
