"""`unimo-g presets [list | show NAME | path NAME]`: the YAML presets bundled with the package.

    unimo-g presets              # names, what each is for, and where they are
    unimo-g presets show tiny    # print the preset, e.g. to copy and edit it
    unimo-g presets path tiny    # its file path, for --config or an editor
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from unimo_g.presets import PresetNotFound, list_presets, preset_summary, presets_dir
from unimo_g.usage import OneLineParser, UsageError

PROG = "unimo-g presets"


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("action", nargs="?", default="list", choices=("list", "show", "path"),
                        help="list the presets (default), show one's YAML, or print its path")
    parser.add_argument("name", nargs="?", help="preset name (show, path)")
    return parser


def run(argv: Sequence[str]) -> str:
    args = build_parser().parse_args(argv)
    presets = list_presets()
    if args.action == "list":
        if args.name is not None:
            raise UsageError("`list` takes no name")
        width = max((len(name) for name in presets), default=0)
        lines = [f"{name:<{width}}  {preset_summary(path)}" for name, path in presets.items()]
        return "\n".join([*lines, f"(in {presets_dir()}; pass a name or a YAML path to --config)"])
    if args.name is None:
        raise UsageError(f"`{args.action}` needs a preset name (one of {', '.join(presets)})")
    name = args.name[: -len(".yaml")] if args.name.endswith(".yaml") else args.name
    if name not in presets:
        raise PresetNotFound(f"no preset {args.name!r} (presets: {', '.join(presets) or 'none found'})")
    path = presets[name]
    return str(path) if args.action == "path" else path.read_text(encoding="utf-8").rstrip("\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        print(run(sys.argv[1:] if argv is None else argv))
    except (UsageError, PresetNotFound) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0
