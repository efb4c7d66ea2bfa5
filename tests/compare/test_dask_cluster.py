"""The consistency grid on a real dask cluster: `dask scheduler` and two single-threaded
`dask worker` processes on 127.0.0.1, attached to by address as `dask.scheduler` does."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dask
import pandas as pd
import pytest
import threadpoolctl
from distributed import Client

from pipeline.compare.consistency import interanimal, predictivity
from pipeline.compare.parallel import compute

DASK = Path(sys.executable).parent / "dask"
REPO = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process):
    """Stop one process we started, by its PID: TERM, then KILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, worker PIDs) of a scheduler and two `--nthreads 1` workers without nannies."""
    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    commands = [[DASK, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                 "--dashboard-address", ":0"]]
    commands += [[DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                  "--dashboard-address", ":0", "--local-directory", logs / f"w{i}"] for i in range(2)]
    env = dict(os.environ, PYTHONPATH=str(REPO))      # workers unpickle tasks that name `pipeline`
    processes = []
    try:
        for i, command in enumerate(commands):
            with open(logs / f"{i}.log", "wb") as log:
                processes.append(subprocess.Popen(list(map(str, command)), stdout=log, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, env=env))
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=30)
        yield address, {p.pid for p in processes[1:]}
    finally:
        for process in reversed(processes):
            stop(process)


def test_tasks_run_in_the_worker_processes_on_one_blas_thread(cluster):
    address, worker_pids = cluster
    pids = compute([dask.delayed(os.getpid, pure=False)() for _ in range(8)], address, 2, "pids")
    assert set(pids) == worker_pids                   # both workers used, none of it ran here
    infos = compute([dask.delayed(threadpoolctl.threadpool_info, pure=False)() for _ in range(4)],
                    address, 2, "blas")
    assert {lib["num_threads"] for info in infos for lib in info if lib["user_api"] == "blas"} == {1}


def test_interanimal_and_predictivity_on_the_cluster_equal_the_local_run(cluster, simulate, to_activations):
    address, _ = cluster
    assembly, rates = simulate(n_animals=3, units_per_animal=8, n_trials=8, areas=("VISp", "VISl"), seed=21)
    kwargs = dict(mappings=("ridge", "pls", "rsa"), n_halves=2, n_splits=2, n_components=4, seed=3)
    local = interanimal(assembly, **kwargs)
    pd.testing.assert_frame_equal(interanimal(assembly, scheduler=address, n_workers=2, **kwargs), local,
                                  rtol=1e-9)
    assert len(local) > 0 and local["score"].notna().any()
    activations = to_activations(rates, assembly["stimulus_id"].values)
    local = predictivity(activations, assembly, **kwargs)
    pd.testing.assert_frame_equal(predictivity(activations, assembly, scheduler=address, n_workers=2, **kwargs),
                                  local, rtol=1e-9)

