"""Device choice, thread pinning, malloc policy, seeding, numeric precision, determinism and
stop signals shared by training and extraction."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import random
import signal
import threading

import numpy as np
import torch
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
# Rules whose forward pass may run under bf16 autocast: bp, and the feedback rules, whose FB
# layers' backward runs in the incoming gradient's dtype (pipeline/learning/functions.py) and
# whose alignment losses run in fp32 on the cached bf16 activity (pipeline/learning/layers.py).
# The local rules (hebb, pc, nmf, burstprop, ddtp) fall back to fp32: they update weights from
# their own saved activations and relaxations, whose precision their tests certify in fp32 only.
BF16_RULES = frozenset({"bp", "fa", "ss", "kp", "wm", "ia", "sa", "aa"})
# What SLURM sends before a time limit (--signal) or a preemption (SIGTERM).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1")
                     if hasattr(signal, name))
# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


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


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of giving it back to the OS.

    Forward and backward passes free and allocate their activations anew every batch. By
    default glibc maps blocks above a threshold (128 KiB at first, 32 MiB at most) straight
    from the OS, unmaps them when freed and trims the heap's free top, so every batch faults
    its pages in again and the kernel zeroes them: on 2 cores, 15 to 33 % of a small CNN's
    forward pass (`benchmarks/training.py --malloc-default`). Here every block comes from the
    heap (no mapped blocks: a raised threshold still maps blocks above 32 MiB, as an
    extraction holding a few batches' layer outputs needs) and the heap is never trimmed, so
    the process keeps its peak heap until it exits. A process-wide setting: the job's entry
    point calls it. Returns False, changing nothing, where the C library is not glibc.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    done = (libc.mallopt(M_MMAP_MAX, 0) == 1                   # 0: no block is mapped
            and libc.mallopt(M_TRIM_THRESHOLD, -1) == 1)       # -1: never trim
    log.debug("malloc keeps freed memory: %s", done)
    return done


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


def resolve_precision(precision: str, device: torch.device, rule: str) -> torch.dtype | None:
    """The autocast dtype a run trains with, or None for fp32.

    "fp32" is fp32; "bf16" asks for bf16 autocast on any device (CPU autocast too); "auto" is
    bf16 on a CUDA GPU that supports it, else fp32. A rule outside `BF16_RULES` trains in fp32
    whatever is asked (logged as a warning when bf16 was asked for explicitly).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "auto" and not (device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return None
    if rule not in BF16_RULES:
        (log.warning if precision == "bf16" else log.info)(
            "rule %r trains in fp32 (bf16 autocast only for rules %s: a local rule's own "
            "updates stay fp32)", rule, ", ".join(sorted(BF16_RULES)))
        return None
    log.info("bf16 autocast of the forward pass on %s", device)
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """`torch.autocast` to `dtype` on `device`, or a no-op context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def set_deterministic(deterministic: bool, device: torch.device) -> None:
    """Deterministic GPU kernels, or the fastest ones (cuDNN autotuning).

    Deterministic kernels (cuDNN's, cuBLAS with a fixed workspace, torch's deterministic
    algorithms) make two GPU runs of one seed give the same weights, at a cost in speed;
    without them runs drift apart by a few percent of the weights. CPU training is
    deterministic either way, and this changes nothing there.
    """
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic and device.type == "cuda"
    if device.type == "cuda":
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)
        log.info("GPU kernels: %s", "deterministic" if deterministic
                 else "fastest (cuDNN autotuned; not bit-reproducible)")


class StopRequest:
    """Records SIGTERM/SIGUSR1 (`STOP_SIGNALS`) while `installed`, so a long loop can stop at
    a safe point (`requested`) instead of dying mid-write. Outside the main thread (where
    Python cannot install handlers) it never triggers."""

    def __init__(self):
        self.signal = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @contextlib.contextmanager
    def installed(self):
        """Handle the stop signals inside the block; the previous handlers come back after."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}

        def handler(number, _frame):
            self.signal = signal.Signals(number).name

        for number in STOP_SIGNALS:
            signal.signal(number, handler)
        try:
            yield self
        finally:
            for number, old in previous.items():
                signal.signal(number, old)
