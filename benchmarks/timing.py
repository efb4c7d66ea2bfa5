"""What the benchmark scripts share: wall-clock timing of one call."""

from __future__ import annotations

import time


def timed(func, *args, **kwargs):
    """(seconds, result) of one call of `func`, by `time.perf_counter`."""
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return time.perf_counter() - start, result
