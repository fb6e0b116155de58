"""What a benchmark reader returns: entities with their reference photos, and cases (one prompt each).

A case's template has a slot `{k}` per entity. The multimodal prompt fills slot k with entity k's
image (compose "replace": the phrase becomes the image, determiners stay text, as in training;
"append": the class noun stays text and the image follows it); CLIP-T's text fills it with the
entity's class noun.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")  # matched case-insensitively; MPO files are .jpg
COMPOSE_MODES = ("replace", "append")


class BenchmarkError(ValueError):
    """A benchmark folder that cannot be read; the message names the file."""


@dataclass(frozen=True)
class BenchEntity:
    """A subject or entity: `name` is unique in its benchmark (MultiBench: `category/stem`),
    `class_name` its class noun, `images` its reference photos (sorted paths), `category` its
    MultiBench category folder ("" elsewhere)."""

    name: str
    class_name: str
    images: tuple[Path, ...]
    category: str = ""


@dataclass(frozen=True)
class Case:
    """One prompt. `key` names its images folder (unique, filesystem-safe); `subject` is its row in
    the per-subject table and the unit `--subjects` draws (DreamBench: the subject; MultiBench: the
    entity of the first slot); `template_name` is the prompt template as the benchmark writes it,
    the unit results are split by and subsets spread over."""

    key: str
    subject: str
    template: str
    entities: tuple[BenchEntity, ...]
    template_name: str = ""

    def prompt(self, entity_image: int = 0, compose: str = "replace") -> str:
        """The multimodal prompt in `unimo_g.inference.parse_prompt`'s syntax: slot k becomes
        `<img>PATH</img>` with reference photo `entity_image` of entity k (clamped to the photos it
        has), preceded by its class noun with compose "append"."""
        if compose not in COMPOSE_MODES:
            raise ValueError(f"compose must be one of {COMPOSE_MODES}, got {compose!r}")
        tags = []
        for entity in self.entities:
            tag = f"<img>{entity.images[min(entity_image, len(entity.images) - 1)]}</img>"
            tags.append(f"{entity.class_name} {tag}" if compose == "append" else tag)
        return self.template.format(*tags)

    def text(self) -> str:
        """The prompt as text for CLIP-T: slot k becomes entity k's class noun."""
        return re.sub(r"\s+", " ", self.template.format(*(e.class_name for e in self.entities))).strip()


def reference_images(folder: Path) -> tuple[Path, ...]:
    """The photos of a folder (`IMAGE_SUFFIXES`, any case), sorted by name; BenchmarkError if none."""
    photos = tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                          and not p.name.startswith("."))) if folder.is_dir() else ()
    if not photos:
        raise BenchmarkError(f"{folder}: no reference images ({', '.join(IMAGE_SUFFIXES)})")
    return photos
