"""MkDocs hook: links from a docs page to a file of the repository outside `docs/`.

The pages link repository files relatively (`../../docker/dataflow-gpu/Dockerfile`), which works where
the Markdown is read in the repository. The site holds only `docs/`, so such a link becomes the file's
path as inline code beside the link text. A link to a repository file that does not exist, or to a
path outside the repository, is a warning (and so an error under `mkdocs build --strict`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

LOG = logging.getLogger("mkdocs.hooks.repo_links")
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
LINK_OR_CODE = re.compile(r"(?<!!)\[((?:[^\[\]`]|`[^`]*`)+)\]\(([^()\s]+)\)|`+[^`]*?`+")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:|^#|^/", re.IGNORECASE)


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs = Path(config["docs_dir"]).resolve()
    repo = Path(config["config_file_path"]).resolve().parent
    source = Path(page.file.abs_src_path).resolve()

    def rewrite(match: re.Match) -> str:
        text, target = match.group(1), match.group(2)
        if EXTERNAL.match(target):
            return match.group(0)
        path = (source.parent / target.split("#", 1)[0]).resolve()
        if path.is_relative_to(docs):
            return match.group(0)  # a page or file of the site: MkDocs checks it
        if not path.is_relative_to(repo):
            LOG.warning("%s links %r, outside the repository", page.file.src_uri, target)
            return match.group(0)
        if not path.exists():
            LOG.warning("%s links %r: no such file in the repository", page.file.src_uri, target)
            return match.group(0)
        name = path.relative_to(repo).as_posix() + ("/" if path.is_dir() else "")
        return text if text.strip("`") == name.rstrip("/") else f"{text} (`{name}`)"

    def outside_code(text: str) -> str:  # links, never inside a code span
        return LINK_OR_CODE.sub(lambda m: rewrite(m) if m.group(1) is not None else m.group(0), text)

    pieces, last = [], 0
    for fence in FENCE.finditer(markdown):
        pieces += [outside_code(markdown[last:fence.start()]), fence.group(0)]
        last = fence.end()
    return "".join(pieces + [outside_code(markdown[last:])])
