"""The task runner: local pools pin BLAS to one thread per worker, so workers never oversubscribe."""

import dask
import pytest
import threadpoolctl

from pipeline.compare.parallel import compute


@pytest.mark.parametrize("scheduler, n_workers", [(None, 1), (None, 2), ("processes", 2)])
def test_workers_run_blas_on_one_thread(scheduler, n_workers):
    tasks = [dask.delayed(threadpoolctl.threadpool_info)() for _ in range(2)]
    infos = compute(tasks, scheduler, n_workers, "blas threads")
    libraries = [lib for info in infos for lib in info if lib["user_api"] == "blas"]
    assert libraries, infos                          # numpy's BLAS is loaded in every worker
    assert {lib["num_threads"] for lib in libraries} == {1}
