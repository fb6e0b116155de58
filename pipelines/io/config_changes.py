"""Which config changes would change a run's rows: what `--resume` must refuse, and what it may allow.

A resumed run may execute differently from the run it continues (another batch size, more model
copies, files of another size) but must not decide rows differently, or one output would mix two
datasets. Configs are compared as the nested dicts of `unimo_g.config_tools.to_dict`.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Iterator, Mapping

# Settings that change how a run executes, never its rows (dotted keys; `*` matches one section).
EXECUTION_ONLY = (
    "*.runtime.max_batch_size",
    "*.runtime.share_model",
    "*.runtime.model_copies",
    "*.runtime.preprocess",  # both modes give the same pixels byte for byte (ModelRuntimeConfig)
    "dedupe.method",  # the same rows and rejects, found from a second read or from the one read
    "read.http_timeout_s",
    "write.rows_per_file",
    "write.row_group_rows",
    "write.compression",
    "write.num_shards",
)
# A model stage's batch size changes no row when every forward holds one image (`forward: image`).
PER_IMAGE_FORWARD = "image"


def _flatten(config: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in config.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _execution_only(key: str, old: Mapping, new: Mapping) -> bool:
    if any(fnmatchcase(key, pattern) for pattern in EXECUTION_ONLY):
        return True
    section, _, rest = key.partition(".")
    if rest == "runtime.batch_size":
        return all((c.get(section) or {}).get("forward") == PER_IMAGE_FORWARD for c in (old, new))
    return False


def changes_affecting_rows(old: Mapping, new: Mapping) -> list[str]:
    """Dotted keys whose values differ between two configs and that can change rows, sorted.

    A key present in one config only counts as a change (a setting added by a newer version).
    """
    old_flat, new_flat = dict(_flatten(old)), dict(_flatten(new))
    missing = object()
    return sorted(
        key for key in old_flat.keys() | new_flat.keys()
        if old_flat.get(key, missing) != new_flat.get(key, missing) and not _execution_only(key, old, new)
    )
