"""Beam's own processes for portable runs: the SDK worker pool that `--environment_type=EXTERNAL`
points at, and the Python job service that runs submitted pipelines on the workers it asks the
pool for (the deployment Spark's and Flink's job servers use, without the JVM)."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from tests.cluster.services import Service, free_port, port_open, running, wait_for

READY_TIMEOUT_S = 120.0


def python_on_path(folder: Path) -> dict:
    """The environment with `python` meaning this interpreter: Beam's worker pool starts SDK workers
    as `python -c ...`, and they must import this install."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "python"
    if not link.exists():
        link.symlink_to(sys.executable)
    env = dict(os.environ)
    env["PATH"] = f"{folder}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass(frozen=True)
class WorkerPool:
    """SDK workers on demand at `address`; every model load they do is a JSON line in `load_log`."""

    address: str
    load_log: Path

    def environment_flags(self) -> list[str]:
        return ["--environment_type=EXTERNAL", f"--environment_config={self.address}"]


def start_worker_pool(folder: Path) -> tuple[Service, WorkerPool]:
    port = free_port()
    env = python_on_path(folder / "bin")
    env["UNIMO_G_MODEL_LOAD_LOG"] = str(folder / "model_loads.jsonl")
    env.setdefault("WANDB_MODE", "disabled")
    service = Service("beam worker pool", [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                                           f"--service_port={port}"], folder / "worker_pool.log", env=env)
    return service, WorkerPool(f"127.0.0.1:{port}", folder / "model_loads.jsonl")


def start_job_service(folder: Path) -> tuple[Service, str]:
    """A Beam job service process (not started yet) and its job endpoint, host:port."""
    port = free_port()
    argv = [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", f"--port={port}"]
    service = Service("beam job service", argv, folder / "job_service.log", env=python_on_path(folder / "bin"))
    return service, f"127.0.0.1:{port}"


def wait_until_listening(service: Service, address: str) -> None:
    port = int(address.rsplit(":", 1)[1])
    wait_for(lambda: port_open(port) or None, f"{service.name} listening on {address}", [service], READY_TIMEOUT_S)


@dataclass(frozen=True)
class Deployment:
    """A worker pool, and a job service when the engine's runner does not start its own."""

    pool: WorkerPool
    job_endpoint: Optional[str]
    services: tuple[Service, ...]


@contextlib.contextmanager
def deployment(folder: Path, job_service: bool) -> Iterator[Deployment]:
    pool_service, pool = start_worker_pool(folder / "pool")
    services, endpoint = [pool_service], None
    if job_service:
        service, endpoint = start_job_service(folder)
        services.append(service)
    with running(*services):
        wait_until_listening(pool_service, pool.address)
        if endpoint:
            wait_until_listening(services[1], endpoint)
        yield Deployment(pool, endpoint, tuple(services))
