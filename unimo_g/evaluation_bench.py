"""Benchmark folders for the paper's evaluation, read into one list of cases.

DreamBench (google/dreambooth's `dataset/`): one folder of reference photos per subject and
`prompts_and_classes.txt`, which lists `subject_name,class` and two prompt lists written as
`'a {0} {1} in the jungle'.format(unique_token, class_token)`, one for objects and one for live
subjects (DreamBench's live subjects are its cats and dogs). Either BENCH/ or BENCH/dataset/ may
hold them.

MultiBench (the paper's multi-entity benchmark; this toolkit's layout): BENCH/multibench.json,

    {"entities": {"dog": {"class": "dog"}, "backpack": {"class": "backpack"}},
     "prompts": [{"entities": ["dog", "backpack"], "template": "a {0} wearing a {1} on the beach"}]}

and the reference photos of entity NAME in BENCH/entities/NAME/.

A case is one prompt for one subject (DreamBench) or one combination of entities (MultiBench).
Its template has a slot `{k}` per entity; the multimodal prompt fills slot k with entity k's image
(the phrase is replaced by the image, determiners stay text, as in training), and CLIP-T's text
fills it with the entity's class noun.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
DREAMBENCH_PROMPTS = "prompts_and_classes.txt"
MULTIBENCH_SPEC = "multibench.json"
DREAMBENCH, MULTIBENCH = "dreambench", "multibench"
LIVE_CLASSES = ("cat", "dog")  # DreamBench's live subjects take the live-subject prompt list
_PROMPT_LINE = re.compile(r"""^\s*(['"])(.*)\1\s*\.format\(\s*unique_token\s*,\s*class_token\s*\)""")
_SUBJECT_LINE = re.compile(r"^([A-Za-z0-9_]+),(.+)$")


class BenchmarkError(ValueError):
    """A benchmark folder that cannot be read; the message names the file."""


@dataclass(frozen=True)
class BenchEntity:
    """A subject or entity: its name, class noun and reference photos (sorted paths)."""

    name: str
    class_name: str
    images: tuple[Path, ...]


@dataclass(frozen=True)
class Case:
    """One prompt: `key` names its images folder; `subject` is its row in the per-subject table."""

    key: str
    subject: str
    template: str
    entities: tuple[BenchEntity, ...]

    def prompt(self, entity_image: int = 0) -> str:
        """The multimodal prompt in `unimo_g.generation.parse_prompt`'s syntax: slot k becomes
        `<img>PATH</img>` with reference photo `entity_image` of entity k."""
        return self.template.format(*(f"<img>{e.images[min(entity_image, len(e.images) - 1)]}</img>"
                                      for e in self.entities))

    def text(self) -> str:
        """The prompt as text for CLIP-T: slot k becomes entity k's class noun."""
        return re.sub(r"\s+", " ", self.template.format(*(e.class_name for e in self.entities))).strip()


def detect_layout(bench: str | Path) -> str:
    bench = Path(bench)
    if (bench / MULTIBENCH_SPEC).is_file():
        return MULTIBENCH
    if _dreambench_root(bench) is not None:
        return DREAMBENCH
    raise BenchmarkError(f"{bench}: neither {MULTIBENCH_SPEC} (MultiBench) nor {DREAMBENCH_PROMPTS} (DreamBench)")


def read_benchmark(bench: str | Path, layout: str = "auto") -> list[Case]:
    """The cases of a benchmark folder, in a stable order."""
    layout = detect_layout(bench) if layout == "auto" else layout
    if layout == DREAMBENCH:
        return read_dreambench(bench)
    if layout == MULTIBENCH:
        return read_multibench(bench)
    raise BenchmarkError(f"unknown benchmark layout {layout!r}; use auto, {DREAMBENCH} or {MULTIBENCH}")


def _images(folder: Path) -> tuple[Path, ...]:
    images = tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)) if folder.is_dir() else ()
    if not images:
        raise BenchmarkError(f"{folder}: no reference images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _dreambench_root(bench: Path):
    for root in (bench, bench / "dataset"):
        if (root / DREAMBENCH_PROMPTS).is_file():
            return root
    return None


def read_dreambench(bench: str | Path) -> list[Case]:
    root = _dreambench_root(Path(bench))
    if root is None:
        raise BenchmarkError(f"{bench}: no {DREAMBENCH_PROMPTS} in it or in its dataset/ folder")
    path = root / DREAMBENCH_PROMPTS
    subjects: list[tuple[str, str]] = []
    prompts: dict[str, list[str]] = {"object": [], "live": []}
    section = None
    for line in path.read_text(encoding="utf-8").splitlines():
        lowered = line.strip().lower()
        if lowered.startswith("subject_name"):
            section = "classes"
        elif lowered.startswith("object prompts"):
            section = "object"
        elif lowered.startswith("live subject prompts"):
            section = "live"
        elif section == "classes" and _SUBJECT_LINE.match(line.strip()):
            name, class_name = _SUBJECT_LINE.match(line.strip()).groups()
            subjects.append((name, class_name.strip()))
        elif section in prompts and _PROMPT_LINE.match(line):
            prompts[section].append(_PROMPT_LINE.match(line).group(2))
    if not subjects or not prompts["object"] or not prompts["live"]:
        raise BenchmarkError(f"{path}: expected a subject_name,class list and the object and live prompt lists")
    cases = []
    for name, class_name in subjects:
        entity = BenchEntity(name, class_name, _images(root / name))
        for index, prompt in enumerate(prompts["live" if class_name in LIVE_CLASSES else "object"]):
            # "{0} {1}" is the unique token and the class: the phrase the entity image replaces
            template = prompt.replace("{0} {1}", "{0}").replace("{1}", "{0}")
            cases.append(Case(f"{name}-{index:03d}", name, template, (entity,)))
    return cases


def read_multibench(bench: str | Path) -> list[Case]:
    bench = Path(bench)
    path = bench / MULTIBENCH_SPEC
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        described = spec["entities"]
        entities = {name: BenchEntity(name, str(value["class"]), _images(bench / "entities" / name))
                    for name, value in sorted(described.items())}
        cases = []
        for index, prompt in enumerate(spec["prompts"]):
            names = list(prompt["entities"])
            unknown = [n for n in names if n not in entities]
            if unknown:
                raise BenchmarkError(f"{path}: prompt {index} names unknown entities {unknown}")
            template = str(prompt["template"])
            if any(f"{{{k}}}" not in template for k in range(len(names))):
                raise BenchmarkError(f"{path}: prompt {index} needs a slot {{k}} for each of its {len(names)} entities")
            cases.append(Case(f"{'+'.join(names)}-{index:03d}", "+".join(names), template,
                              tuple(entities[n] for n in names)))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise BenchmarkError(f"{path}: {type(err).__name__}: {err}") from None
    if not cases:
        raise BenchmarkError(f"{path}: no prompts")
    return cases
