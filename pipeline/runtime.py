"""Device choice, thread pinning and seeding shared by training and extraction."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> torch.device:
    """Turn a config value "auto" | "cpu" | "cuda" into a torch device.

    "auto" picks CUDA when available, else CPU. Requesting "cuda" on a machine without a
    usable GPU raises instead of silently running on CPU.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise RuntimeError(
            "device 'cuda' was requested but torch finds no CUDA GPU "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
            "use device 'auto' or 'cpu'"
        )
    chosen = torch.device("cuda" if device in ("auto", "cuda") and cuda else "cpu")
    log.info("device %s (requested %s)", chosen, device)
    return chosen


def set_num_threads(n: int) -> None:
    """Pin torch intra-op threads and BLAS/OpenMP pools (via threadpoolctl) to `n`.

    Keeps jobs that Snakemake or dask run side by side from oversubscribing the cores.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be a positive int; got {n!r}")
    torch.set_num_threads(n)
    threadpool_limits(limits=n)
    log.info("pinned torch and BLAS to %d thread(s)", n)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CPU and CUDA).

    Also makes cuDNN pick deterministic convolution kernels: its default (fastest, atomics-based)
    backward kernels make two GPU runs with one seed drift apart by a few percent of the weights.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
