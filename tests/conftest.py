"""Shared test helpers: where the repository and its shared data live, and a tiny complete run."""

import functools
import shutil
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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A complete run of the documented command line: the shipped config.yaml in place, the tiny
    config (tests/workflow/config_tiny.yaml) given on top; shared by the tests that plan reruns
    against it or compare with it."""
    from tests.workflow.runner import TINY, snakemake

    workdir = tmp_path_factory.mktemp("tiny")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    shutil.copy(TINY, workdir / "tiny.yaml")
    done = snakemake(workdir, "--cores", "2", "--configfile", workdir / "tiny.yaml")
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir
