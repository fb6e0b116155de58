"""Benchmark folders for the paper's evaluation, read into one list of cases (`unimo_g_apps.evaluation.cases`).

DreamBench (google/dreambooth's `dataset/`): one folder of reference photos per subject and
`prompts_and_classes.txt`, which lists `subject_name,class` and two prompt lists written as
`'a {0} {1} in the jungle'.format(unique_token, class_token)`, one for objects and one for live
subjects (DreamBench's live subjects are its cats and dogs). Either BENCH/ or BENCH/dataset/ may
hold them. 30 subjects, 25 prompts each: 750 cases.

MultiBench as the authors published it (`Multibench/` of Weili-NLP/UNIMO-G: `prompt_templates.txt`
and `<category>/<name>.<ext>`): `unimo_g_apps.evaluation.multibench`, 2,300 cases. Either BENCH/ or BENCH/Multibench/.

A custom benchmark (this toolkit's own layout, for entities and prompts of your choosing):
BENCH/benchmark.json,

    {"entities": {"dog": {"class": "dog"}, "backpack": {"class": "backpack"}},
     "prompts": [{"entities": ["dog", "backpack"], "template": "a {0} wearing a {1} on the beach"}]}

and the reference photos of entity NAME in BENCH/entities/NAME/. A case's subject is its entities
joined with "+".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from unimo_g_apps.evaluation.cases import IMAGE_SUFFIXES, BenchEntity, BenchmarkError, Case, reference_images
from unimo_g_apps.evaluation.multibench import TEMPLATES_FILE, multibench_root, read_multibench

__all__ = ["IMAGE_SUFFIXES", "BenchEntity", "BenchmarkError", "Case", "LAYOUTS", "detect_layout", "read_benchmark",
           "read_custom", "read_dreambench", "read_multibench"]

DREAMBENCH_PROMPTS = "prompts_and_classes.txt"
CUSTOM_SPEC = "benchmark.json"
DREAMBENCH, MULTIBENCH, CUSTOM = "dreambench", "multibench", "custom"
LAYOUTS = (DREAMBENCH, MULTIBENCH, CUSTOM)
LIVE_CLASSES = ("cat", "dog")  # DreamBench's live subjects take the live-subject prompt list
_PROMPT_LINE = re.compile(r"""^\s*(['"])(.*)\1\s*\.format\(\s*unique_token\s*,\s*class_token\s*\)""")
_SUBJECT_LINE = re.compile(r"^([A-Za-z0-9_]+),(.+)$")


def detect_layout(bench: str | Path) -> str:
    bench = Path(bench)
    if multibench_root(bench) is not None:
        return MULTIBENCH
    if _dreambench_root(bench) is not None:
        return DREAMBENCH
    if (bench / CUSTOM_SPEC).is_file():
        return CUSTOM
    raise BenchmarkError(f"{bench}: no {TEMPLATES_FILE} (MultiBench), {DREAMBENCH_PROMPTS} (DreamBench) or "
                         f"{CUSTOM_SPEC} (custom benchmark) in it or in its Multibench/ or dataset/ folder")


def read_benchmark(bench: str | Path, layout: str = "auto") -> list[Case]:
    """The cases of a benchmark folder, in a stable order."""
    layout = detect_layout(bench) if layout == "auto" else layout
    if layout == DREAMBENCH:
        return read_dreambench(bench)
    if layout == MULTIBENCH:
        return read_multibench(bench)
    if layout == CUSTOM:
        return read_custom(bench)
    raise BenchmarkError(f"unknown benchmark layout {layout!r}; use auto or one of {', '.join(LAYOUTS)}")


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
        entity = BenchEntity(name, class_name, reference_images(root / name))
        for index, prompt in enumerate(prompts["live" if class_name in LIVE_CLASSES else "object"]):
            # "{0} {1}" is the unique token and the class: the phrase the entity image replaces
            template = prompt.replace("{0} {1}", "{0}").replace("{1}", "{0}")
            cases.append(Case(f"{name}-{index:03d}", name, template, (entity,), prompt))
    return cases


def read_custom(bench: str | Path) -> list[Case]:
    bench = Path(bench)
    path = bench / CUSTOM_SPEC
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        described = spec["entities"]
        entities = {name: BenchEntity(name, str(value["class"]), reference_images(bench / "entities" / name))
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
                              tuple(entities[n] for n in names), template))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise BenchmarkError(f"{path}: {type(err).__name__}: {err}") from None
    if not cases:
        raise BenchmarkError(f"{path}: no prompts")
    return cases
