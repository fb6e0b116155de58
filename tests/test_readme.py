"""The README's quickstart commands run as written, top to bottom, in a fresh copy of the repository.

Every ```bash block of the README and of the docs pages (`docs/**/*.md`) is either run here (its
section is in QUICKSTART), repeats commands the quickstart runs word for word (SAME_AS_QUICKSTART), or
is named in NOT_RUN with the reason; a new block must be put in one of them. A key is (file, section
heading), or (file, None) for every block of the file. Of a run block, `pip install ...` is checked,
not run (the suite runs in the environment it installs), and the README's test command is the one CI
runs (.ci/run), not run again from inside the suite.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Optional

import pytest

from tests.checkout import source_copy

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
Key = tuple[str, Optional[str]]
# sections whose commands run here, in this order
QUICKSTART: tuple[Key, ...] = (("README.md", "unimo-g toolkit"), ("README.md", "A tour of the commands"))
# blocks whose every command is a command of QUICKSTART, word for word (so it is run there)
SAME_AS_QUICKSTART: frozenset[Key] = frozenset({
    ("docs/index.md", None), ("docs/getting-started.md", None), ("docs/training/index.md", None),
    ("docs/training/features.md", None), ("docs/training/export.md", None),
})
NOT_RUN: dict[Key, str] = {
    ("docs/pipeline/index.md", None): "command synopses",
    ("docs/pipeline/reruns.md", None): "a command synopsis",
    ("docs/pipeline/scores.md", None): "needs a published aesthetic head (.pth) and the CLIP ViT-L/14 weights",
    ("docs/pipeline/entities.md", None): "vision-language models from the hub on GPUs, inputs on /data",
    ("docs/pipeline/runners.md", None): "examples on /data and gs:// paths, Dataflow with GPUs",
    ("docs/evaluation.md", None): "needs the benchmark folders (DreamBench, MultiBench, COCO) and a trained model",
    ("docs/runbooks/dataflow-gpu.md", None): "docker, a Dataflow project and GPU workers",
    ("docs/runbooks/flink.md", None): "a Flink cluster with GPU hosts (tests/cluster starts one on loopback)",
    ("docs/runbooks/spark.md", None): "a Spark cluster with GPU hosts (tests/cluster starts one on loopback)",
    ("docs/runbooks/dask.md", None): "a refused run: tests/cluster/test_dask.py runs it and checks the refusal",
}
TEST_COMMAND = "python -m pytest -q"
PIP = re.compile(r'^pip install -c constraints\.txt -e "\.\[(\w+)\]"$')
LINK = re.compile(r"(?<!!)\[(?:[^\[\]`]|`[^`]*`)+\]\(([^()\s]+)\)")

pytestmark = pytest.mark.time_limit(900)


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def bash_blocks(path: Path = README) -> list[tuple[str, str]]:
    """(section heading, block text) of every ```bash block of a Markdown file, in order."""
    section, blocks, inside = "", [], False
    for line in path.read_text().splitlines():
        if not inside and line.startswith("#"):
            section = line.lstrip("#").strip().replace("`", "")
        elif line.strip() == "```bash":
            inside, block = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append((section, "\n".join(block)))
        elif inside:
            block.append(line)
    return blocks


def keyed_blocks() -> list[tuple[Key, str]]:
    """((file, section), block text) of every bash block of the README and the docs pages."""
    return [((path.relative_to(ROOT).as_posix(), section), block)
            for path in markdown_files() for section, block in bash_blocks(path)]


def classified(key: Key, keys) -> Optional[Key]:
    return next((k for k in (key, (key[0], None)) if k in keys), None)


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def quickstart_blocks() -> list[str]:
    blocks = keyed_blocks()
    return [block for key in QUICKSTART for k, block in blocks if k == key]


def test_every_bash_block_is_run_here_or_named_with_its_reason():
    keys = set(QUICKSTART) | SAME_AS_QUICKSTART | set(NOT_RUN)
    assert not (set(QUICKSTART) & (SAME_AS_QUICKSTART | set(NOT_RUN))) and not (SAME_AS_QUICKSTART & set(NOT_RUN))
    blocks = keyed_blocks()
    unclassified = [key for key, _ in blocks if classified(key, keys) is None]
    assert not unclassified, f"bash blocks in no list (QUICKSTART, SAME_AS_QUICKSTART or NOT_RUN): {unclassified}"
    used = {classified(key, keys) for key, _ in blocks}
    assert keys <= used, f"listed but no such bash block: {keys - used}"


def test_blocks_that_repeat_the_quickstart_repeat_it_word_for_word():
    run = {command for block in quickstart_blocks() for command in commands(block)}
    for key, block in keyed_blocks():
        if classified(key, SAME_AS_QUICKSTART):
            for command in commands(block):
                assert command in run, f"{key}: {command!r} is no command of the quickstart, word for word"


def test_the_install_commands_name_the_constraints_and_real_extras():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert bash_blocks(README)[0][0] == QUICKSTART[0][1]  # the README opens with the set-up commands
    first = [c for key, block in keyed_blocks() if key == QUICKSTART[0] for c in commands(block)]
    installs = [part.strip() for command in first for part in command.split("&&") if part.strip().startswith("pip")]
    assert len(installs) == 2 and (ROOT / "constraints.txt").is_file()
    for install in installs:
        assert PIP.match(install) and PIP.match(install).group(1) in extras, install
    assert first[1].split("&&")[-1].strip() == TEST_COMMAND
    assert f"python3 -m {TEST_COMMAND.removeprefix('python -m ')}" in (ROOT / ".ci" / "run").read_text()
    assert '-c constraints.txt -e ".[test]"' in (ROOT / ".ci" / "run").read_text()


def test_the_readme_links_only_into_the_repository():
    text = README.read_text()
    assert not re.search(r"https?://", text), "the README links outside the repository; link a docs page instead"
    for target in LINK.findall(text):
        path = (ROOT / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), target


def test_the_readme_names_every_command():
    from unimo_g_cli.commands import COMMANDS

    text = README.read_text()
    assert not [name for name in COMMANDS if f"unimo-g {name}" not in text and f"`{name}`" not in text]


@pytest.mark.usefixtures("one_torch_thread")
def test_the_quickstart_commands_run_as_written_in_a_fresh_copy(tmp_path):
    repo = source_copy(tmp_path / "repo")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    ran = []
    for block in quickstart_blocks():
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
    assert (repo / "demo_output" / "gallery.html").is_file() and (repo / "runs" / "s2_export" / "unet").is_dir()
    for written in ("cat_on_sofa.png", "cat_on_sofa_export.png"):
        assert (repo / written).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    entity = Path("data") / "entities" / "cat.png"
    assert (repo / entity).read_bytes() == (ROOT / entity).read_bytes()  # the example read it, never wrote it
    assert shlex.split(ran[0])[:2] == ["unimo-g", "build"]
