import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every module here runs on one torch thread (see tests/conftest.py)."""
