"""Processes a test starts: each in a session of its own, so its workers share its process group,
and the whole group killed by its pid when the test's block ends, passed or failed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Iterator


@contextlib.contextmanager
def launched(command: list[str], **popen_kwargs) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(command, start_new_session=True, **popen_kwargs)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone when the run ended by itself
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
