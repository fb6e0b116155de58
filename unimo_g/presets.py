"""The bundled YAML presets (`configs/*.yaml`), found from a source checkout or an installed wheel.

In a checkout the presets are the repository's `configs/` folder beside this package; a wheel
installs that same folder as `unimo_g/presets/` (a build step in setup.py), so a
preset name such as `tiny` works from any directory after a non-editable install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

_PACKAGE = Path(__file__).resolve().parent
# Installed wheel first, then the checkout's configs/ (editable installs and PYTHONPATH runs).
SEARCH_DIRS = (_PACKAGE / "presets", _PACKAGE.parent / "configs")
SUFFIX = ".yaml"


class PresetNotFound(ValueError):
    """A --config value that is neither a file nor a bundled preset."""


def presets_dir() -> Optional[Path]:
    """The folder holding the bundled presets, or None when neither location has any."""
    return next((d for d in SEARCH_DIRS if d.is_dir() and any(d.glob(f"*{SUFFIX}"))), None)


def list_presets() -> dict[str, Path]:
    """Bundled presets by name (file stem), sorted."""
    folder = presets_dir()
    return {} if folder is None else {p.stem: p for p in sorted(folder.glob(f"*{SUFFIX}"))}


def resolve_preset(name: str) -> Path:
    """A config file as given, else the bundled preset it names.

    Accepted preset spellings: `tiny`, `tiny.yaml` and `configs/tiny.yaml` (the checkout-relative
    path the docs use, so it also works from other directories). Raises `PresetNotFound`.
    """
    path = Path(name)
    if path.is_file():
        return path
    presets = list_presets()
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    if (path.parent == Path(".") or path.parent == Path("configs")) and stem in presets:
        return presets[stem]
    known = ", ".join(presets) or "none found"
    raise PresetNotFound(f"--config: no such file or preset {name!r} (presets: {known})")


def preset_summary(path: Path, max_chars: int = 110) -> str:
    """The first sentence of a preset's leading comment, at most `max_chars` ('' without one)."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words += line.lstrip("#").split()
    text = " ".join(words)
    end = text.find(". ")
    text = text if end < 0 else text[: end + 1]
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"
