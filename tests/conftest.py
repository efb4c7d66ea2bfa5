"""Shared test helpers: where the repository and its shared data live, and a tiny complete run."""

import functools
import os
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
    against it or compare with it. Under pytest-xdist the first worker to need it builds it in the
    run's shared temporary folder while the others wait, then all of them use that one run."""
    from filelock import FileLock

    from tests.workflow.runner import TINY, snakemake

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent                   # one folder per run, above the workers' own
    workdir, complete = shared / "tiny", shared / "tiny.complete"
    with FileLock(shared / "tiny.lock"):
        if not complete.exists():
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir()
            shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
            shutil.copy(TINY, workdir / "tiny.yaml")
            done = snakemake(workdir, "--cores", "2", "--configfile", workdir / "tiny.yaml")
            assert done.returncode == 0, done.stderr[-4000:]
            complete.touch()
    return workdir
