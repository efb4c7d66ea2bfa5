"""Shared test helpers: where the repository and its shared data live."""

import functools
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models gain nothing from a second thread, and lose much when cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.cache
def _online() -> bool:
    """Whether the public data hosts can be reached (one TCP connect, cached for the session)."""
    try:
        socket.create_connection(("api.dandiarchive.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


def pytest_runtest_setup(item):
    """Tests marked `network` skip, with the reason, on a machine that cannot reach the hosts."""
    if item.get_closest_marker("network") and not _online():
        pytest.skip("network test: api.dandiarchive.org:443 cannot be reached from this machine")
