"""MS-COCO captions for the zero-shot FID protocol (the paper's Table 1: FID-30K at 256x256).

    captions_val2014.json   {"images": [{"id", "file_name", ...}], "annotations": [{"id", "image_id", "caption"}]}
    val2014/                the images its `file_name`s name

The protocol's usual sample: N captions (30,000) drawn at random, seeded, from all captions of the
file; one image is generated per caption. The real side is the images of the sampled captions,
each once ("sampled"), or every image the file lists ("all").
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from unimo_g_apps.evaluation.cases import BenchmarkError, Case

COCO = "coco"
REFERENCES = ("sampled", "all")


@dataclass(frozen=True)
class CocoCaption:
    caption_id: int
    image_id: int
    caption: str
    file_name: str

    def case(self) -> Case:
        """A case without entities whose prompt is the caption (braces escaped for the template)."""
        template = self.caption.replace("{", "{{").replace("}", "}}")
        return Case(f"coco-{self.caption_id}", COCO, template, (), COCO)


def read_captions(path: str | Path) -> list[CocoCaption]:
    """Every caption of a COCO captions file, by caption id; whitespace collapsed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {int(image["id"]): str(image["file_name"]) for image in data["images"]}
        captions = [CocoCaption(int(a["id"]), int(a["image_id"]), re.sub(r"\s+", " ", str(a["caption"])).strip(),
                                files[int(a["image_id"])]) for a in data["annotations"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise BenchmarkError(f"{path}: not a COCO captions file: {type(err).__name__}: {err}") from None
    if not captions:
        raise BenchmarkError(f"{path}: no captions")
    return sorted(captions, key=lambda c: c.caption_id)


def sample_captions(captions: list[CocoCaption], count: int, seed: int) -> list[CocoCaption]:
    """`count` captions drawn without replacement with `random.Random(seed)` (all when there are
    fewer), returned by caption id."""
    if count >= len(captions):
        return list(captions)
    return sorted(random.Random(seed).sample(captions, count), key=lambda c: c.caption_id)


def real_images(captions: list[CocoCaption], sampled: list[CocoCaption], images_dir: str | Path,
                reference: str) -> list[Path]:
    """The real images FID compares with, sorted; BenchmarkError naming a missing one."""
    if reference not in REFERENCES:
        raise BenchmarkError(f"fid.reference must be one of {REFERENCES}, got {reference!r}")
    names = sorted({c.file_name for c in (sampled if reference == "sampled" else captions)})
    paths = [Path(images_dir) / name for name in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise BenchmarkError(f"{images_dir}: {len(missing)} of {len(paths)} COCO images missing, "
                             f"e.g. {missing[0].name}")
    return paths
