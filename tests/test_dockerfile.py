"""What can be checked of the Dataflow GPU worker image without a Docker engine: the Dockerfile
builds on the Beam and torch versions of the tested set (`constraints.txt`, the file CI installs),
for the Python CI runs, and copies every package the project installs. (The image itself is built
and run only where Docker and a GPU are.) Pins are compared with pins, never with whatever version
an install happened to resolve.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "dataflow-gpu" / "Dockerfile"
CONSTRAINTS = ROOT / "constraints.txt"
CI_PYTHON = "3.11"  # the CPython of CI's machines (.ci/run), the one constraints.txt was tested on


def _tested(name: str) -> str:
    """The version `constraints.txt` pins `name` to."""
    pins = dict(line.split("==", 1) for line in CONSTRAINTS.read_text().splitlines() if "==" in line
                and not line.startswith("#"))
    return pins[name]


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), flags=re.M))


def test_image_is_built_on_the_beam_sdk_image_of_the_tested_versions():
    args = _args()
    assert args["BEAM_VERSION"] == _tested("apache-beam")
    assert args["TORCH_VERSION"] == _tested("torch")
    assert args["PYTHON_VERSION"] == CI_PYTHON
    assert f"CPython {CI_PYTHON}." in CONSTRAINTS.read_text()
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in DOCKERFILE.read_text()
    assert not re.search(r"^(ENTRYPOINT|CMD) ", DOCKERFILE.read_text(), flags=re.M)  # keep the SDK boot entrypoint


def test_torch_pin_meets_the_project_requirement():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "torch")
    assert torch.specifier.contains(_args()["TORCH_VERSION"])
    assert "dataflow" in project["optional-dependencies"]
    assert '"/opt/unimo-g[dataflow]"' in DOCKERFILE.read_text()


def test_every_installed_package_and_file_is_copied_and_kept_by_the_ignore_file():
    text = DOCKERFILE.read_text()
    copied = [part for line in re.findall(r"^COPY (.+) \S+$", text, flags=re.M) for part in line.split()]
    for path in copied:
        assert (ROOT / path).exists(), f"COPY {path}: no such file in the project"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    modules = [f"{name}.py" for name in pyproject["tool"]["setuptools"]["py-modules"]]
    assert set(packages + modules) <= set(copied)
    kept = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    for path in copied:
        assert f"!{path}" in kept, f"{path} is excluded from the build context"
