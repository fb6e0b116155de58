"""Readers of one input unit each: an img2dataset shard, a batch of folder keys, a manifest.

Plain functions yielding `RawSample`s (or `ManifestEntry`s to fetch), wrapped by `pipelines.io.sources`.
Every byte is read through Beam's `FileSystems`, so local paths, gs:// and s3:// all work; http(s)
URLs through `pipelines.io.read_guard.fetch_http`; paths with a scheme Beam does not know (memory://,
...) fall back to fsspec. Every read obeys a `ReadConfig` (`pipelines.io.read_guard`): a byte cap, and
for a manifest's images confined local paths, allowed schemes and public http(s) addresses only.
Expected failures (a failed download recorded by img2dataset, a missing file, a malformed manifest
line, a refused or over-size read) become `RawSample(source_error=...)` with a stable token in
`error_reason`; they never raise. What a source says about an input besides its image, caption and
url (img2dataset's metadata columns or `.json`, a folder's `<key>.json` sidecar, a manifest's other
fields) goes into `RawSample.extra` as raw values, on failures too (`unimo_g.provenance` types it).
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from dataclasses import dataclass, field, replace
from typing import IO, Iterable, Iterator, Optional, Union

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.io.read_guard import (
    HTTP_SCHEMES,
    ReadRefused,
    check_scheme,
    confine_local,
    confine_to_root,
    fetch_http,
    iter_lines_capped,
    join_remote,
    read_capped,
    scheme_of,
)
from unimo_g.pipeline_config import ReadConfig
from unimo_g.records import RawSample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif")
CAPTION_EXTENSION = ".txt"
METADATA_EXTENSION = ".json"
I2D_IMAGE_COLUMNS = ("jpg", "png", "webp")  # img2dataset names the column after --encode_format
I2D_SUCCESS = "success"
PARQUET_BATCH_ROWS = 256  # rows per Arrow batch while streaming a Parquet file (bounds memory)
MANIFEST_FIELDS = ("image", "caption", "key", "url")  # a manifest's other fields are the input's metadata

_FILE_URL = "file://"
DEFAULT_READ = ReadConfig()
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# ---------------------------------------------------------------- paths


def local_path(path: str) -> str:
    """`file:///x` -> `/x`; other paths unchanged (Beam's local filesystem takes plain paths)."""
    return path[len(_FILE_URL):] if path.startswith(_FILE_URL) else path


def has_scheme(path: str) -> bool:
    """True for URLs such as gs://b/x, s3://b/x, https://h/x."""
    return _SCHEME.match(path) is not None


def open_binary(path: str, compressed: bool = False) -> IO[bytes]:
    """Open `path` for reading. `compressed=True` decompresses by extension (.gz, .bz2, ...)."""
    path = local_path(path)
    try:
        FileSystems.get_filesystem(path)
    except ValueError:
        return _open_fsspec(path, compressed)
    compression = CompressionTypes.AUTO if compressed else CompressionTypes.UNCOMPRESSED
    return FileSystems.open(path, compression_type=compression)


def _open_fsspec(path: str, compressed: bool) -> IO[bytes]:
    try:
        import fsspec
    except ImportError:
        raise OSError(f"no filesystem for {path!r}: Beam does not know its scheme; fsspec is not installed") from None
    try:
        return fsspec.open(path, "rb", compression="infer" if compressed else None).open()
    except (ValueError, ImportError) as err:  # unknown protocol / protocol package missing
        raise OSError(f"no filesystem for {path!r}: {err}") from None


def read_bytes(path: str, max_bytes: int = DEFAULT_READ.max_bytes) -> bytes:
    """The bytes of `path`; ReadRefused(`too_large`) past `max_bytes`, read no further."""
    with open_binary(path) as handle:
        return read_capped(handle, max_bytes, path)


def resolve(base_dir: str, path: str, config: ReadConfig = DEFAULT_READ) -> str:
    """A manifest's image `path` as the path or URL to read; `base_dir` is the manifest's folder.

    URLs must use a scheme of `config.remote_schemes`; relative paths in a remote manifest stay
    under its bucket; local paths must resolve inside `base_dir` or `config.allowed_roots` (an
    absolute local path named by a remote manifest: inside `config.allowed_roots`). Raises
    ReadRefused (`scheme_not_allowed`, `path_not_allowed`).
    """
    if scheme_of(path) is not None:
        check_scheme(path, config)
        return path
    if scheme_of(base_dir) is not None:
        if not path.startswith((_FILE_URL, "/")):
            return join_remote(base_dir, path)
        return confine_local(path, None, config)
    return confine_local(path, base_dir, config)


def parent(path: str) -> str:
    return FileSystems.split(local_path(path))[0]


def stem(path: str) -> str:
    """File name without directory and without its last extension."""
    name = FileSystems.split(path)[1]
    return name.rsplit(".", 1)[0] if "." in name else name


def source_error(key: str, reason: str, detail: str, caption=None, url=None, extra=None) -> RawSample:
    return RawSample(source_key=key, image=None, caption=caption, url=url, source_error=detail,
                     error_reason=reason, extra=dict(extra or {}))


# ---------------------------------------------------------------- units


@dataclass(frozen=True)
class KeyGroup:
    """The files of one key in a folder tree: image files (normally one), caption and metadata."""

    key: str
    images: tuple[str, ...] = ()
    caption: Optional[str] = None
    metadata: Optional[str] = None


@dataclass(frozen=True)
class ReadUnit:
    """One piece of input read by one worker.

    kinds: `i2d_parquet` (path: shard), `i2d_tar` (path: tar, companion: metadata Parquet or None),
    `i2d_failures` (path: a metadata Parquet whose tar is absent: its failed rows), `i2d_files`
    (path: metadata Parquet, companion: the shard's image folder), `folder` (groups), `jsonl` /
    `parquet` (path: manifest).
    """

    kind: str
    path: str
    companion: Optional[str] = None
    groups: tuple[KeyGroup, ...] = ()


@dataclass(frozen=True)
class ManifestEntry:
    """A manifest line or row before its image is fetched.

    `image_path` is resolved (absolute or a URL); `image` holds inline bytes of Parquet manifests
    with a binary `image` column. A malformed entry carries `source_error` and `error_reason`.
    """

    key: str
    caption: Optional[str] = None
    url: Optional[str] = None
    image_path: Optional[str] = None
    image: Optional[bytes] = None
    source_error: Optional[str] = None
    error_reason: Optional[str] = None
    origin: tuple[int, int] = (0, 0)  # as RawSample.origin
    extra: dict = field(default_factory=dict)  # the entry's other fields (RawSample.extra)


# ---------------------------------------------------------------- img2dataset


def parquet_columns(path: str) -> list[str]:
    with open_binary(path) as handle:
        return pq.read_schema(handle).names


def metadata_columns(path: str, keep: Iterable[str] = ()) -> list[str]:
    """The columns of a Parquet file to read as an input's metadata: every column but binary ones
    (image bytes are never read as metadata), plus the columns named in `keep` that it has."""
    with open_binary(path) as handle:
        schema = pq.read_schema(handle)
    keep = set(keep)
    return [f.name for f in schema
            if f.name in keep or not (pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type))]


def _without(row: dict, names: Iterable[str]) -> dict:
    return {k: v for k, v in row.items() if k not in names}


def _iter_rows(path: str, columns: Optional[Iterable[str]] = None) -> Iterator[dict]:
    with open_binary(path) as handle:
        parquet = pq.ParquetFile(handle)
        wanted = None if columns is None else [c for c in columns if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted):
            yield from batch.to_pylist()


def _i2d_failure(row: dict, where: str) -> RawSample:
    status = row.get("status") or "failed"
    detail = row.get("error_message") or status
    key = str(row["key"]) if row.get("key") is not None else where
    return source_error(key, status, detail, caption=row.get("caption"), url=row.get("url"),
                        extra=_without(row, I2D_IMAGE_COLUMNS))


def _too_large(key: str, size: int, config: ReadConfig, caption=None, url=None, extra=None) -> Optional[RawSample]:
    if size <= config.max_bytes:
        return None
    return source_error(key, "too_large", f"{key}: {size} bytes > read.max_bytes={config.max_bytes}", caption, url,
                        extra)


def read_i2d_parquet(path: str, config: ReadConfig = DEFAULT_READ) -> Iterator[RawSample]:
    """An img2dataset shard in its `parquet` output format: one row per input URL, image bytes inline;
    every other non-binary column is the input's metadata."""
    columns = parquet_columns(path)
    image_column = next((c for c in I2D_IMAGE_COLUMNS if c in columns), None)
    for index, row in enumerate(_iter_rows(path, metadata_columns(path, keep=[image_column]))):
        where = f"{path}:{index}"
        if row.get("status", I2D_SUCCESS) != I2D_SUCCESS:
            yield _i2d_failure(row, where)
        else:
            key = str(row["key"]) if row.get("key") is not None else where
            image = row.get(image_column)
            extra = _without(row, [image_column])
            yield _too_large(key, len(image or b""), config, row.get("caption"), row.get("url"), extra) or RawSample(
                source_key=key, image=image, caption=row.get("caption"), url=row.get("url"), extra=extra)


def read_i2d_failures(metadata_path: Optional[str]) -> Iterator[RawSample]:
    """The failed rows of an img2dataset metadata Parquet (its successes live in the tar or folder)."""
    if metadata_path is None:
        return
    for index, row in enumerate(_iter_rows(metadata_path, metadata_columns(metadata_path))):
        if row.get("status") != I2D_SUCCESS:
            yield _i2d_failure(row, f"{metadata_path}:{index}")


def _split_member(name: str) -> tuple[str, str]:
    """WebDataset naming: the key is the path up to the first dot of the file name."""
    directory, _, base = name.rpartition("/")
    head, dot, extension = base.partition(".")
    return (f"{directory}/{head}" if directory else head), (dot + extension).lower()


def _sample_from_members(key: str, members: dict[str, bytes]) -> RawSample:
    images = [ext for ext in members if ext in IMAGE_EXTENSIONS]
    metadata = {}
    if METADATA_EXTENSION in members:
        try:
            metadata = json.loads(members[METADATA_EXTENSION])
        except (json.JSONDecodeError, UnicodeDecodeError):
            metadata = {}
        metadata = metadata if isinstance(metadata, dict) else {}
    url = metadata.get("url")
    caption = metadata.get("caption")
    if CAPTION_EXTENSION in members:
        try:
            caption = members[CAPTION_EXTENSION].decode("utf-8-sig")
        except UnicodeDecodeError as err:
            return source_error(key, "caption_not_utf8", f"{key}{CAPTION_EXTENSION}: {err}", url=url, extra=metadata)
    if len(images) > 1:
        return source_error(key, "ambiguous_image", f"several images for one key: {sorted(images)}", caption, url,
                            metadata)
    image = members[images[0]] if images else None
    return RawSample(source_key=key, image=image, caption=caption, url=url, extra=metadata)


def read_webdataset(
    tar_path: str, metadata_path: Optional[str] = None, config: ReadConfig = DEFAULT_READ
) -> Iterator[RawSample]:
    """An img2dataset `webdataset` shard: `<key>.jpg/.txt/.json` members (successes only), streamed,
    plus the failed rows of the metadata Parquet beside it. A key with a member over
    `config.max_bytes` is a `too_large` source error; that member is skipped, never extracted.

    A tar that breaks mid-way turns the key being read into an `unreadable_file` source error; the
    keys after it are lost (they were never seen).
    """
    seen: set[str] = set()
    current, members, oversize = None, {}, None
    with open_binary(tar_path) as handle:
        try:
            with tarfile.open(fileobj=handle, mode="r|*") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    key, extension = _split_member(member.name)
                    if key != current:
                        if current is not None:
                            yield oversize or _sample_from_members(current, members)
                        current, members, oversize = None, {}, None
                        if key in seen:  # members of one key must be adjacent in a WebDataset tar
                            yield source_error(key, "duplicate_key", f"{tar_path}: key {key!r} appears twice")
                            continue
                        seen.add(key)
                        current = key
                    if member.size > config.max_bytes:
                        oversize = oversize or source_error(
                            key, "too_large", f"{tar_path}: member {member.name} has {member.size} bytes "
                                              f"> read.max_bytes={config.max_bytes}")
                        continue
                    members[extension] = archive.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError) as err:
            yield source_error(current or f"{tar_path}:end", "unreadable_file", f"{tar_path}: {err}")
            current = None
    if current is not None:
        yield oversize or _sample_from_members(current, members)
    yield from read_i2d_failures(metadata_path)


def read_i2d_files(metadata_path: str, image_dir: str, config: ReadConfig = DEFAULT_READ) -> Iterator[RawSample]:
    """An img2dataset `files` shard: `NNNNN.parquet` lists every input with its status; the images
    of the successes are `NNNNN/<key>.<ext>`."""
    by_key: dict[str, list[str]] = {}
    for meta in FileSystems.match([FileSystems.join(image_dir, "*")])[0].metadata_list:
        name = FileSystems.split(meta.path)[1]
        key, _, extension = name.rpartition(".")
        if "." + extension.lower() in IMAGE_EXTENSIONS:
            by_key.setdefault(key, []).append(meta.path)
    for index, row in enumerate(_iter_rows(metadata_path, metadata_columns(metadata_path))):
        where = f"{metadata_path}:{index}"
        if row.get("status") != I2D_SUCCESS:
            yield _i2d_failure(row, where)
            continue
        key = str(row["key"]) if row.get("key") is not None else where
        paths = by_key.get(key, [])
        if len(paths) != 1:
            reason = "missing_image_file" if not paths else "ambiguous_image"
            yield source_error(key, reason, f"{image_dir}/{key}.*: {len(paths)} image files", row.get("caption"),
                               row.get("url"), row)
            continue
        try:
            path = confine_to_root(paths[0], image_dir)
        except ReadRefused as err:
            yield source_error(key, err.reason, err.detail, row.get("caption"), row.get("url"), row)
            continue
        yield _fetch(key, path, row.get("caption"), row.get("url"), config, row)


def _fetch(key: str, path: str, caption: Optional[str], url: Optional[str], config: ReadConfig,
           extra: Optional[dict] = None) -> RawSample:
    try:
        if scheme_of(path) in HTTP_SCHEMES:
            image = fetch_http(path, config)
        else:
            image = read_bytes(path, config.max_bytes)
    except ReadRefused as err:
        return source_error(key, err.reason, err.detail, caption, url, extra)
    except FileNotFoundError:
        return source_error(key, "missing_image_file", f"missing image file: {path}", caption, url, extra)
    except OSError as err:  # BeamIOError is an OSError
        return source_error(key, "unreadable_file", f"{path}: {err}", caption, url, extra)
    return RawSample(source_key=key, image=image, caption=caption, url=url, extra=dict(extra or {}))


# ---------------------------------------------------------------- folder


def _read_text(path: str, max_bytes: int) -> str:
    return read_bytes(path, max_bytes).decode("utf-8-sig")


def read_folder_group(group: KeyGroup, config: ReadConfig = DEFAULT_READ, root: Optional[str] = None) -> RawSample:
    """One key of a folder tree: `<key>.<image ext>` with `<key>.txt`, and the `<key>.json` sidecar
    img2dataset's files layout writes: its url and the input's metadata. A missing half stays None
    (rejected downstream as missing_image / missing_caption). With `root` (the input folder), a file
    that is a link leaving it makes the key a `path_not_allowed` source error, and none of its
    files is opened."""
    if root is not None:
        try:
            group = KeyGroup(group.key, tuple(confine_to_root(p, root) for p in group.images),
                             None if group.caption is None else confine_to_root(group.caption, root),
                             None if group.metadata is None else confine_to_root(group.metadata, root))
        except ReadRefused as err:
            return source_error(group.key, err.reason, err.detail)
    metadata = {}
    if group.metadata is not None:
        try:
            metadata = json.loads(read_bytes(group.metadata, config.max_bytes))
        except (OSError, ReadRefused, json.JSONDecodeError, UnicodeDecodeError):
            metadata = {}  # the sidecar is optional: a bad one only loses the url and metadata
        metadata = metadata if isinstance(metadata, dict) else {}
    url = metadata.get("url") if isinstance(metadata.get("url"), str) else None
    caption = None
    if group.caption is not None:
        try:
            caption = _read_text(group.caption, config.max_bytes)
        except ReadRefused as err:
            return source_error(group.key, err.reason, err.detail, url=url, extra=metadata)
        except UnicodeDecodeError as err:
            return source_error(group.key, "caption_not_utf8", f"{group.caption}: {err}", url=url, extra=metadata)
        except OSError as err:
            return source_error(group.key, "unreadable_file", f"{group.caption}: {err}", url=url, extra=metadata)
    if len(group.images) > 1:
        names = ", ".join(FileSystems.split(p)[1] for p in group.images)
        return source_error(group.key, "ambiguous_image", f"several images for one key: {names}", caption, url,
                            metadata)
    if not group.images:
        return RawSample(source_key=group.key, image=None, caption=caption, url=url, extra=metadata)
    return _fetch(group.key, group.images[0], caption, url, config, metadata)


def group_folder_files(root: str, paths: Iterable[str]) -> list[KeyGroup]:
    """Group files under `root` by key = relative path without extension (posix separators).

    Only image, `.txt` and `.json` files count; hidden files and folders (a `.`-prefixed part) are
    skipped. A `.json` alone does not make a key. Sorted by key.
    """
    prefix = root.rstrip("/") + "/"
    images: dict[str, list[str]] = {}
    captions: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for path in paths:
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix):].replace("\\", "/")
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        key, extension = posixpath.splitext(relative)
        extension = extension.lower()
        if extension in IMAGE_EXTENSIONS:
            images.setdefault(key, []).append(path)
        elif extension == CAPTION_EXTENSION:
            captions[key] = path
        elif extension == METADATA_EXTENSION:
            metadata[key] = path
    keys = sorted(set(images) | set(captions))
    return [KeyGroup(key, tuple(sorted(images.get(key, ()))), captions.get(key), metadata.get(key)) for key in keys]


# ---------------------------------------------------------------- manifests


def _entry_from_record(record, key_default: str, base_dir: str, config: ReadConfig) -> ManifestEntry:
    if not isinstance(record, dict):
        return ManifestEntry(key_default, source_error=f"{key_default}: not a JSON object",
                             error_reason="bad_manifest_line")
    image, caption, url = record.get("image"), record.get("caption"), record.get("url")
    extra = _without(record, MANIFEST_FIELDS)
    if caption is not None and not isinstance(caption, str):
        return ManifestEntry(key_default, source_error=f"{key_default}: caption is not a string: {caption!r}"[:300],
                             error_reason="bad_manifest_line", extra=extra)
    if image is not None and not isinstance(image, (str, bytes)):
        return ManifestEntry(key_default, source_error=f"{key_default}: image is not a path: {image!r}"[:300],
                             error_reason="bad_manifest_line", extra=extra)
    key = record.get("key")
    if key is None:
        key = image if isinstance(image, str) else key_default
    url = url if isinstance(url, str) else None
    if isinstance(image, bytes):
        if len(image) > config.max_bytes:
            return ManifestEntry(str(key), caption, url, source_error=f"{key}: inline image of {len(image)} bytes > "
                                 f"read.max_bytes={config.max_bytes}", error_reason="too_large", extra=extra)
        return ManifestEntry(str(key), caption, url, image=image, extra=extra)
    try:
        path = resolve(base_dir, image, config) if image else None
    except ReadRefused as err:
        return ManifestEntry(str(key), caption, url, source_error=err.detail, error_reason=err.reason, extra=extra)
    return ManifestEntry(str(key), caption, url, image_path=path, extra=extra)


def read_jsonl_manifest(path: str, config: ReadConfig = DEFAULT_READ) -> Iterator[ManifestEntry]:
    """JSON lines `{"image": path, "caption": str, "key"?: str, "url"?: str}`; `.gz` etc. decompressed.

    A malformed line becomes an entry with key `<manifest>:<line number>` and a `bad_manifest_line`
    error; a line over `config.max_bytes` a `too_large` one (its bytes are skipped, not held).
    """
    base_dir = parent(path)
    with open_binary(path, compressed=True) as handle:
        for number, line in enumerate(iter_lines_capped(handle, config.max_bytes), start=1):
            where = f"{path}:{number}"
            if line is None:
                yield ManifestEntry(where, source_error=f"{where}: line longer than read.max_bytes={config.max_bytes}",
                                    error_reason="too_large")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                yield ManifestEntry(where, source_error=f"{where}: {err}", error_reason="bad_manifest_line")
                continue
            yield _entry_from_record(record, where, base_dir, config)


def read_parquet_manifest(path: str, config: ReadConfig = DEFAULT_READ) -> Iterator[ManifestEntry]:
    """Parquet rows with columns `image` (a path, or the image bytes), `caption`, optional `key`, `url`;
    the other non-binary columns are the input's metadata (other binary columns are not read)."""
    base_dir = parent(path)
    for index, row in enumerate(_iter_rows(path, metadata_columns(path, keep=["image"]))):
        yield _entry_from_record(row, f"{path}:{index}", base_dir, config)


def read_manifest(unit: ReadUnit, config: ReadConfig = DEFAULT_READ) -> Iterator[ManifestEntry]:
    reader = read_jsonl_manifest if unit.kind == "jsonl" else read_parquet_manifest
    return reader(unit.path, config)


def load_entry(entry: Union[ManifestEntry, RawSample], config: ReadConfig = DEFAULT_READ) -> RawSample:
    """Fetch a manifest entry's image. A missing file becomes a `missing_image_file` source error.

    A RawSample (a manifest that could not be read at all) passes through. The sample keeps the
    entry's `origin`. Reads obey `config` (see `_fetch`).
    """
    if isinstance(entry, RawSample):
        return entry
    return replace(_load_entry(entry, config), origin=entry.origin)


def _load_entry(entry: ManifestEntry, config: ReadConfig) -> RawSample:
    if entry.source_error is not None:
        return source_error(entry.key, entry.error_reason or "source_error", entry.source_error, entry.caption,
                            entry.url, entry.extra)
    if entry.image_path is None:
        return RawSample(source_key=entry.key, image=entry.image, caption=entry.caption, url=entry.url,
                         extra=entry.extra)
    return _fetch(entry.key, entry.image_path, entry.caption, entry.url, config, entry.extra)


# ---------------------------------------------------------------- dispatch


def read_unit(unit: ReadUnit, config: ReadConfig = DEFAULT_READ) -> Iterator[Union[RawSample, ManifestEntry]]:
    """Everything in one unit: RawSamples, or ManifestEntries for manifest units; reads obey `config`.

    A file that cannot be read or parsed at all (a corrupt Parquet footer, a broken manifest file)
    ends as one `unreadable_file` source error keyed by its path, after whatever it yielded before.
    """
    try:
        yield from _read_unit(unit, config)
    except (OSError, pa.ArrowException) as err:
        yield source_error(unit.path, "unreadable_file", f"{unit.path}: {type(err).__name__}: {err}")


def _read_unit(unit: ReadUnit, config: ReadConfig) -> Iterator[Union[RawSample, ManifestEntry]]:
    if unit.kind == "i2d_parquet":
        yield from read_i2d_parquet(unit.path, config)
    elif unit.kind == "i2d_tar":
        yield from read_webdataset(unit.path, unit.companion, config)
    elif unit.kind == "i2d_failures":
        yield from read_i2d_failures(unit.path)
    elif unit.kind == "i2d_files":
        yield from read_i2d_files(unit.path, unit.companion, config)
    elif unit.kind == "folder":
        for group in unit.groups:
            yield read_folder_group(group, config, unit.path)
    elif unit.kind in ("jsonl", "parquet"):
        yield from read_manifest(unit, config)
    else:
        raise ValueError(f"unknown read unit kind {unit.kind!r}")


__all__ = [
    "IMAGE_EXTENSIONS", "KeyGroup", "ManifestEntry", "ReadUnit", "group_folder_files", "load_entry",
    "open_binary", "parquet_columns", "read_bytes", "read_folder_group", "read_i2d_files", "read_i2d_parquet",
    "read_unit", "read_webdataset", "resolve",
]
