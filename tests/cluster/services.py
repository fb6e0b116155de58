"""Long-running processes the cluster tests start (masters, workers, job services, worker pools).

Each starts in a session of its own, so the processes it forks (a Spark worker's executors, a worker
pool's SDK workers) share its process group; `stop` kills the whole group by the leader's pid, and
the fixtures call it whatever the tests' outcome. Ports are free loopback ports picked at start;
readiness is polled with a bounded timeout that names the service and shows its log's tail.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

T = TypeVar("T")
LOG_TAIL_CHARS = 3000
STOP_GRACE_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def http_json(url: str) -> Optional[dict]:
    """The JSON document at `url`, or None while the server does not answer it."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


@dataclass
class Service:
    """One process: `argv` run in `cwd` with `env`, its stdout and stderr in `log`."""

    name: str
    argv: list[str]
    log: Path
    env: dict = field(default_factory=lambda: dict(os.environ))
    cwd: Optional[Path] = None
    process: Optional[subprocess.Popen] = None

    def start(self) -> "Service":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env, cwd=self.cwd, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL to what is left after a grace period."""
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=0.2)  # reaps the leader; the others are reparented and reaped
                if not group_alive(self.process.pid):
                    return
        raise RuntimeError(f"{self.name} (process group {self.process.pid}) survived SIGKILL")


def group_alive(pgid: int) -> bool:
    """Whether any process of process group `pgid` is still running (zombies excluded)."""
    for status in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
                return True
    return False


def wait_for(check: Callable[[], Optional[T]], what: str, services: list[Service], timeout_s: float,
             poll_s: float = 0.5) -> T:
    """Poll `check` until it returns something other than None, at most `timeout_s`; fail early,
    with the log's tail, when one of `services` has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None:
            return value
        for service in services:
            if not service.running():
                raise RuntimeError(f"{service.name} exited (code {service.process.returncode}) while waiting for "
                                   f"{what}; its log ({service.log}):\n{service.log_tail()}")
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {s.name} ({s.log}):\n{s.log_tail()}" for s in services)
            raise TimeoutError(f"no {what} after {timeout_s:g} s\n{tails}")
        time.sleep(poll_s)


@contextlib.contextmanager
def running(*services: Service) -> Iterator[tuple[Service, ...]]:
    """Start `services` in order; stop all of them in reverse order when the block ends, however it ends."""
    started: list[Service] = []
    try:
        for service in services:
            started.append(service.start())
        yield services
    finally:
        errors = []
        for service in reversed(started):
            try:
                service.stop()
            except RuntimeError as error:
                errors.append(str(error))
        if errors:
            raise RuntimeError("; ".join(errors))
