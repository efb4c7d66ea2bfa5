"""A complete run of the tiny config, shared by the tests that plan reruns against it."""

import shutil

import pytest

from tests.workflow.runner import REPO, TINY, snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The documented command line: the shipped config.yaml in place, the tiny one given on top."""
    workdir = tmp_path_factory.mktemp("tiny")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    shutil.copy(TINY, workdir / "tiny.yaml")
    done = snakemake(workdir, "--cores", "2", "--configfile", workdir / "tiny.yaml")
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir
