"""Tests for pipeline.data.assembly: schema, I/O and split-half reliability."""

import numpy as np
import pytest
import xarray as xr

from pipeline.data.assembly import (ALLEN_AREAS, read_assembly, split_half_masks,
                                    split_half_reliability, write_assembly)


def make_assembly(n_stimulus=20, n_trial=6, n_neuroid=5, seed=0):
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.normal(size=(n_stimulus, n_trial, n_neuroid)), dims=("stimulus", "trial", "neuroid"),
        name="response",
        coords={"stimulus_id": ("stimulus", [f"s{i}" for i in range(n_stimulus)]),
                "neuroid_id": ("neuroid", [f"n{i}" for i in range(n_neuroid)]),
                "animal": ("neuroid", ["a"] * n_neuroid),
                "area": ("neuroid", [ALLEN_AREAS[i % 6] for i in range(n_neuroid)]),
                "reliability": ("neuroid", rng.random(n_neuroid))})


def test_round_trip(tmp_path):
    da = make_assembly()
    da[0, 0, 0] = np.nan
    write_assembly(da, tmp_path / "a.zarr")
    back = read_assembly(tmp_path / "a.zarr")
    assert back.name == "response"
    xr.testing.assert_equal(back, da)
    assert isinstance(back.variable._data, np.ndarray)   # loaded, not lazy


@pytest.mark.parametrize("drop", ["area", "neuroid_id", "reliability", "stimulus_id"])
def test_missing_coord_is_named(tmp_path, drop):
    da = make_assembly().drop_vars(drop)
    with pytest.raises(ValueError, match=f"{tmp_path / 'a.zarr'}.*{drop}"):
        write_assembly(da, tmp_path / "a.zarr")


def test_missing_dim_is_named(tmp_path):
    da = make_assembly().isel(trial=0, drop=True)
    with pytest.raises(ValueError, match="missing \\['trial'\\]"):
        write_assembly(da, tmp_path / "a.zarr")


def test_read_validates(tmp_path):
    from pipeline.io import write_zarr
    write_zarr(make_assembly().drop_vars("animal"), tmp_path / "bad.zarr", name="response")
    with pytest.raises(ValueError, match="bad.zarr.*'animal'"):
        read_assembly(tmp_path / "bad.zarr")


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
