"""The built wheel, installed without the source tree: `unimo-g` runs from another directory, finds
its bundled presets, builds a tiny output with its dataset card and writes the report."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkout import source_copy

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "00000"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(target folder, `unimo-g` script) of the wheel installed with `pip install --target`."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = source_copy(tmp / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("*.whl")
    target = tmp / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    return target, target / "bin" / "unimo-g"


def _run(installed, *args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    target, script = installed
    env = {**os.environ, "PYTHONPATH": str(target)}  # only the installed wheel, no source tree
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_help_and_presets_from_the_wheel(installed, tmp_path):
    target, _ = installed
    help_ = _run(installed, "--help", cwd=tmp_path)
    assert help_.returncode == 0 and "unimo-g build --input" in help_.stdout, help_.stderr
    where = _run(installed, "presets", "path", "tiny", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve() == (target / "unimo_g" / "presets" / "tiny.yaml").resolve()
    origin = subprocess.run([sys.executable, "-c", "import unimo_g, beam_runner; print(unimo_g.__file__)"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True)
    assert Path(origin.stdout.strip()).is_relative_to(target)


def test_tiny_build_card_and_report_from_another_directory(installed, tmp_path):
    inputs = tmp_path / "photos"
    inputs.mkdir()
    for path in sorted(SAMPLE.glob("00000000[0-2].*")):  # three photos with their captions
        shutil.copy(path, inputs / path.name)
    build = _run(installed, "build", "--input", "photos", "--output", "out", "--config", "tiny",
                 "--input-format", "folder", "--runner=DirectRunner", cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    assert "3 inputs -> 3 rows + 0 rejects" in build.stderr and "RANDOM-WEIGHT" in build.stderr  # logged
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["name"] == "tiny" and manifest["counts"]["rows"] == 3
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("---\n") and "path: shards/*.parquet" in card and "Random weights" in card

    report = _run(installed, "report", "out", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Random weights" in page and re.search(r"3 rows in \d+ shard files?, 0 rejects in 0 reject files", page)


def test_the_wheel_carries_the_sample_and_the_demo_runs_from_another_directory(installed, tmp_path):
    target, _ = installed
    shipped = target / "unimo_g" / "data"
    checkout = ROOT / "data"
    for folder in ("sample", "entities"):
        wanted = sorted(p.relative_to(checkout / folder) for p in (checkout / folder).rglob("*") if p.is_file())
        assert sorted(p.relative_to(shipped / folder) for p in (shipped / folder).rglob("*") if p.is_file()) == wanted
    assert (target / "pipelines" / "beam_flags.txt").is_file()
    for data in ("paper_results.json", "multibench_nouns.json"):  # read with importlib.resources
        assert (target / "unimo_g_apps" / "evaluation" / data).is_file()
    demo = _run(installed, "demo", "out", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "10 inputs -> 10 rows + 0 rejects" in demo.stderr and (tmp_path / "out" / "report.html").is_file()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["runs"][manifest["run_id"]]["input"]["path"] == str(shipped / "sample")
