"""Caption hygiene: web captions -> the text that phrases, entities and prompts are built on.

Alt texts and scraped captions carry markup (`&lt;b&gt;cup&lt;/b&gt; &amp; <br/>`): parsed as is,
a tag name becomes a noun phrase and then an entity. `clean_caption` (with `normalize`):
1. HTML entities are unescaped, twice at most (captions are often escaped twice: `&amp;lt;`);
2. tags are removed (`<b>`, `</b>`, `<br/>`, `<img src=...>`, comments): a tag is `<`, an optional
   `/` or `!`, a letter, then anything but `<` and `>` up to `>`; `a < b > c` is not a tag;
3. control characters (Unicode Cc, Cs, Co, Cn) are dropped; other whitespace becomes a space;
4. runs of whitespace collapse to one space; the ends are stripped.
Whatever `normalize`, the prompt markers `<img>` and `</img>` (any case) left in the text are
escaped as `&lt;img&gt;` / `&lt;/img&gt;`, so that `schema.prompt_text` renders a prompt that
`schema.parse_prompt_text` splits back into exactly its parts.
"""

from __future__ import annotations

import html
import re
import unicodedata

from unimo_g.pipeline_config import CaptionConfig

_TAG = re.compile(r"<[/!]?[A-Za-z][^<>]*>|<!--.*?-->", re.DOTALL)
_SPACES = re.compile(r"\s+")
_MARKER = re.compile(r"<(/?)img>", re.IGNORECASE)
_DROPPED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn"})  # control, surrogate, private use, unassigned
_UNESCAPE_PASSES = 2


def _drop_controls(text: str) -> str:
    return "".join(
        " " if char.isspace() else char
        for char in text
        if char.isspace() or unicodedata.category(char) not in _DROPPED_CATEGORIES
    )


def normalize_caption(text: str) -> str:
    """Steps 1-4 of the module docstring: unescape, remove tags, drop controls, collapse whitespace."""
    for _ in range(_UNESCAPE_PASSES):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    text = _TAG.sub(" ", text)
    return _SPACES.sub(" ", _drop_controls(text)).strip()


def escape_markers(text: str) -> str:
    """`<img>` / `</img>` (any case) -> `&lt;img&gt;` / `&lt;/img&gt;`; nothing else changes."""
    return _MARKER.sub(lambda m: f"&lt;{m.group(1)}img&gt;", text)


def has_marker(text: str) -> bool:
    """True when `text` holds a prompt marker `<img>` or `</img>` (any case)."""
    return _MARKER.search(text) is not None


def clean_caption(text: str, config: CaptionConfig) -> str:
    """The caption rows are built on: `normalize_caption` when `config.normalize`, then the prompt
    markers escaped (always). Character offsets of phrases index this string."""
    if config.normalize:
        text = normalize_caption(text)
    return escape_markers(text)
