"""One writer per output folder: a run holds OUTPUT/.lease while it may write there.

    OUTPUT/.lease    JSON: run id, host, pid, command, started_at, renewed_at (epoch s), expiry_s

The launcher creates the lease before it deletes or writes anything in OUTPUT, with a create that
fails when the file exists: `O_CREAT | O_EXCL` locally, a write conditioned on the object not
existing on GCS (`if_generation_match=0`) and S3 (`If-None-Match: *`); on other filesystems a
check then a create (not atomic; logged). While the run goes on, `LeaseKeeper` renews it every
`RENEW_S`; at the end (finished, failed or stopped by a signal) the launcher deletes it. A detached
run's lease is deleted by the job's last step instead (`pipelines.outputs.manifest`).

A second launch into a leased folder is refused (`LeaseHeld`, exit 2) with the holder's run id,
host, pid and last renewal. A lease not renewed for its `expiry_s` is stale and taken over by the
next launch (logged); one that is not yet stale is taken over only with `--resume --break-lease`,
e.g. after a kill -9 of a launcher whose workers are known to be gone. A run whose lease was taken
over stops itself at its next renewal.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from apache_beam.io.filesystems import FileSystems

from pipelines.io.read_guard import scheme_of
from pipelines.local_checks import LEASE_NAME

LOGGER = logging.getLogger(__name__)
RENEW_S = 10.0
EXPIRY_S = 120.0  # an attached run renews every RENEW_S: this is many renewals missed
DETACHED_EXPIRY_S = 7 * 24 * 3600.0  # a detached job cannot renew: its last step deletes the lease


class LeaseHeld(Exception):
    """The output folder is leased by another run; the message names it."""


@dataclass(frozen=True)
class Lease:
    run_id: str
    host: str
    pid: int
    command: str
    started_at: float
    renewed_at: float
    expiry_s: float

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> "Lease":
        return cls(**json.loads(data.decode("utf-8")))

    def age_s(self, now: Optional[float] = None) -> float:
        return (time.time() if now is None else now) - self.renewed_at

    def expired(self, now: Optional[float] = None) -> bool:
        return self.age_s(now) > self.expiry_s

    def holder_gone(self) -> bool:
        """True only when the holder ran on this host and its process no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def describe(self) -> str:
        gone = ", its process is gone" if self.holder_gone() else ""
        return (f"run {self.run_id} (host {self.host}, pid {self.pid}{gone}; renewed {self.age_s():.0f} s ago, "
                f"stale after {self.expiry_s:.0f} s)")


def lease_path(output_dir: str) -> str:
    return FileSystems.join(output_dir, LEASE_NAME)


# ---------------------------------------------------------------- storage


def _create_exclusive(path: str, data: bytes) -> bool:
    """Create `path` holding `data` unless it exists; True when this call created it."""
    scheme = scheme_of(path)
    if scheme is None:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return True
    if scheme == "gs":
        return _create_gcs(path, data)
    if scheme == "s3":
        return _create_s3(path, data)
    LOGGER.warning("%s: no atomic create on %s://: the lease is a check then a write", path, scheme)
    if FileSystems.exists(path):
        return False
    with FileSystems.create(path) as handle:
        handle.write(data)
    return True


def _create_gcs(path: str, data: bytes) -> bool:
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud import storage

    bucket, _, name = path[len("gs://"):].partition("/")
    try:
        storage.Client().bucket(bucket).blob(name).upload_from_string(data, if_generation_match=0)
    except PreconditionFailed:
        return False
    return True


def _create_s3(path: str, data: bytes) -> bool:
    import boto3
    from botocore.exceptions import ClientError

    bucket, _, key = path[len("s3://"):].partition("/")
    try:
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise
    return True


def read_lease(output_dir: str) -> Optional[Lease]:
    """The lease of `output_dir`, or None when there is none (or it vanished while read)."""
    path = lease_path(output_dir)
    try:
        with FileSystems.open(path) as handle:
            return Lease.from_bytes(handle.read())
    except (OSError, ValueError, TypeError, json.JSONDecodeError):  # absent, released meanwhile, or torn
        return None


def _replace(path: str, data: bytes) -> None:
    """Write `path` whole (locally by a rename, so a reader never sees half a lease)."""
    if scheme_of(path) is None:
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
        return
    with FileSystems.create(path) as handle:
        handle.write(data)


def _delete(path: str) -> None:
    try:
        FileSystems.delete([path])
    except OSError:  # Beam raises BeamIOError (an IOError) for a file already gone
        pass


# ---------------------------------------------------------------- taking and giving back


def acquire(output_dir: str, run_id: str, command: str, resume: bool = False, break_lease: bool = False,
            expiry_s: float = EXPIRY_S) -> Lease:
    """Take the lease of `output_dir` for run `run_id`, creating the folder when local; raises
    `LeaseHeld` when another run holds a lease that is not stale (and `--resume --break-lease` was
    not given)."""
    if scheme_of(output_dir) is None:
        os.makedirs(output_dir, exist_ok=True)
    now = time.time()
    mine = Lease(run_id, socket.gethostname(), os.getpid(), command, now, now, expiry_s)
    path = lease_path(output_dir)
    for _ in range(3):  # a holder that releases, or another taker, between the calls below
        if _create_exclusive(path, mine.to_bytes()):
            return mine
        held = read_lease(output_dir)
        if held is None:
            continue
        if held.expired():
            LOGGER.warning("the lease of %s by %s is stale: taken over", output_dir, held.describe())
        elif resume and break_lease:
            LOGGER.warning("--break-lease: taking the lease of %s from %s", output_dir, held.describe())
        else:
            hint = "pass --resume --break-lease if that run is gone (workers included)" if held.holder_gone() \
                else "wait for it to finish"
            raise LeaseHeld(f"output folder {output_dir!r} is in use by {held.describe()}: {hint}")
        _delete(path)
    raise LeaseHeld(f"output folder {output_dir!r}: another launch took its lease at the same time")


def renew(output_dir: str, lease: Lease) -> Optional[Lease]:
    """The renewed lease, or None when it is no longer this run's (taken over or deleted)."""
    held = read_lease(output_dir)
    if held is None or held.run_id != lease.run_id:
        return None
    renewed = Lease(**{**asdict(lease), "renewed_at": time.time()})
    _replace(lease_path(output_dir), renewed.to_bytes())
    return renewed


def release(output_dir: str, run_id: str) -> bool:
    """Delete the lease when it is run `run_id`'s; True when it was."""
    held = read_lease(output_dir)
    if held is None or held.run_id != run_id:
        return False
    _delete(lease_path(output_dir))
    return True


class LeaseKeeper(threading.Thread):
    """Renews a lease every `RENEW_S` until `stop()`; calls `lost(message)` once if the lease is
    no longer this run's."""

    def __init__(self, output_dir: str, lease: Lease, lost: Callable[[str], None], renew_s: float = RENEW_S):
        super().__init__(name="lease", daemon=True)
        self.output_dir = output_dir
        self.lease = lease
        self.lost = lost
        self.renew_s = renew_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.renew_s):
            renewed = renew(self.output_dir, self.lease)
            if renewed is None:
                holder = read_lease(self.output_dir)
                self.lost(f"the lease of {self.output_dir} was taken over"
                          f"{' by ' + holder.describe() if holder else ''}: this run stops")
                return
            self.lease = renewed

    def stop(self) -> None:
        self._stop_event.set()
        if self.ident is not None:  # a detached run's keeper never starts
            self.join(timeout=self.renew_s + 5)
