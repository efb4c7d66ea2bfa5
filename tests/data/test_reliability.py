"""Tests for pipeline.data.reliability: sync trial halves and split-half reliability."""

import numpy as np
import pytest
import xarray as xr

from pipeline.data.reliability import split_half_masks, split_half_reliability, trial_halves


@pytest.mark.parametrize("n_trials", [50, 51, 2])
def test_trial_halves_are_disjoint_equal_halves(n_trials):
    halves = trial_halves(n_trials, n_halves=5, seed=0)
    assert len(halves) == 5
    for first, second in halves:
        assert first.size == second.size == n_trials // 2
        assert np.intersect1d(first, second).size == 0


def test_trial_halves_are_deterministic_and_vary_across_resamples():
    a, b = trial_halves(50, 6, seed=1), trial_halves(50, 6, seed=1)
    for (a1, a2), (b1, b2) in zip(a, b):
        np.testing.assert_array_equal(a1, b1)
        np.testing.assert_array_equal(a2, b2)
    assert len({tuple(first) for first, _ in a}) == 6


def test_trial_halves_need_two_trials():
    with pytest.raises(ValueError, match="at least 2 trials"):
        trial_halves(1, 3)


def _loop_reliability(values, n_boot, seed):
    """Direct per-unit reference: (stimulus, trial, unit) -> (unit,)."""
    masks = split_half_masks(values.shape[1], n_boot, seed).astype(bool)
    out = []
    for u in range(values.shape[2]):
        sb = []
        for b in range(n_boot):
            h1 = np.nanmean(values[:, masks[0, b], u], axis=1)
            h2 = np.nanmean(values[:, masks[1, b], u], axis=1)
            ok = np.isfinite(h1) & np.isfinite(h2)
            r = np.corrcoef(h1[ok], h2[ok])[0, 1]
            sb.append(2 * r / (1 + r))
        out.append(np.nanmean(sb))
    return np.array(out)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("with_nan", [False, True])
@pytest.mark.parametrize("n_trial", [10, 9])
def test_matches_per_unit_loop(with_nan, n_trial):
    rng = np.random.default_rng(1)
    signal = rng.normal(size=(30, 1, 7))
    values = signal * rng.uniform(0.2, 2, 7) + rng.normal(size=(30, n_trial, 7))
    if with_nan:
        values[rng.random(values.shape) < 0.1] = np.nan
        values[:3, :, 2] = np.nan          # a few stimuli missing entirely for one unit
    x = xr.DataArray(values, dims=("stimulus", "trial", "neuroid"),
                     coords={"neuroid_id": ("neuroid", list("abcdefg"))})
    ours = split_half_reliability(x, n_boot=25, seed=4)
    assert ours.dims == ("neuroid",)
    assert list(ours.neuroid_id.values) == list("abcdefg")
    np.testing.assert_allclose(ours.values, _loop_reliability(values, 25, 4), rtol=1e-10)


def test_extra_dims_are_kept_in_order():
    rng = np.random.default_rng(2)
    x = xr.DataArray(rng.normal(size=(12, 3, 8, 4)),
                     dims=("stimulus", "time_bin", "trial", "neuroid"),
                     coords={"time_bin": [0.0, 0.01, 0.02]})
    ours = split_half_reliability(x, n_boot=10, seed=0)
    assert ours.dims == ("time_bin", "neuroid")
    direct = split_half_reliability(x.isel(time_bin=1), n_boot=10, seed=0)
    np.testing.assert_allclose(ours.isel(time_bin=1).values, direct.values)


def test_constant_unit_gives_nan():
    x = xr.DataArray(np.ones((10, 4, 1)), dims=("stimulus", "trial", "neuroid"))
    assert np.isnan(split_half_reliability(x, n_boot=5).values[0])


@pytest.mark.parametrize("noise_sd", [0.5, 1.5, 3.0])
def test_recovers_closed_form_reliability(noise_sd):
    # Signal var 1, per-trial noise var s²: a T-trial mean has reliability 1 / (1 + s²/T);
    # SB of the half-split correlation estimates exactly that.
    rng = np.random.default_rng(5)
    n_trial, n_unit = 20, 4
    signal = rng.normal(size=(3000, 1, n_unit))
    values = signal + noise_sd * rng.normal(size=(3000, n_trial, n_unit))
    x = xr.DataArray(values, dims=("stimulus", "trial", "neuroid"))
    expected = 1 / (1 + noise_sd ** 2 / n_trial)
    np.testing.assert_allclose(split_half_reliability(x, n_boot=20).values, expected, atol=0.02)


def test_needs_stimulus_and_trial():
    with pytest.raises(ValueError, match="'trial'"):
        split_half_reliability(xr.DataArray(np.zeros((3, 3)), dims=("stimulus", "neuroid")))
