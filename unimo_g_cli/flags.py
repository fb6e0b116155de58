"""One flag style: our own flags are kebab-case, and the old underscore spellings keep working.

A job's parser may know `--input_format` or `--input-format` (or both); the dispatcher rewrites
whichever spelling a user types to one the parser knows. Flags the parser does not know (Beam's
own options, such as `--direct_num_workers`) pass through untouched.
"""

from __future__ import annotations

import argparse
import re
from typing import Iterable, Sequence


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings if s.startswith("--")}


def _spellings(flag: str) -> tuple[str, str]:
    body = flag[2:]
    return "--" + body.replace("_", "-"), "--" + body.replace("-", "_")


def normalise_flags(argv: Sequence[str], known: Iterable[str]) -> list[str]:
    """`argv` with each `--flag` or `--flag=value` respelled to the form in `known` (kebab-case or
    underscores), when the typed form is not known itself but its other spelling is. Everything
    after a bare `--` is left alone."""
    known = set(known)
    out: list[str] = []
    for i, token in enumerate(argv):
        if token == "--":
            return out + list(argv[i:])
        if token.startswith("--") and len(token) > 2:
            flag, sep, value = token.partition("=")
            if flag not in known:
                flag = next((s for s in _spellings(flag) if s in known), flag)
            token = flag + sep + value
        out.append(token)
    return out


def kebab_help(text: str, known: Iterable[str]) -> str:
    """Help text with the parser's underscore flags shown in kebab-case (both spellings work)."""
    for flag in sorted((f for f in known if "_" in f), key=len, reverse=True):
        text = re.sub(re.escape(flag) + r"(?![\w-])", flag.replace("_", "-"), text)
    return text
