"""bench.report runs end to end on tiny outputs, and every benchmark runs as a module and as a script."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report

ROOT = Path(__file__).resolve().parents[2]
PROJECT_IMPORT = re.compile(r"^(from|import) (bench|unimo_g|pipelines|grounding|segmentation|trainers)\b", re.M)
# Benchmarks run as scripts that import the project (and so need the repository on sys.path)
SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py")
                 if 'if __name__ == "__main__"' in p.read_text() and PROJECT_IMPORT.search(p.read_text()))


def test_bench_report_prints_ratio_and_rate(capsys, tmp_path):
    code = report.main(["--n", "10", "--factor", "2", "--image-kib", "1", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "peak RSS ratio 2·N / N:" in out and "rows/s" in out
    assert code == (0 if "(target <= 1.2: ok)" in out else 1)
    assert (tmp_path / "r.json").is_file()


@pytest.mark.parametrize("script", ["pipeline.py", "report.py"])
def test_benchmark_runs_as_a_script_from_anywhere(script, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the script finds the repository itself
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-1500:]


def test_every_benchmark_script_makes_the_repository_importable():
    """The same two lines as in the scripts run above (each of the others takes ~20 s to import)."""
    assert {"pipeline.py", "memory.py", "train.py", "cpu_stages.py", "report.py"} <= set(SCRIPTS)
    for script in SCRIPTS:
        text = (ROOT / "bench" / script).read_text()
        assert "if not __package__:" in text and "sys.path[0] = os.path.dirname(os.path.dirname(" in text, script
