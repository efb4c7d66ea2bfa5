"""The tiny end-to-end config through a real single-node SLURM: jobs go through sbatch, scores equal
a local run's, and a job cancelled with scancel fails the run without leaving outputs to trust.
Also dask workers started as SLURM jobs through dask-jobqueue (`dask.scheduler: slurm`)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.compare.consistency import interanimal
from slurm_cluster import SlurmCluster, missing_requirements
from tests.compare.conftest import simulate_animals

REPO = Path(__file__).resolve().parents[2]
TINY = Path(__file__).with_name("config_tiny.yaml")
PROFILE = REPO / "profiles" / "slurm-ci"
MODEL = "ventral_cnn-supervised-bp-s0"
TARGET = f"results/scores/predictivity/{MODEL}/synthetic_mouse.parquet"

pytestmark = [pytest.mark.slow, pytest.mark.long]


def start_snakemake(workdir, *args, env=None):
    """Start the repository's Snakefile in `workdir` in its own process group (killed as a group)."""
    env = dict(os.environ, **(env or {}), PYTHONPATH=str(REPO),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--workflow-profile", "none",
               "--configfile", str(workdir / "config.yaml"), *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=workdir, start_new_session=True)


def finish(process, timeout):
    """Wait for a Snakemake started by `start_snakemake`; on timeout SIGKILL its process group
    (Snakemake waiting on SLURM ignores SIGTERM) and fail. Returns (returncode, output, seconds)."""
    start = time.monotonic()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"snakemake did not finish within {timeout} s:\n{output[-4000:]}")
    except BaseException:                      # pytest-timeout or Ctrl-C: leave nothing running
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return process.returncode, output, time.monotonic() - start


def new_workdir(tmp_path_factory, name):
    """A folder with the tiny config cut to two models (backprop and a local rule, one seed):
    every rule of the DAG still runs, with fewer jobs queued through SLURM's polling."""
    workdir = tmp_path_factory.mktemp(name)
    config = yaml.safe_load(TINY.read_text())
    config["models"].update(rules=["bp", "hebb"], seeds=[0])
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A single-node SLURM whose state lives in a temporary directory; stopped by PID afterwards."""
    reason = missing_requirements()
    if reason:
        pytest.skip(f"no SLURM for the test: {reason}")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = new_workdir(tmp_path_factory, "tiny_local")
    code, output, _ = finish(start_snakemake(workdir, "--cores", "2"), timeout=900)
    assert code == 0, output[-4000:]
    return workdir


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory):
    workdir = new_workdir(tmp_path_factory, "tiny_slurm")
    code, output, seconds = finish(start_snakemake(workdir, "--profile", PROFILE, env=slurm.env), timeout=900)
    assert code == 0, output[-4000:]
    print(f"tiny config under SLURM: {seconds:.0f} s")
    return workdir


def slurm_log_ids(workdir):
    """SLURM job ids named by the executor's per-job logs: .snakemake/slurm_logs/<rule>/.../<id>.log."""
    return {path.stem: path.relative_to(workdir / ".snakemake/slurm_logs").parts[0]
            for path in (workdir / ".snakemake/slurm_logs").rglob("*.log")}


def assert_same_scores(ours, theirs, paths):
    """Identifiers equal exactly, scores to 1e-4: two runs of torch's CPU kernels on one machine can
    differ in the last bits, which the Hebbian rule's sharp soft-WTA grows to about 1e-6."""
    assert paths, "no score tables to compare"
    for path in paths:
        pd.testing.assert_frame_equal(pd.read_parquet(ours / path), pd.read_parquet(theirs / path),
                                      check_exact=False, rtol=0, atol=1e-4, obj=str(path))


@pytest.mark.timeout(40 * 60)
def test_tiny_config_runs_through_sbatch_and_scores_equal_the_local_run(slurm, slurm_run, local_run):
    ids = slurm_log_ids(slurm_run)
    known = slurm.jobs()
    rules = {ids[i] for i in ids}
    assert {"rule_train", "rule_extract", "rule_predictivity", "rule_interanimal"} <= rules, rules
    assert len(ids) >= 20, ids                      # every non-local job of the tiny DAG
    for job_id in ids:                              # slurmctld ran each of them to completion
        assert known[job_id]["state"] == "COMPLETED", (job_id, known.get(job_id))
        assert known[job_id]["comment"].startswith(ids[job_id]), (job_id, known[job_id])
    tables = sorted(p.relative_to(local_run) for p in (local_run / "results/scores").rglob("*.parquet"))
    assert tables == sorted(p.relative_to(slurm_run) for p in (slurm_run / "results/scores").rglob("*.parquet"))
    assert {Path(f"results/scores/predictivity/{m}/synthetic_mouse.parquet")
            for m in (MODEL, "ventral_cnn-supervised-hebb-s0")} <= set(tables), tables
    assert Path("results/scores/interanimal/synthetic_mouse.parquet") in tables, tables
    assert_same_scores(slurm_run, local_run, tables)


@pytest.mark.timeout(30 * 60)
def test_cancelled_job_fails_the_run_and_a_rerun_completes(slurm, local_run, tmp_path_factory):
    workdir = new_workdir(tmp_path_factory, "tiny_cancel")
    process = start_snakemake(workdir, "--profile", PROFILE, TARGET, env=slurm.env)
    deadline = time.monotonic() + 600
    cancelled = None
    while cancelled is None and time.monotonic() < deadline and process.poll() is None:
        running = [i for i, job in slurm.jobs().items()
                   if job["comment"].startswith("rule_train") and MODEL in job["comment"]
                   and job["state"] == "RUNNING"]
        if running:
            cancelled = running[0]
            subprocess.run(["scancel", cancelled], check=True, timeout=30, env={**os.environ, **slurm.env})
        time.sleep(0.2)
    code, output, _ = finish(process, timeout=300)
    assert cancelled is not None, f"no running train job seen:\n{output[-4000:]}"
    assert code != 0, output[-4000:]
    assert cancelled in output, output[-4000:]                 # Snakemake names the failed SLURM job
    assert not (workdir / f"results/models/{MODEL}").exists()  # nothing left for a rerun to trust

    code, output, _ = finish(start_snakemake(workdir, "--profile", PROFILE, TARGET, env=slurm.env), timeout=600)
    assert code == 0, output[-4000:]
    assert "rule train:" in output                          # the cancelled job ran again
    assert_same_scores(workdir, local_run, [Path(TARGET)])


@pytest.mark.timeout(5 * 60)
def test_dask_workers_started_as_slurm_jobs_give_the_local_scores(slurm, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)                               # sbatch writes slurm-<id>.out here
    for name, value in slurm.env.items():                     # sbatch exports these to the workers
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    before = set(slurm.jobs())
    assembly, _ = simulate_animals(n_animals=3, units_per_animal=6, n_trials=6, areas=("VISp", "VISl"), seed=5)
    kwargs = dict(mappings=("ridge", "rsa"), n_halves=2, n_splits=2, seed=1)
    remote = interanimal(assembly, scheduler="slurm", n_workers=2, **kwargs)
    pd.testing.assert_frame_equal(remote, interanimal(assembly, **kwargs), rtol=1e-9)
    workers = {i: job for i, job in slurm.jobs().items() if i not in before}
    assert len(workers) == 2 and {job["name"] for job in workers.values()} == {"dask-worker"}, workers
    assert not {job["state"] for job in workers.values()} & {"PENDING", "RUNNING"}, workers   # closed after
