"""Stopping a local run on SIGINT or SIGTERM: every process of the run ends, and two lines say what
was kept.

Left to themselves, a signal to the launcher of a DirectRunner run either dies in a page of
tracebacks (one per Beam thread and worker) or, in multi_processing mode, is swallowed by Beam's
runner, which then goes on without the killed workers and writes a manifest of a run that did not
finish. `StopOnSignals` replaces that: the first SIGINT/SIGTERM silences what the run's processes
write to standard error, kills every descendant process (the SDK workers), prints the lines its
`describe` callback returns, and ends the launcher at once with 128 + the signal's number (130,
143). Files are committed by atomic renames, so whatever is on disk is whole; `--resume` continues
from it. A second signal while stopping ends the process immediately.

The SDK workers share the launcher's standard error, and a Ctrl-C in a terminal reaches them too
(one process group): each would print its own KeyboardInterrupt traceback while it is being killed.
So during a run, file descriptor 2 of the launcher, which the workers inherit, is a pipe that
`StderrRelay` copies to the real standard error, until the stop mutes it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def descendant_pids(pid: int) -> list[int]:
    """Processes below `pid`, children first (from /proc, else `ps`)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended while listing
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces: fields after ')'
            children.setdefault(parent, []).append(int(entry.name))
    else:
        listing = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            child, parent = (int(v) for v in line.split())
            children.setdefault(parent, []).append(child)
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue += children.get(child, [])
    return found


def kill_descendants(reap_s: float = 2.0) -> int:
    """SIGKILL every process below this one and reap this one's children (their own children are
    reaped by whoever adopts them); returns how many were signalled."""
    pids = descendant_pids(os.getpid())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + reap_s
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.01)  # children left, not yet ended
        except ChildProcessError:  # none left
            break
    return len(pids)


class StderrRelay:
    """While started: file descriptor 2 is a pipe whose contents a thread copies to the original
    standard error, until `mute()`. `write()` always reaches the original."""

    def __init__(self):
        self._saved: Optional[int] = None
        self._read: Optional[int] = None
        self._muted = False
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._copy, name="stderr-relay", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        saved = self._saved
        while True:
            chunk = os.read(self._read, 65536)
            if not chunk:  # every writer closed it
                os.close(self._read)
                return
            while chunk and not self._muted:
                chunk = chunk[os.write(saved, chunk):]

    def mute(self) -> None:
        self._muted = True

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        fd = 2 if self._saved is None else self._saved
        while data:
            data = data[os.write(fd, data):]

    def stop(self, drain_s: float = 2.0) -> None:
        """Give fd 2 back, once what was written before is copied (the relay ends when no process
        holds the pipe any more; a worker still alive after `drain_s` keeps it, and its output)."""
        if self._saved is None:
            return
        sys.stderr.flush()
        saved, self._saved = self._saved, None
        os.dup2(saved, 2)  # closes this process's end of the pipe
        self._thread.join(drain_s)
        if not self._thread.is_alive():
            os.close(saved)


class StopOnSignals:
    """A context in which SIGINT/SIGTERM stop the run as the module docstring says.

    `describe(signal_name)` returns the lines to print (what was committed, how to continue); it
    runs after the workers are gone. `verbose` keeps logging and tracebacks (--log-level DEBUG).
    Installed from the main thread only (elsewhere it does nothing).
    """

    def __init__(self, describe: Callable[[str], list[str]], verbose: bool = False):
        self.describe = describe
        self.verbose = verbose
        self.stopping = False
        self._previous: dict[int, object] = {}
        self._relay: Optional[StderrRelay] = None

    def relay_stderr(self) -> None:
        """Route standard error (the launcher's and its future workers') through a `StderrRelay`."""
        if self._relay is None and self._previous:
            self._relay = StderrRelay()
            self._relay.start()

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._stop)
        return self

    def __exit__(self, *exc) -> None:
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _stop(self, signum: int, frame) -> None:
        code = 128 + signum
        if self.stopping:
            os._exit(code)
        self.stopping = True
        name = signal.Signals(signum).name
        if not self.verbose:
            if self._relay is not None:
                self._relay.mute()
            logging.disable(logging.CRITICAL)
            threading.excepthook = lambda args: None  # Beam threads that lose their workers
        kill_descendants()
        try:
            lines = self.describe(name)
        except Exception as err:  # noqa: BLE001 - the process ends either way; say why the summary is missing
            lines = [f"stopped by {name}; what was committed could not be counted ({type(err).__name__}: {err})"]
        sys.stdout.flush()
        text = "".join(f"{line}\n" for line in lines)
        if self._relay is not None:
            self._relay.write(text)
        else:
            os.write(2, text.encode("utf-8", "replace"))
        os._exit(code)


def resume_command(program: str, argv: list[str]) -> str:
    """`program argv` with --resume in place of --overwrite (or added): the command that continues
    a run that ended early."""
    import shlex

    rest = [a for a in argv if a != "--overwrite"]
    if "--resume" not in rest:
        rest.append("--resume")
    return " ".join([program, *(shlex.quote(a) for a in rest)])
