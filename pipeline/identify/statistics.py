"""The observables' statistics (spec_ch5-6 B.4): three functions × seven statistics of a tensor.

A measure (weights, activations, activity change) is transformed by a function (`raw`, `abs`,
`sq`) and summarised by a statistic, named `{measure}_{function}_{statistic}` (the released
code's `measure+function_stat`, with separators). The seven statistics follow
lr-identify's `Metrics/functions.py`: Frobenius norm, mean, population variance, median, third
quartile, Pearson's second skewness coefficient 3(mean − median)/std and the non-excess
kurtosis E[(z − μ)⁴]/var². Quantiles interpolate linearly between order statistics (numpy's
default; the TF code took the nearest one).

Every statistic of the three functions comes from one sort of the raw values and one of their
absolute values (the squares sort as the absolute values do), so a batch of examples is read
once for all 21 numbers.
"""

from __future__ import annotations

import torch

FUNCTIONS = ("raw", "abs", "sq")
STATISTICS = ("norm", "mean", "var", "median", "thirdquartile", "skew", "kurtosis")
# measure names: forward weights, layer outputs, activity change through the forward Jacobian
# (`gradavg`) and through the backward weights B as the released layers compute it (`gradavgfb`).
MEASURES = ("weight", "act", "gradavg", "gradavgfb")
# Activity change keeps only the mean over the validation set (B.4).
GRADIENT_MEASURES = ("gradavg", "gradavgfb")

# The 24 statistics that never diverged in the thesis' runs (B.4, lr-identify's list), for the
# weights, the activations and the activity change.
ADMISSIBLE = {
    "weight": [f"{f}_{s}" for f in ("abs", "raw") for s in ("mean", "median", "norm",
                                                            "thirdquartile", "var")]
              + [f"sq_{s}" for s in ("mean", "median", "thirdquartile")],
    "act": [f"{f}_{s}" for f in ("abs", "raw") for s in ("mean", "median", "norm",
                                                         "thirdquartile")],
    "gradavg": [f"{f}_mean" for f in FUNCTIONS],
}


def observable_name(measure: str, function: str, statistic: str) -> str:
    """`{measure}_{function}_{statistic}`, e.g. `weight_abs_median`."""
    return f"{measure}_{function}_{statistic}"


def all_observables(measure: str) -> list[str]:
    """Every observable of a measure: 21 for weights and activations, 3 for activity change."""
    if measure in GRADIENT_MEASURES:
        return [observable_name(measure, f, "mean") for f in FUNCTIONS]
    return [observable_name(measure, f, s) for f in FUNCTIONS for s in STATISTICS]


def admissible_observables(measure: str) -> list[str]:
    """The admissible observables of a measure (both activity-change variants share a list)."""
    key = "gradavg" if measure in GRADIENT_MEASURES else measure
    return [f"{measure}_{name}" for name in ADMISSIBLE[key]]


def apply_function(values: torch.Tensor, function: str) -> torch.Tensor:
    """`raw` (identity), `abs` or `sq` of a tensor."""
    if function == "raw":
        return values
    if function == "abs":
        return values.abs()
    if function == "sq":
        return values.square()
    raise ValueError(f"function must be one of {', '.join(FUNCTIONS)}; got {function!r}")


def _quantile(sorted_rows: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of each row of an ascending (rows, n) tensor, linear interpolation."""
    n = sorted_rows.shape[1]
    position = (n - 1) * q
    low = int(position)
    high = min(low + 1, n - 1)
    weight = position - low
    return sorted_rows[:, low] + weight * (sorted_rows[:, high] - sorted_rows[:, low])


def _row_statistics(values: torch.Tensor, sorted_rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The seven statistics of each row of `values` (rows, n), given its rows sorted."""
    mean = values.mean(1)
    centred = values - mean[:, None]
    var = centred.square().mean(1)                         # population variance, as tf.nn.moments
    median = _quantile(sorted_rows, 0.5)
    return {
        "norm": values.square().sum(1).sqrt(),
        "mean": mean,
        "var": var,
        "median": median,
        "thirdquartile": _quantile(sorted_rows, 0.75),
        "skew": 3 * (mean - median) / var.sqrt(),          # Pearson's second coefficient
        "kurtosis": centred.square().square().mean(1) / var.square(),   # non-excess
    }


def row_statistics(values: torch.Tensor) -> dict[tuple[str, str], torch.Tensor]:
    """All 21 (function, statistic) pairs of each row of `values`.

    Parameters
    ----------
    values : torch.Tensor
        (rows, n): one row per example (activations over units) or a single row (a weight
        tensor flattened). Computed in float64.

    Returns
    -------
    dict of (function, statistic) to torch.Tensor
        Each (rows,). A constant row gives NaN skew and kurtosis (0/0), as in the TF code;
        such statistics are dropped when features are built.
    """
    values = values.detach().to(torch.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"row_statistics needs a (rows, n) tensor with n ≥ 1; got shape "
                         f"{tuple(values.shape)}")
    raw_sorted = values.sort(1).values
    magnitude = values.abs()
    abs_sorted = magnitude.sort(1).values
    out = {}
    for function, v, s in (("raw", values, raw_sorted), ("abs", magnitude, abs_sorted),
                           ("sq", magnitude.square(), abs_sorted.square())):
        for statistic, value in _row_statistics(v, s).items():
            out[function, statistic] = value
    return out
