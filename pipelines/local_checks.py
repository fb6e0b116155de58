"""Refusals of local paths that the launcher makes before it imports Beam (about 2 s) or torch.

The same checks run again once Beam is imported, for every filesystem (`pipelines.io.resume.check_output`,
`pipelines.io.sources.plan_read`); for local paths these answer at once, with the same words.
"""

from __future__ import annotations

import glob
import os

GLOB_CHARS = "*?["
LEASE_NAME = ".lease"  # held by the run writing the folder (`pipelines.io.lease`); not content of its own


def is_local_path(path: str) -> bool:
    """A path without a URL scheme (gs://, s3://, http://...): a local file or folder."""
    return "://" not in path


def not_empty_message(output_dir: str) -> str:
    return (f"output folder {output_dir!r} is not empty: pass --resume to continue it or --overwrite to replace "
            f"its shards, rejects, ledger and manifest")


def output_is_file_message(output_dir: str) -> str:
    return f"output path {output_dir!r} is a file, not a folder"


def input_not_found_message(input_path: str) -> str:
    return f"input path not found: {input_path!r}"


def local_input_missing(input_path: str) -> bool:
    """True for a local input path (or glob) that names nothing; False otherwise (other filesystems
    are not looked at)."""
    if not is_local_path(input_path):
        return False
    path = os.path.expanduser(input_path)
    return not (glob.glob(path) if any(c in path for c in GLOB_CHARS) else os.path.exists(path))


def local_refusal(input_path: str, output_dir: str, mode: str) -> str | None:
    """Why a run in `mode` (new | resume | overwrite) cannot start on these local paths, or None
    (also None for paths on other filesystems: those are checked once Beam is imported)."""
    if local_input_missing(input_path):
        return input_not_found_message(input_path)
    if is_local_path(output_dir):
        if os.path.isfile(output_dir):
            return output_is_file_message(output_dir)
        if mode == "new" and os.path.isdir(output_dir) and set(os.listdir(output_dir)) - {LEASE_NAME}:
            return not_empty_message(output_dir)
    return None
