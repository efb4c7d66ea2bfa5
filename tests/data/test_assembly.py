"""Tests for pipeline.data.assembly: schema and I/O."""

import numpy as np
import pytest
import xarray as xr

from pipeline.data.assembly import ALLEN_AREAS, read_assembly, write_assembly


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
