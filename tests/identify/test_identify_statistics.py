"""The 21 statistics of a tensor against numpy and scipy.stats on the same arrays (spec_ch5-6 B.4)."""

import numpy as np
import pytest
import scipy.stats
import torch

from pipeline.identify.statistics import (ADMISSIBLE, FUNCTIONS, STATISTICS, admissible_observables,
                                          all_observables, apply_function, row_statistics)


def reference(row: np.ndarray, statistic: str) -> float:
    """The statistic of one row as numpy/scipy compute it (population variance, linear quantiles)."""
    mean, median = row.mean(), np.median(row)
    return {
        "norm": np.linalg.norm(row),
        "mean": mean,
        "var": np.var(row),
        "median": median,
        "thirdquartile": np.percentile(row, 75),
        "skew": 3 * (mean - median) / np.std(row),
        "kurtosis": scipy.stats.kurtosis(row, fisher=False),
    }[statistic]


@pytest.mark.parametrize("n", [2, 7, 64, 101])
@pytest.mark.parametrize("seed", [0, 1])
def test_statistics_equal_numpy_and_scipy(n, seed):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((5, n)) * rng.uniform(0.1, 3, (5, 1)) + rng.normal(0, 1, (5, 1))
    ours = row_statistics(torch.from_numpy(values))
    for function in FUNCTIONS:
        transformed = {"raw": values, "abs": np.abs(values), "sq": values ** 2}[function]
        for statistic in STATISTICS:
            expected = [reference(row, statistic) for row in transformed]
            np.testing.assert_allclose(ours[function, statistic].numpy(), expected, rtol=1e-10,
                                       atol=1e-12, err_msg=f"{function}_{statistic}")


def test_skewed_rows_have_the_sign_and_size_scipy_gives():
    """Exponential samples: positive Pearson skew, kurtosis near 9 (large n), as scipy says."""
    row = np.random.default_rng(3).exponential(size=(1, 20000))
    ours = row_statistics(torch.from_numpy(row))
    assert ours["raw", "skew"].item() > 0
    assert ours["raw", "kurtosis"].item() == pytest.approx(scipy.stats.kurtosis(row[0], fisher=False))
    assert ours["raw", "kurtosis"].item() == pytest.approx(9, rel=0.2)


def test_constant_rows_give_nan_skew_and_kurtosis():
    ours = row_statistics(torch.ones(2, 5))
    assert torch.isnan(ours["raw", "skew"]).all() and torch.isnan(ours["raw", "kurtosis"]).all()
    assert torch.equal(ours["raw", "mean"], torch.ones(2, dtype=torch.float64))


def test_the_observable_lists_count_45_and_24():
    assert sum(len(all_observables(m)) for m in ("weight", "act", "gradavg")) == 45
    assert sum(len(v) for v in ADMISSIBLE.values()) == 24
    assert admissible_observables("gradavgfb") == ["gradavgfb_raw_mean", "gradavgfb_abs_mean",
                                                   "gradavgfb_sq_mean"]
    assert "weight_sq_norm" not in admissible_observables("weight")      # diverged in the thesis
    assert set(admissible_observables("act")) <= set(all_observables("act"))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="rows, n"):
        row_statistics(torch.ones(3))
    with pytest.raises(ValueError, match="function must be one of"):
        apply_function(torch.ones(3), "log")
