"""Reading image-caption inputs into a PCollection of `RawSample`.

Input formats (`input_format`):
- `img2dataset`: an img2dataset output folder in its `parquet` (image bytes in a `jpg`/`png`/`webp`
  column), `webdataset` (`*.tar` + metadata `*.parquet`) or `files` (`NNNNN/<key>.jpg` + metadata
  `NNNNN.parquet`) layout, or one shard file. Inputs img2dataset failed to fetch (status != success)
  are read too, as source errors with their key, so every input is accounted for.
- `folder`: a tree of `<key>.<image ext>` with `<key>.txt` beside it (key = relative path without
  extension, posix separators); `<key>.json` only supplies the url.
- `jsonl` / `parquet`: manifests with `image` (path relative to the manifest, absolute, or a URL),
  `caption`, optional `key` (default: the image path) and `url`. A path or a glob of manifests.
- `auto`: a `.jsonl` file, a `.parquet` with an `image` column = manifest; a folder with `*.tar` or
  img2dataset metadata Parquet files = img2dataset; any other folder = `folder`.

The input files are listed when the transform is built (`FileSystems.match`), split into units,
spread over workers with a Reshuffle and read there. Manifests are read in two steps (lines, then
images after a second Reshuffle) so that one large manifest still fetches its images in parallel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from pipelines import metrics
from pipelines.io.ledger import Ledger, unit_items
from pipelines.io.read_guard import inside_folder
from pipelines.local_checks import input_not_found_message
from pipelines.io.source_formats import (
    I2D_IMAGE_COLUMNS,
    ReadUnit,
    group_folder_files,
    has_scheme,
    load_entry,
    local_path,
    parquet_columns,
    stem,
)
from unimo_g.pipeline_config import ReadConfig
from unimo_g.records import RawSample

FORMATS = ("auto", "img2dataset", "folder", "jsonl", "parquet")
MANIFEST_FORMATS = ("jsonl", "parquet")
KEYS_PER_UNIT = 256  # folder layout: keys read by one worker call
_GLOB_CHARS = "*?["
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.bz2", ".jsonl.zst")


@dataclass(frozen=True)
class ReadPlan:
    """What `ReadSamples` reads: the resolved format, its layout and the units to spread.

    `format` is one of img2dataset, folder, jsonl, parquet; `layout` names the img2dataset output
    format (parquet, webdataset, files) and equals `format` otherwise.
    """

    format: str
    layout: str
    units: tuple[ReadUnit, ...]


# ---------------------------------------------------------------- listing


def _normalize(path: str) -> str:
    path = local_path(path)
    if has_scheme(path):
        return path.rstrip("/") if not path.endswith("://") else path
    return os.path.abspath(path)


def _match(pattern: str) -> list[str]:
    return sorted(meta.path for meta in FileSystems.match([pattern])[0].metadata_list)


def _is_local(path: str) -> bool:
    try:
        return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)
    except ValueError:
        raise ValueError(f"no filesystem for input path {path!r} (unknown scheme or missing Beam extra)") from None


def _is_dir(path: str) -> bool:
    if _is_local(path):
        return os.path.isdir(path)
    return path not in _match(path) and bool(_match(FileSystems.join(path, "*")))


def _is_jsonl(path: str) -> bool:
    return path.lower().endswith(_JSONL_SUFFIXES)


# ---------------------------------------------------------------- planning


def _columns(path: str) -> list[str]:
    """A Parquet file's column names; ValueError naming a file whose footer cannot be read."""
    try:
        return parquet_columns(path)
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from None


def _first_columns(paths: list[str]) -> list[str]:
    """The columns of the first readable Parquet file of `paths` (the format is told from it; an
    unreadable one is read, and rejected, as the format's own unit); [] when none is readable."""
    for path in paths:
        try:
            return _columns(path)
        except ValueError:
            continue
    return []


def _file_units(files: list[str], input_format: str, where: str) -> tuple[str, str, list[ReadUnit]]:
    """Units for explicit files (one path or a glob)."""
    kinds = []
    for path in files:
        lower = path.lower()
        if _is_jsonl(path) and input_format in ("auto", "jsonl"):
            kinds.append(("jsonl", "jsonl", ReadUnit("jsonl", path)))
        elif lower.endswith(".parquet") and input_format in ("auto", "parquet", "img2dataset"):
            columns = _columns(path)
            if "image" in columns and input_format in ("auto", "parquet"):
                kinds.append(("parquet", "parquet", ReadUnit("parquet", path)))
            elif any(c in columns for c in I2D_IMAGE_COLUMNS) and input_format in ("auto", "img2dataset"):
                kinds.append(("img2dataset", "parquet", ReadUnit("i2d_parquet", path)))
            else:
                raise ValueError(f"{path}: no image column fitting input format {input_format!r}")
        elif lower.endswith(".tar") and input_format in ("auto", "img2dataset"):
            companion = path[: -len(".tar")] + ".parquet"
            unit = ReadUnit("i2d_tar", path, companion if _match(companion) else None)
            kinds.append(("img2dataset", "webdataset", unit))
        else:
            raise ValueError(f"cannot read {path!r} as input format {input_format!r} (from input path {where!r})")
    formats = {(fmt, layout) for fmt, layout, _ in kinds}
    if len(formats) != 1:
        raise ValueError(f"input path {where!r} mixes input formats: {sorted(formats)}")
    (fmt, layout), = formats
    return fmt, layout, [unit for _, _, unit in kinds]


def _img2dataset_units(root: str) -> tuple[str, list[ReadUnit]] | None:
    """Detect an img2dataset output folder and its layout; None when it is not one."""
    tars = inside_folder(_match(FileSystems.join(root, "*.tar")), root)
    parquets = inside_folder(_match(FileSystems.join(root, "*.parquet")), root)
    if tars:
        by_stem = {stem(p): p for p in parquets}
        units = [ReadUnit("i2d_tar", tar, by_stem.pop(stem(tar), None)) for tar in tars]
        # metadata without its tar: the failures it lists are still inputs
        return "webdataset", units + [ReadUnit("i2d_failures", p) for p in by_stem.values()]
    if not parquets:
        return None
    columns = _first_columns(parquets)
    if any(c in columns for c in I2D_IMAGE_COLUMNS):
        return "parquet", [ReadUnit("i2d_parquet", p) for p in parquets]
    if {"key", "status"} <= set(columns):
        return "files", [ReadUnit("i2d_files", p, FileSystems.join(root, stem(p))) for p in parquets]
    return None


def _folder_units(root: str, keys_per_unit: int) -> list[ReadUnit]:
    groups = group_folder_files(root, _match(FileSystems.join(root, "**")))
    if not groups:
        raise ValueError(f"input folder {root!r} holds no image or caption files")
    return [ReadUnit("folder", root, groups=tuple(groups[i : i + keys_per_unit]))
            for i in range(0, len(groups), keys_per_unit)]


def _manifest_units(root: str, input_format: str) -> list[ReadUnit]:
    pattern = "*.jsonl*" if input_format == "jsonl" else "*.parquet"
    listed = _match(FileSystems.join(root, pattern))
    files = inside_folder([p for p in listed if input_format != "jsonl" or _is_jsonl(p)], root)
    if not files:
        raise ValueError(f"input folder {root!r} holds no {input_format} manifest")
    return [ReadUnit(input_format, p) for p in files]


def _dir_plan(root: str, input_format: str, keys_per_unit: int) -> ReadPlan:
    if input_format in MANIFEST_FORMATS:
        return ReadPlan(input_format, input_format, tuple(_manifest_units(root, input_format)))
    if input_format in ("auto", "img2dataset"):
        detected = _img2dataset_units(root)
        if detected is not None:
            layout, units = detected
            return ReadPlan("img2dataset", layout, tuple(units))
        if input_format == "img2dataset":
            raise ValueError(f"input folder {root!r} is not img2dataset output (no *.tar, no *.parquet with "
                             f"{'/'.join(I2D_IMAGE_COLUMNS)} or status columns)")
        parquets = _match(FileSystems.join(root, "*.parquet"))
        if parquets and "image" in _first_columns(parquets):
            return ReadPlan("parquet", "parquet", tuple(_manifest_units(root, "parquet")))
    return ReadPlan("folder", "folder", tuple(_folder_units(root, keys_per_unit)))


def plan_read(input_path: str, input_format: str = "auto", keys_per_unit: int = KEYS_PER_UNIT) -> ReadPlan:
    """List the inputs under `input_path` and split them into read units.

    Raises ValueError (one line, naming the value) for an unknown format, a missing path, or a path
    whose contents do not fit the format.
    """
    if input_format not in FORMATS:
        raise ValueError(f"unknown input format {input_format!r} (expected one of: {', '.join(FORMATS)})")
    if keys_per_unit < 1:
        raise ValueError(f"keys_per_unit must be >= 1, got {keys_per_unit!r}")
    path = _normalize(input_path)
    is_glob = any(char in path for char in _GLOB_CHARS)
    if not is_glob and _is_dir(path):
        return _dir_plan(path, input_format, keys_per_unit)
    files = _match(path)
    if not files:
        raise ValueError(input_not_found_message(input_path))
    if input_format == "folder":
        raise ValueError(f"input format 'folder' needs a folder, got the file(s) {input_path!r}")
    fmt, layout, units = _file_units(files, input_format, input_path)
    return ReadPlan(fmt, layout, tuple(units))


def planned_inputs(plan: ReadPlan, max_files: int = 2000) -> Optional[int]:
    """How many inputs `plan` lists, when that is known without reading them: folder keys and the
    rows of Parquet files (img2dataset's metadata, manifests), from their footers. None when a unit
    can only be counted by reading it (JSONL, a tar without its metadata) or when more than
    `max_files` footers would have to be read."""
    files = [unit.companion if unit.kind == "i2d_tar" else unit.path for unit in plan.units if unit.kind != "folder"]
    if any(path is None or not path.endswith(".parquet") for path in files) or len(files) > max_files:
        return None
    total = sum(len(unit.groups) for unit in plan.units if unit.kind == "folder")
    for path in files:
        with FileSystems.open(path) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


# ---------------------------------------------------------------- Beam


class _ReadUnitFn(beam.DoFn):
    """Read one unit: its RawSamples, or ManifestEntries for manifests (fetched in a later step).

    Keys in the `done` side input (--resume) are skipped unread. With a `ledger`, the keys read and
    skipped are recorded in parts, and each input is held back until its part is committed
    (`pipelines.io.ledger`): what a run wrote something for is in its ledger, even when it is killed.
    """

    def __init__(self, count: bool = True, ledger: Optional[Ledger] = None, config: ReadConfig = ReadConfig()):
        self.count = count
        self.ledger = ledger
        self.config = config
        self.inputs = beam.metrics.Metrics.counter(metrics.READ, metrics.INPUTS)
        self.source_errors = beam.metrics.Metrics.counter(metrics.READ, metrics.SOURCE_ERRORS)
        self.units = beam.metrics.Metrics.counter(metrics.READ, metrics.UNITS)
        self.skipped = beam.metrics.Metrics.counter(metrics.READ, metrics.SKIPPED)

    def process(self, indexed_unit: tuple[int, ReadUnit], done: Optional[Mapping] = None) -> Iterator:
        index, unit = indexed_unit
        if self.count:
            self.units.inc()
        counted_here = unit.kind not in MANIFEST_FORMATS  # manifest entries are counted once fetched
        writer = self.ledger.writer(index, unit) if self.ledger is not None else None
        held: list = []
        skipped = 0
        for position, key, item in unit_items(unit, done or {}, self.config):
            if item is None:
                skipped += 1
                if writer is not None:
                    writer.add(key, True)
                continue
            item = replace(item, origin=(index, position))
            if counted_here:
                self._count(item)
            if writer is None:
                yield item
                continue
            writer.add(key, False, len(getattr(item, "image", None) or b""))
            held.append(item)
            if writer.due():
                writer.flush()
                yield from held
                held = []
        if writer is not None:
            writer.flush()
            yield from held
        if self.count and skipped:
            self.skipped.inc(skipped)

    def _count(self, sample: RawSample) -> None:
        if not self.count:
            return
        self.inputs.inc()
        if sample.source_error is not None:
            self.source_errors.inc()


class _FetchImageFn(_ReadUnitFn):
    """Manifest entries -> RawSample, fetching each image."""

    def process(self, entry) -> Iterator[RawSample]:
        sample = load_entry(entry, self.config)
        self._count(sample)
        yield sample


class ReadSamples(beam.PTransform):
    """`input_path` in `input_format` -> PCollection[RawSample]; see the module docstring.

    The inputs are listed here, at construction, so a bad path or format fails before the job runs
    (ValueError). `plan` holds what will be read. `count=False` leaves the read counters alone
    (for a second read of the same inputs). `ledger` records what was read per unit; `done` (a
    PCollection of (key, anything), e.g. `pipelines.io.resume.DoneKeys`) lists keys to skip unread.
    `config` bounds every read (`pipelines.io.read_guard`).
    """

    def __init__(
        self, input_path: str, input_format: str = "auto", keys_per_unit: int = KEYS_PER_UNIT, count: bool = True,
        ledger: Optional[Ledger] = None, done: Optional[beam.PCollection] = None,
        config: ReadConfig = ReadConfig(),
    ):
        super().__init__()
        self.input_path = input_path
        self.count = count
        self.config = config
        self.ledger = ledger
        self.done = done
        self.plan = plan_read(input_path, input_format, keys_per_unit)

    def expand(self, pbegin):
        units = (
            pbegin
            | "ListUnits" >> beam.Create(list(enumerate(self.plan.units)), reshuffle=False)
            | "SpreadUnits" >> beam.Reshuffle()
        )
        done = {} if self.done is None else {"done": beam.pvalue.AsDict(self.done)}
        read_fn = _ReadUnitFn(self.count, self.ledger, self.config)
        if self.plan.format in MANIFEST_FORMATS:
            return (
                units
                | "ReadManifests" >> beam.ParDo(read_fn, **done)
                | "SpreadEntries" >> beam.Reshuffle()
                | "FetchImages" >> beam.ParDo(_FetchImageFn(self.count, self.config))
            )
        return units | "ReadUnits" >> beam.ParDo(read_fn, **done)
