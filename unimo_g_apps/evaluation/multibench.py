"""MultiBench as the authors published it (Weili-NLP/UNIMO-G, folder `Multibench/`), read as-is.

    Multibench/prompt_templates.txt      "2 subjects:" / "3 subjects:" sections of templates such as
                                         `a {living object} wearing {wearing object}`
    Multibench/<category>/<name>.<ext>   one photo per entity (food, living, toy, wearing: 10 each)

A slot `{<category> object}` takes every photo of folder `<category>`; each template yields every
combination, so 3 two-slot and 2 three-slot templates over 10 photos per category give
3·10·10 + 2·10·10·10 = 2,300 prompts. Order: templates as the file lists them, then the product of
the slots' photos (each category's photos sorted by name), so the list is stable.

An entity's class noun (CLIP-T's text; the prompt's text with compose "append") comes from its file
name (lower case, `_` and `-` as spaces, trailing digits dropped: `ice_cream2` -> "ice cream"),
except for the names in the shipped `multibench_nouns.json` (people -> "man", `hanberger` ->
"hamburger"); a `class_nouns.json` beside the templates (`{"nouns": {"stem": "noun"}}`) overrides both.
"""

from __future__ import annotations

import itertools
import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from unimo_g_apps.evaluation.cases import BenchEntity, BenchmarkError, Case, reference_images

TEMPLATES_FILE = "prompt_templates.txt"
NOUNS_FILE = "multibench_nouns.json"  # shipped in the unimo_g_apps.evaluation package
LOCAL_NOUNS_FILE = "class_nouns.json"  # optional, in the benchmark folder
_SLOT = re.compile(r"\{([^{}]+?) object\}")
_SECTION = re.compile(r"^\s*(\d+)\s+subjects?\s*:\s*$", re.IGNORECASE)


def multibench_root(bench: str | Path):
    """The folder holding `prompt_templates.txt`: BENCH or BENCH/Multibench (a clone of the
    authors' repository); None if neither."""
    bench = Path(bench)
    for root in (bench, bench / "Multibench"):
        if (root / TEMPLATES_FILE).is_file():
            return root
    return None


@lru_cache(maxsize=1)
def shipped_nouns() -> dict[str, str]:
    data = json.loads(resources.files("unimo_g_apps.evaluation").joinpath(NOUNS_FILE).read_text(encoding="utf-8"))
    return dict(data["nouns"])


def derived_noun(stem: str) -> str:
    """The class noun a file name spells: `bear_plushie` -> "bear plushie", `backpack1` -> "backpack"."""
    words = re.sub(r"[_\-\s]+", " ", stem.lower())
    return re.sub(r"\s*\d+$", "", words).strip() or words.strip()


def class_noun(stem: str, overrides: dict[str, str]) -> str:
    return overrides.get(stem) or derived_noun(stem)


def read_templates(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(template as written, its slot categories in order) of every line with a slot. A section
    header "N subjects:" must agree with the slot count of the templates under it."""
    templates, expected = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        section = _SECTION.match(line)
        if section:
            expected = int(section.group(1))
            continue
        categories = tuple(_SLOT.findall(line))
        if not categories:
            continue  # the title and blank lines
        if expected is not None and len(categories) != expected:
            raise BenchmarkError(f"{path}:{number}: {len(categories)} slots under a '{expected} subjects' header")
        templates.append((line.strip(), categories))
    if not templates:
        raise BenchmarkError(f"{path}: no template with a slot such as {{living object}}")
    return templates


def format_template(written: str) -> str:
    """`a {living object} wearing {wearing object}` -> `a {0} wearing {1}` (other braces escaped)."""
    parts = _SLOT.split(written)  # text, category, text, category, ..., text
    out = []
    for index, part in enumerate(parts):
        out.append(f"{{{index // 2}}}" if index % 2 else part.replace("{", "{{").replace("}", "}}"))
    return "".join(out)


def _local_overrides(root: Path) -> dict[str, str]:
    path = root / LOCAL_NOUNS_FILE
    if not path.is_file():
        return {}
    try:
        nouns = json.loads(path.read_text(encoding="utf-8"))["nouns"]
        return {str(k): str(v) for k, v in nouns.items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise BenchmarkError(f"{path}: expected {{\"nouns\": {{\"stem\": \"noun\"}}}}: {err}") from None


def read_multibench(bench: str | Path) -> list[Case]:
    """The 2,300 cases (for the published folder) in the order of the module docstring. A case's
    subject is its first slot's entity (the "living object" of every published template)."""
    root = multibench_root(bench)
    if root is None:
        raise BenchmarkError(f"{bench}: no {TEMPLATES_FILE} in it or in its Multibench/ folder")
    templates = read_templates(root / TEMPLATES_FILE)
    overrides = {**shipped_nouns(), **_local_overrides(root)}
    entities: dict[str, list[BenchEntity]] = {}
    for category in sorted({c for _, categories in templates for c in categories}):
        folder = root / category
        if not folder.is_dir():
            raise BenchmarkError(f"{root / TEMPLATES_FILE}: slot {{{category} object}} has no folder {folder}")
        entities[category] = [BenchEntity(f"{category}/{photo.stem}", class_noun(photo.stem, overrides), (photo,),
                                          category)
                              for photo in reference_images(folder)]
    cases = []
    for index, (written, categories) in enumerate(templates):
        template = format_template(written)
        for combination in itertools.product(*(entities[c] for c in categories)):
            key = f"t{index}-" + "+".join(e.name.replace("/", ".") for e in combination)
            cases.append(Case(key, combination[0].name, template, tuple(combination), written))
    return cases
