"""The documentation site (mkdocs.yml, docs/) builds with warnings as errors, its API reference covers
every package, and the commands the README and the docs show use the commands and flags their parsers
define."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

pytestmark = pytest.mark.time_limit(120)


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=110,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0 and "WARNING" not in result.stderr, result.stderr[-4000:]
    # the API pages come from the docstrings: every module of a package has its section
    page = (site / "api" / "unimo_g" / "index.html").read_text()
    for module in ("unimo_g.schema", "unimo_g.diffusion.losses", "unimo_g.models.encoder"):
        assert f'id="{module}"' in page, module
    assert 'id="pipelines.outputs.report.main"' in (site / "api" / "pipelines" / "index.html").read_text()
    for page in ("commands", "pipeline/filters", "pipeline/reruns", "training", "evaluation", "design",
                 "runbooks/spark", "runbooks/flink"):
        assert (site / page / "index.html").is_file(), page


def test_the_api_reference_has_one_page_per_package():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    pages = {path.stem for path in (DOCS / "api").glob("*.md")} - {"index"}
    assert pages == packages
    for name in packages:
        assert re.search(rf"^::: {name}$", (DOCS / "api" / f"{name}.md").read_text(), re.MULTILINE), name
    nav = (ROOT / "mkdocs.yml").read_text()
    assert all(f"api/{name}.md" in nav for name in packages)


def test_the_command_table_lists_every_command():
    from unimo_g_cli.commands import COMMANDS

    table = (DOCS / "commands.md").read_text()
    rows = re.findall(r"^\| `([\w-]+)` \|", table, re.MULTILINE)
    assert rows == list(COMMANDS)


# -- the commands the pages show --------------------------------------------------------------------

ENTRY_POINTS = {  # how a job is also run, by its own entry point
    "python beam_runner.py verify": "verify", "python beam_runner.py": "build",
    "python features_runner.py": "features", "python -m trainers.train": "train",
    "python -m unimo_g_apps.generate": "generate", "python -m unimo_g_apps.evaluation.evaluate": "evaluate",
    "python -m pipelines.outputs.gallery": "gallery", "python -m pipelines.outputs.verify": "verify",
}
START = re.compile("|".join([r"\bunimo-g[ \t]+(?P<name>[^\s`]+)", *map(re.escape, ENTRY_POINTS)]))
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
BEAM_JOBS = ("demo", "build", "features")  # their commands pass Beam's pipeline options on


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _code_texts(markdown: str) -> list[str]:
    """Fenced and indented code blocks (continuation lines joined, comments cut) and inline code spans."""
    texts, rest = [], []
    for fence in re.split(r"^```.*$", markdown, flags=re.MULTILINE)[1::2]:
        texts += re.sub(r"\\\n\s*", " ", fence).splitlines()
    prose = "".join(re.split(r"^```.*$", markdown, flags=re.MULTILINE)[0::2])
    block: list[str] = []
    for line in prose.splitlines() + [""]:
        if line.startswith("    ") and (block or not rest or not rest[-1].strip()):
            if block and line.startswith("        "):  # a synopsis continued on a deeper line
                block[-1] += " " + line.strip()
            else:
                block.append(line.strip())
            continue
        texts += block
        block = []
        rest.append(line)
    texts += re.findall(r"`([^`\n]+)`", "\n".join(rest))
    return [re.split(r"(?:^|\s)#", text, maxsplit=1)[0] for text in texts]


def _commands() -> list[tuple[str, str, str]]:
    """(page, command name, its text) of every command a page shows."""
    found = []
    for page in _pages():
        for text in _code_texts(page.read_text()):
            for part in text.split("&&"):
                starts = list(START.finditer(part))
                for i, start in enumerate(starts):
                    end = starts[i + 1].start() if i + 1 < len(starts) else len(part)
                    name = start.group("name") or ENTRY_POINTS[start.group(0)]
                    found.append((page.relative_to(ROOT).as_posix(), name, part[start.end():end]))
    return found


def _options(name: str) -> set[str]:
    """The option strings `unimo-g NAME --help` lists."""
    from unimo_g_cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([name, "--help"]) == 0
    return set(FLAG.findall(out.getvalue().split("options:", 1)[1]))


def test_the_pages_show_real_commands_and_flags():
    from pipelines.beam_flags import read_flags
    from unimo_g_cli.commands import COMMANDS

    beam = set(read_flags()[1])
    shown = _commands()
    assert {name for _, name, _ in shown} >= set(COMMANDS) - {"presets"}
    options, wrong = {}, []
    for page, name, text in shown:
        if name.startswith("-") or name.isupper():  # `unimo-g --help`, `unimo-g COMMAND --help`
            continue
        if name not in COMMANDS:
            wrong.append(f"{page}: no command {name!r}")
            continue
        known = options.setdefault(name, _options(name))
        for flag in FLAG.findall(text):
            if flag in known or flag.replace("_", "-") in known or (name in BEAM_JOBS and flag in beam):
                continue
            wrong.append(f"{page}: {name} has no option {flag}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_the_entry_points_the_pages_name_exist():
    for entry in ENTRY_POINTS:
        target = entry.split()[2] if entry.startswith("python -m") else entry.split()[1]
        assert (ROOT / target).is_file() if target.endswith(".py") else importlib.util.find_spec(target), entry


# -- the hook that turns links to repository files into their paths ------------------------------

def _hook():
    spec = importlib.util.spec_from_file_location("repo_links", DOCS / "hooks" / "repo_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(markdown: str, page: str = "pipeline/x.md") -> str:
    file = SimpleNamespace(abs_src_path=str(DOCS / page), src_uri=page)
    config = {"docs_dir": str(DOCS), "config_file_path": str(ROOT / "mkdocs.yml")}
    return _hook().on_page_markdown(markdown, SimpleNamespace(file=file), config, None)


def test_links_to_repository_files_become_their_paths(caplog):
    with caplog.at_level(logging.WARNING):
        assert _render("[the Dockerfile](../../docker/dataflow-gpu/Dockerfile)") == \
            "the Dockerfile (`docker/dataflow-gpu/Dockerfile`)"
        assert _render("[`BENCHMARKS.md`](../../BENCHMARKS.md) and [x](filters.md#rules)") == \
            "`BENCHMARKS.md` and [x](filters.md#rules)"
        kept = "`[a](../../README.md)`\n```\n[b](../../README.md)\n```\n[c](https://example.org/)"
        assert _render(kept) == kept
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        _render("[gone](../../no_such_file.py) [out](../../../etc/passwd)")
    assert len(caplog.records) == 2
