"""Run the consistency grid's tasks on a local pool, an existing dask scheduler, or SLURM workers."""

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
# Set in every SLURM worker job before Python starts, so BLAS never spawns more threads than cores=1.
_ONE_BLAS_THREAD = "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1"


def _pin_blas(n_threads):
    """Limit BLAS to `n_threads` in this process; numpy is imported first so its BLAS is loaded."""
    import numpy  # noqa: F401  (a worker may not have loaded BLAS yet; the limit needs it)

    threadpool_limits(limits=n_threads)


def compute(tasks, scheduler, n_workers, desc):
    """Run delayed tasks on a local scheduler or on a dask.distributed scheduler at `scheduler`.

    `scheduler=None` means a local pool of `n_workers` threads; "slurm" starts `n_workers`
    single-threaded workers as SLURM jobs (`slurm_cluster`) for this call. The work is batched array
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

        with contextlib.ExitStack() as stack:
            if scheduler == "slurm":
                scheduler = stack.enter_context(slurm_cluster(n_workers))
            log.info("%s: %d tasks on the dask scheduler at %s, 1 BLAS thread per worker", desc, len(tasks),
                     getattr(scheduler, "scheduler_address", scheduler))
            client = stack.enter_context(Client(scheduler))   # closing it leaves an external cluster running
            client.run(_pin_blas, 1)
            futures = client.compute(tasks)
            for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="task", disable=None):
                pass
            return client.gather(futures)


def slurm_cluster(n_workers):
    """A dask-jobqueue SLURMCluster of `n_workers` jobs, one single-threaded worker each.

    Partition, account, memory, walltime and extra sbatch flags come from dask's own
    configuration (`jobqueue.slurm.queue`, `.account`, `.memory`, `.walltime`,
    `.job_extra_directives`, e.g. in ~/.config/dask/jobqueue.yaml or DASK_JOBQUEUE__SLURM__QUEUE);
    cores and processes are fixed at 1 so a worker never runs more threads than SLURM gave it.
    """
    from dask_jobqueue import SLURMCluster

    memory = dask.config.get("jobqueue.slurm.memory", None) or "2GiB"
    prologue = [*(dask.config.get("jobqueue.slurm.job-script-prologue", None) or []), _ONE_BLAS_THREAD]
    cluster = SLURMCluster(cores=1, processes=1, memory=memory, job_script_prologue=prologue)
    cluster.scale(jobs=n_workers)
    log.info("started %d SLURM worker jobs (%s each) for scheduler %s", n_workers, memory,
             cluster.scheduler_address)
    return cluster
