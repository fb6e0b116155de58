"""`unimo-g presets [list | show NAME | path NAME]`: the YAML presets bundled with the package.

    unimo-g presets              # names, what each is for, and where they are
    unimo-g presets show tiny    # print the preset, e.g. to copy and edit it
    unimo-g presets path tiny    # its file path, for --config or an editor
"""

from __future__ import annotations

import argparse

from unimo_g.presets import list_presets, preset_summary, presets_dir
from unimo_g.usage import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="list", choices=("list", "show", "path"),
                        help="list the presets (default), show one's YAML, or print its path")
    parser.add_argument("name", nargs="?", help="preset name (show, path)")


def run(args: argparse.Namespace) -> int:
    print(presets_text(args.action, args.name))
    return 0


def presets_text(action: str, name: str | None) -> str:
    """The listing, a preset's YAML or its path."""
    presets = list_presets()
    if action == "list":
        if name is not None:
            raise UsageError("`list` takes no name")
        width = max((len(name) for name in presets), default=0)
        lines = [f"{name:<{width}}  {preset_summary(path)}" for name, path in presets.items()]
        return "\n".join([*lines, f"(in {presets_dir()}; pass a name or a YAML path to --config)"])
    if name is None:
        raise UsageError(f"`{action}` needs a preset name (one of {', '.join(presets)})")
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if stem not in presets:
        raise UsageError(f"no preset {name!r} (presets: {', '.join(presets) or 'none found'})")
    path = presets[stem]
    return str(path) if action == "path" else path.read_text(encoding="utf-8").rstrip("\n")
