"""Peak resident memory of this process and its children.

Two measures, because neither alone is complete:
- `PeakRss` samples the summed RSS of this process and all its live descendants (psutil) every
  `interval_s`: the peak of the whole process tree during a block of code, which also covers Beam's
  multi_processing workers. Peaks shorter than the interval can be missed. The sampler runs in its
  own small process (`python -m bench.rss PID`), so sampling adds no Python work (and no GIL
  contention) to the measured process.
- `rusage_peaks` reads the kernel's exact high-water marks (`ru_maxrss`): of this process over its
  whole life, and of the largest single child that has exited (not a sum over children).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from typing import Optional, Sequence

import psutil

_MIB = 1024 * 1024
# ru_maxrss is in KiB on Linux and in bytes on macOS.
_RUSAGE_UNIT = 1 if sys.platform == "darwin" else 1024


def tree_rss_bytes(process: psutil.Process, exclude: Sequence[int] = ()) -> int:
    """Current RSS of `process` plus all its descendants (except the pids in `exclude`), in bytes."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        if member.pid in exclude:
            continue
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # a worker that exited meanwhile
            continue
    return total


def rusage_peaks() -> dict:
    """Kernel high-water marks in MiB: this process (`self_mib`), largest exited child (`children_mib`)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RUSAGE_UNIT
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * _RUSAGE_UNIT
    return {"self_mib": own / _MIB, "children_mib": children / _MIB}


class PeakRss:
    """Context manager: `peak_mib` is the largest sampled process-tree RSS while the block ran.

    `start_mib` is the tree RSS on entry, so `peak_mib - start_mib` is what the block added. The
    sampler process is not counted.
    """

    def __init__(self, interval_s: float = 0.1):
        self._interval_s = interval_s
        self._sampler: Optional[subprocess.Popen] = None
        self.start_mib = 0.0
        self.peak_mib = 0.0

    def __enter__(self) -> "PeakRss":
        me = psutil.Process()
        self._sampler = subprocess.Popen(
            [sys.executable, "-m", "bench.rss", str(me.pid), "--interval", str(self._interval_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.start_mib = tree_rss_bytes(me, exclude=(self._sampler.pid,)) / _MIB
        return self

    def __exit__(self, *exc) -> None:
        me = psutil.Process()
        last = tree_rss_bytes(me, exclude=(self._sampler.pid,)) / _MIB
        out, _ = self._sampler.communicate("")  # closing stdin stops the sampler
        sampled = float(out.strip() or 0.0)
        self.peak_mib = max(self.start_mib, sampled, last)


def _sample_until_stdin_closes(pid: int, interval_s: float) -> float:
    """Sample the tree of `pid` (without this process) until stdin closes; the peak in MiB."""
    import selectors

    target, me = psutil.Process(pid), os.getpid()
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin, selectors.EVENT_READ)
    peak = 0
    while True:
        peak = max(peak, tree_rss_bytes(target, exclude=(me,)))
        if selector.select(timeout=interval_s):
            if not sys.stdin.read(1):  # EOF: the measured block ended
                break
        if not target.is_running():
            break
    return peak / _MIB


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rss", description="peak RSS sampler of a process tree")
    parser.add_argument("pid", type=int)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args(argv)
    print(f"{_sample_until_stdin_closes(args.pid, args.interval):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
