"""Known third-party log messages that tell our users nothing, dropped at the logger that emits them.

Each entry names the logger, the start of the message and why it is noise here; every other
message of those loggers still shows, and `--log-level DEBUG` shows these too (`install(False)`).
`WithoutTraceback` keeps a library's error line but not the traceback it logs before it raises: the
command reports the raised error itself, in one paragraph.
"""

from __future__ import annotations

import logging

# (logger, message start or substring, why it is dropped)
KNOWN_NOISE = (
    ("diffusers.models.modeling_utils", "Cannot initialize model with low cpu memory usage because `accelerate`",
     "our loaders build small models or read safetensors directly; accelerate would change nothing"),
    ("diffusers.models.modeling_utils", "that should be kept in float32: []",
     "an empty list: no module is affected by the cast"),
    ("apache_beam.runners.portability.local_job_service", "No semi_persistent_directory found",
     "every multi_processing SDK worker says it; the DirectRunner has no such directory"),
    ("apache_beam.runners.portability.local_job_service", "Discarding unparseable args",
     "the SDK worker drops the launcher's own flags (--input, --config, ...), as intended"),
    ("apache_beam.internal.gcp.auth", "Unable to find default credentials",
     "a local run needs no Google credentials"),
    ("root", "apitools not found, and bigquery client libraries are not available",
     "Beam imports its BigQuery client at import time; without apache-beam[gcp] (the offline install) it "
     "warns, and nothing here uses BigQuery"),
)


class _DropKnown(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


class WithoutTraceback(logging.Filter):
    """A handler filter: records of loggers under `prefixes` lose their traceback (message kept)."""

    def __init__(self, prefixes: tuple[str, ...] = ("apache_beam",)):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.name.startswith(self.prefixes):
            record.exc_info, record.exc_text = None, None
        return True


_INSTALLED: dict[str, _DropKnown] = {}


def install(quiet: bool = True) -> None:
    """Drop the `KNOWN_NOISE` messages (quiet=True), or let them through again (quiet=False)."""
    by_logger: dict[str, list[str]] = {}
    for name, fragment, _ in KNOWN_NOISE:
        by_logger.setdefault(name, []).append(fragment)
    for name, fragments in by_logger.items():
        logger = logging.getLogger(name)
        if name in _INSTALLED:
            logger.removeFilter(_INSTALLED.pop(name))
        if quiet:
            _INSTALLED[name] = _DropKnown(tuple(fragments))
            logger.addFilter(_INSTALLED[name])
