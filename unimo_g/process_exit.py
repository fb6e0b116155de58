"""Ending a command-line process once its work is done and its output is flushed."""

from __future__ import annotations

import logging
import os
import sys


def exit_now(code: int) -> None:
    """Flush logs and standard streams, then end the process with `code` at once.

    The interpreter's normal shutdown also runs the C++ destructors of the native libraries a
    pipeline run loads (torch, gRPC under Beam, Arrow), and their teardown has been seen to abort
    ("terminate called without an active exception", exit 134) after every file was written. A
    command's result is its exit code, so it skips that teardown.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
