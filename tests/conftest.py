import signal
import threading

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from more threads, and on shared CPUs extra threads make them slower.

    Use in a module with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "time_limit(seconds): fail the test when its setup, call or teardown runs longer (for tests that wait on "
        "other processes: a hung worker must end the test, not the suite)",
    )
    config.addinivalue_line(
        "markers",
        "cluster: starts engines as processes of their own (Beam job service and worker pool, Spark, Flink, Dask; "
        "tests/cluster); `-m 'not cluster'` runs the rest alone",
    )


def _time_limited(phase: str):
    """A hook wrapper that runs `phase` of a test under its `time_limit` marker (SIGALRM in the main
    thread; POSIX)."""

    @pytest.hookimpl(hookwrapper=True)
    def hook(item):
        marker = item.get_closest_marker("time_limit")
        if marker is None or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
            yield
            return
        seconds = float(marker.args[0])

        def expire(signum, frame):
            # pytest's Failed is a BaseException: an `except Exception` in the code under test cannot swallow
            # it, and subprocess.run kills its child on the way out
            pytest.fail(f"{phase} of {item.nodeid} ran past its time limit of {seconds:g} s", pytrace=True)

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return hook


pytest_runtest_setup = _time_limited("setup")
pytest_runtest_call = _time_limited("call")
pytest_runtest_teardown = _time_limited("teardown")
