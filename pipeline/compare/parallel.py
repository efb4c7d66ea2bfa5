"""Run the consistency grid's tasks on a local pool or an existing dask scheduler."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import dask
import dask.local
import dask.multiprocessing
import dask.threaded
from threadpoolctl import threadpool_limits
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from tqdm.dask import TqdmCallback

log = logging.getLogger(__name__)

# Local schedulers as functions: naming them by string makes dask import distributed (~0.3 s).
_LOCAL = {"threads": dask.threaded.get, "processes": dask.multiprocessing.get, "synchronous": dask.local.get_sync}


def _pin_blas(n_threads):
    """Limit BLAS to `n_threads` in this process; numpy is imported first so its BLAS is loaded."""
    import numpy  # noqa: F401  (a worker may not have loaded BLAS yet; the limit needs it)

    threadpool_limits(limits=n_threads)


def compute(tasks, scheduler, n_workers, desc):
    """Run delayed tasks on a local scheduler or on a dask.distributed scheduler at `scheduler`.

    `scheduler=None` means a local pool of `n_workers` threads. The work is batched array
    operations that release the GIL, and threads share the kernel statistics that a process
    pool would pickle through the parent for every task (about 50 MB per target animal at
    100 split-halves); on two cores threads were faster than processes in
    benchmarks/consistency.py. "processes" (a spawned pool) is still available. BLAS gets
    one thread per worker: extra BLAS threads slow these small batched products down, and
    a fixed count keeps results identical for any `n_workers`.
    """
    if not tasks:
        return []
    if scheduler is None:
        scheduler = "threads"
    with logging_redirect_tqdm():
        if scheduler in ("threads", "processes", "synchronous"):
            log.info("%s: %d tasks on the local %s scheduler, %d workers, 1 BLAS thread each",
                     desc, len(tasks), scheduler, n_workers)
            with contextlib.ExitStack() as stack:
                stack.enter_context(threadpool_limits(limits=1))
                options = {"num_workers": n_workers}
                if scheduler == "processes":
                    options = {"pool": stack.enter_context(ProcessPoolExecutor(
                        n_workers, mp_context=multiprocessing.get_context("spawn"),
                        initializer=_pin_blas, initargs=(1,)))}
                stack.enter_context(TqdmCallback(desc=desc, disable=None, tqdm_class=tqdm))
                return list(dask.compute(*tasks, scheduler=_LOCAL[scheduler], **options))
        from distributed import Client, as_completed

        log.info("%s: %d tasks on the dask scheduler at %s, 1 BLAS thread per worker", desc, len(tasks), scheduler)
        with Client(scheduler) as client:          # closing the client leaves the cluster running
            client.run(_pin_blas, 1)
            futures = client.compute(tasks)
            for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="task", disable=None):
                pass
            return client.gather(futures)
