"""Tests for pipeline.data.assembly: schema and I/O."""

import numpy as np
import pytest
import xarray as xr

from pipeline.data.assembly import ALLEN_AREAS, read_assembly, time_average, time_bin_coords, write_assembly


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


def time_resolved(n_bins=4, seed=1):
    """A (stimulus, trial, time_bin, neuroid) assembly with per-neuroid windows."""
    base = make_assembly(seed=seed)
    rng = np.random.default_rng(seed)
    values = rng.normal(size=base.shape[:2] + (n_bins,) + base.shape[2:])
    return xr.DataArray(values, dims=("stimulus", "trial", "time_bin", "neuroid"), name="response",
                        coords={**{k: v for k, v in base.coords.items()},
                                **time_bin_coords(0.01 * np.arange(n_bins), 0.01),
                                "window_start": ("neuroid", [0.0, 0.01, 0.0, 0.02, 0.01]),
                                "window_stop": ("neuroid", [0.04, 0.03, 0.01, 0.04, 0.04])})


def test_time_average_uses_each_neuroids_window(tmp_path):
    da = time_resolved()
    mean = time_average(da)
    assert mean.dims == ("stimulus", "trial", "neuroid")
    expected = [da.values[:, :, 0:4, 0].mean(2), da.values[:, :, 1:3, 1].mean(2), da.values[:, :, 0:1, 2].mean(2),
                da.values[:, :, 2:4, 3].mean(2), da.values[:, :, 1:4, 4].mean(2)]
    np.testing.assert_allclose(mean.values, np.stack(expected, -1), rtol=1e-12)
    np.testing.assert_array_equal(mean["neuroid_id"].values, da["neuroid_id"].values)
    write_assembly(da, tmp_path / "t.zarr")
    xr.testing.assert_allclose(read_assembly(tmp_path / "t.zarr"), mean)
    kept = read_assembly(tmp_path / "t.zarr", time_bins="keep")
    assert kept.dims == da.dims
    np.testing.assert_allclose(kept["time_bin_end"].values, 0.01 * np.arange(1, 5))
    flat = make_assembly()
    assert time_average(flat) is flat                                 # nothing to average: untouched
    with pytest.raises(ValueError, match="time_bins"):
        read_assembly(tmp_path / "t.zarr", time_bins="median")


def test_time_bins_need_increasing_starts(tmp_path):
    da = time_resolved()
    with pytest.raises(ValueError, match="'time_bin' must increase"):
        write_assembly(da.assign_coords(time_bin=("time_bin", [0.0, 0.02, 0.01, 0.03])), tmp_path / "x.zarr")
    with pytest.raises(ValueError, match="needs coord 'time_bin'"):
        write_assembly(da.drop_vars(["time_bin", "time_bin_end"]), tmp_path / "y.zarr")
