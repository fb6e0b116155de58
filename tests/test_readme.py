"""The README's quickstart commands run as written, top to bottom, in a fresh copy of the repository.

Every ```bash block of the README is either run here (its section is in QUICKSTART) or named in
NOT_RUN with the reason; a new block must be put in one of them. Of a run block, `pip install ...`
is checked, not run (the suite runs in the environment it installs), and the README's test command
is the one CI runs (.ci/run), not run again from inside the suite.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.checkout import source_copy

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# sections whose commands run here, in this order
QUICKSTART = ("unimo-g toolkit", "Training (stage 1, stage 2) and sampling", "Export for diffusers",
              "Pre-computed latents and conditions (stage 1)")
NOT_RUN = {
    "The data pipeline (Apache Beam)": "command synopses and examples on /data and gs:// paths, Dataflow with GPUs",
    "Evaluation (the paper's Tables 1–3: DreamBench, MultiBench, MS-COCO FID)":
        "needs the benchmark folders (DreamBench, MultiBench, COCO) and a trained model",
}
TEST_COMMAND = "python -m pytest -q"
PIP = re.compile(r'^pip install -c constraints\.txt -e "\.\[(\w+)\]"$')

pytestmark = pytest.mark.time_limit(900)


def bash_blocks() -> list[tuple[str, str]]:
    """(section heading, block text) of every ```bash block of the README, in order."""
    section, blocks, lines, inside = "", [], README.read_text().splitlines(), False
    for line in lines:
        if not inside and line.startswith("#"):
            section = line.lstrip("#").strip().strip("`").replace("The `unimo-g` command", "The unimo-g command")
        elif line.strip() == "```bash":
            inside, block = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append((section, "\n".join(block)))
        elif inside:
            block.append(line)
    return blocks


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_every_bash_block_is_run_here_or_named_with_its_reason():
    sections = {section for section, _ in bash_blocks()}
    assert sections == set(QUICKSTART) | set(NOT_RUN), sections ^ (set(QUICKSTART) | set(NOT_RUN))


def test_the_install_commands_name_the_constraints_and_real_extras():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    first = [c for section, block in bash_blocks() if section == QUICKSTART[0] for c in commands(block)]
    installs = [part.strip() for command in first for part in command.split("&&") if part.strip().startswith("pip")]
    assert len(installs) == 2 and (ROOT / "constraints.txt").is_file()
    for install in installs:
        assert PIP.match(install) and PIP.match(install).group(1) in extras, install
    assert first[1].split("&&")[-1].strip() == TEST_COMMAND
    assert f"python3 -m {TEST_COMMAND.removeprefix('python -m ')}" in (ROOT / ".ci" / "run").read_text()
    assert '-c constraints.txt -e ".[test]"' in (ROOT / ".ci" / "run").read_text()


@pytest.mark.usefixtures("one_torch_thread")
def test_the_quickstart_commands_run_as_written_in_a_fresh_copy(tmp_path):
    repo = source_copy(tmp_path / "repo")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    ran = []
    for section in QUICKSTART:
        for _, block in [b for b in bash_blocks() if b[0] == section]:
            for command in commands(block):
                parts = [p.strip() for p in command.split("&&")]
                runnable = [p for p in parts if not p.startswith("pip install") and p != TEST_COMMAND]
                if not runnable:
                    continue
                line = " && ".join(runnable)
                result = subprocess.run(["bash", "-c", line], cwd=repo, env=env, capture_output=True, text=True,
                                        timeout=600)
                assert result.returncode == 0, f"$ {line}\n{result.stderr[-3000:]}"
                ran.append(line)
    assert any(line.startswith("unimo-g build") for line in ran) and len(ran) >= 6
    # what the commands say they write
    assert (repo / "demo_output" / "report.html").is_file() and (repo / "cat_on_sofa.png").is_file()
    assert (repo / "cat_on_sofa_export.png").is_file() and (repo / "runs" / "s1f" / "checkpoints").is_dir()
    for written in ("cat_on_sofa.png", "cat_on_sofa_export.png"):
        assert (repo / written).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    entity = Path("data") / "entities" / "cat.png"
    assert (repo / entity).read_bytes() == (ROOT / entity).read_bytes()  # the example read it, never wrote it
    assert shlex.split(ran[0])[:2] == ["unimo-g", "build"]
