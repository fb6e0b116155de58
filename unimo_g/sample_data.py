"""The bundled material, found from a source checkout or an installed wheel:

- the sample: ten real photos with captions in img2dataset's `files` layout (`data/sample`, licences
  in data/README.md), what `unimo-g demo` builds;
- example entity images (`data/entities`), what the README's generate examples put in a prompt.

In a checkout they are the repository's `data/` folder beside this package; a wheel installs the
same files as `unimo_g/data/` (a build step in setup.py), so they work from any directory.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
SEARCH_DIRS = (_PACKAGE / "data", _PACKAGE.parent / "data")  # installed wheel first, then the checkout


def _bundled(name: str) -> Path:
    for root in SEARCH_DIRS:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"the bundled {name!r} folder is missing (looked in {', '.join(map(str, SEARCH_DIRS))}); "
                            f"reinstall the package")


def sample_dir() -> Path:
    """The bundled sample's folder (img2dataset `files` output: 00000/<key>.jpg|.txt|.json, metadata)."""
    return _bundled("sample")


def entities_dir() -> Path:
    """The folder of the bundled example entity images (e.g. cat.png)."""
    return _bundled("entities")
