"""Tests for pipeline.data.allen_ecephys: spike counting, selection filters, ground truth."""

import math

import h5py
import numpy as np
import pytest
import xarray as xr
from pynwb import NWBHDF5IO

from pipeline.data.allen_ecephys import (assemble_ecephys, largest_run, select_window,
                                         session_spike_counts)
from pipeline.data.assembly import ALLEN_AREAS, read_assembly, write_assembly
from pipeline.io import read_zarr


def _independent_counts(path):
    """(frame, trial, bin, unit) counts from pynwb + np.histogram, one presentation at a time."""
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        units = nwb.units.to_dataframe()
        electrodes = nwb.electrodes.to_dataframe()
        table = nwb.intervals["natural_scenes_presentations"].to_dataframe()
        session = nwb.session_id
    units["area"] = electrodes.location.loc[units.peak_channel_id].values
    good = units[(units.quality == "good") & units.area.isin(ALLEN_AREAS)]
    table = table[table.frame >= 0].sort_values("start_time")
    trial = table.groupby("frame").cumcount().values
    frame, start = table.frame.values.astype(int), table.start_time.values
    out = np.zeros((frame.max() + 1, trial.max() + 1, 25, len(good)))
    for j, spikes in enumerate(good.spike_times):
        for f, t, s in zip(frame, trial, start):
            out[f, t, :, j] = np.histogram(spikes, s + 0.01 * np.arange(26))[0]
    return out, [f"{session}_{u}" for u in good.index]


def test_counts_round_trip(sessions):
    _, paths = sessions
    counts = session_spike_counts(paths[0])
    expected, neuroid_id = _independent_counts(paths[0])
    assert counts.dims == ("stimulus", "trial", "time_bin", "neuroid")
    assert sorted(counts.neuroid_id.values) == sorted(neuroid_id)
    assert len(neuroid_id) == 6 * 10
    np.testing.assert_allclose(counts.time_bin.values, 0.01 * np.arange(25))
    np.testing.assert_array_equal(counts.frame.values, np.arange(40))   # blank dropped
    order = [list(counts.neuroid_id.values).index(n) for n in neuroid_id]
    np.testing.assert_array_equal(counts.values[..., order], expected)
    assert expected.sum() > 1000


def test_noise_and_other_area_units_dropped(sessions):
    _, paths = sessions
    counts = session_spike_counts(paths[0], areas=("VISp", "VISam"))
    assert set(counts.area.values) == {"VISp", "VISam"}
    assert counts.sizes["neuroid"] == 20
    with h5py.File(paths[0]) as f:
        subject = f["general/subject/subject_id"][()].decode()
        quality = f["units/quality"][:].astype(str)
        unit_ids = f["units/id"][:]
    assert (counts.animal.values == subject).all()
    noise = {f"{paths[0].stem.split('ses-')[1]}_{u}" for u in unit_ids[quality != "good"]}
    assert noise and not noise & set(counts.neuroid_id.values)


def test_missing_trials_are_nan_padded(sessions, tmp_path):
    _, paths = sessions
    path = tmp_path / "copy.nwb"
    path.write_bytes(paths[0].read_bytes())
    with h5py.File(path, "r+") as f:
        frame = f["intervals/natural_scenes_presentations/frame"]
        values = frame[:]
        values[np.flatnonzero(values == 3)[-2:]] = -1      # image 3 loses its last two trials
        frame[:] = values
    counts = session_spike_counts(path)
    assert counts.sizes["trial"] == 20
    assert np.isnan(counts.isel(stimulus=3, trial=[18, 19])).all()
    assert not np.isnan(counts.isel(stimulus=3, trial=slice(0, 18))).any()


def test_missing_field_names_file_and_field(sessions, tmp_path):
    _, paths = sessions
    path = tmp_path / "broken.nwb"
    path.write_bytes(paths[0].read_bytes())
    with h5py.File(path, "r+") as f:
        del f["intervals/natural_scenes_presentations/frame"]
    with pytest.raises(ValueError, match="broken.nwb.*natural_scenes_presentations/frame"):
        session_spike_counts(path)


@pytest.mark.parametrize("mask, run", [
    ([0, 1, 1, 0, 1, 1, 1, 0], (4, 7)),
    ([1, 1, 0, 1, 1], (0, 2)),          # ties: the earliest
    ([0, 0, 0], None),
    ([1, 1, 1], (0, 3)),
    ([0, 0, 1], (2, 3)),
])
def test_largest_run(mask, run):
    assert largest_run(np.array(mask, dtype=bool)) == run


def _tiny_rates(seed=0, n_reliable=4, n_noise=4, reliable_bins=slice(5, 10)):
    """Units with a strong stimulus signal in `reliable_bins` only, and pure-noise units."""
    rng = np.random.default_rng(seed)
    n_stim, n_trial, n_bin = 30, 20, 12
    values = rng.normal(size=(n_stim, n_trial, n_bin, n_reliable + n_noise))
    values[:, :, reliable_bins, :n_reliable] += 3 * rng.normal(size=(n_stim, 1, 1, n_reliable))
    return xr.DataArray(values, dims=("stimulus", "trial", "time_bin", "neuroid"),
                        coords={"time_bin": 0.01 * np.arange(n_bin),
                                "neuroid_id": ("neuroid",
                                               [f"u{i}" for i in range(values.shape[-1])])})


def test_reliability_filter_keeps_reliable_units_and_window():
    response, window = select_window(_tiny_rates(), n_boot=20)
    assert list(response.neuroid_id.values) == ["u0", "u1", "u2", "u3"]
    assert window == pytest.approx((0.05, 0.10))
    assert response.dims == ("stimulus", "trial", "neuroid")


def test_median_filter_drops_specimen():
    # One reliable unit out of nine: it passes the unit filter, and it alone is the median.
    assert select_window(_tiny_rates(n_reliable=1, n_noise=8), n_boot=20) is not None
    # No reliable unit at all: nothing is kept.
    assert select_window(_tiny_rates(n_reliable=0, n_noise=8), n_boot=20) is None
    # A threshold no median reaches drops the specimen.
    assert select_window(_tiny_rates(), median_threshold=0.999, n_boot=20) is None


@pytest.fixture(scope="module")
def assembled(sessions, probe_small):
    _, paths = sessions
    return assemble_ecephys(paths, probe_small.stimulus_id.values, n_boot=20)


def test_assembly_schema_and_truth_ids(assembled, sessions, probe_small):
    out, _ = sessions
    assert assembled.dims == ("stimulus", "trial", "neuroid")
    assert assembled.name == "response"
    np.testing.assert_array_equal(assembled.stimulus_id.values, probe_small.stimulus_id.values)
    truth = read_zarr(out / "truth.zarr")
    assert set(assembled.neuroid_id.values) <= set(truth.neuroid_id.values)
    kept = truth.set_index(neuroid="neuroid_id").sel(neuroid=assembled.neuroid_id.values)
    np.testing.assert_array_equal(kept.area.values, assembled.area.values)
    np.testing.assert_array_equal(kept.animal.values, assembled.animal.values)
    assert (assembled.window_stop > assembled.window_start).all()
    assert set(assembled.area.values) == set(ALLEN_AREAS)
    assert 0 < assembled.sizes["neuroid"] < truth.sizes["neuroid"]   # the filter drops some


def test_assembly_recovers_truth(assembled, sessions):
    out, _ = sessions
    truth = read_zarr(out / "truth.zarr").load().set_index(neuroid="neuroid_id")
    truth = truth.sel(neuroid=assembled.neuroid_id.values)
    mean = assembled.mean("trial").values
    r = np.array([np.corrcoef(m, t)[0, 1] for m, t in zip(mean.T, truth.rate_mean.values.T)])
    reliable = assembled.reliability.values > 0.8
    assert reliable.sum() >= 20
    assert np.median(r[reliable]) > 0.9
    # Unbiased: correlation with the truth tracks the square root of the reliability.
    assert np.corrcoef(r, np.sqrt(np.clip(assembled.reliability.values, 0, 1)))[0, 1] > 0.5


def test_specimen_quantile_rule(assembled, sessions, probe_small):
    _, paths = sessions
    strict = assemble_ecephys(paths, probe_small.stimulus_id.values, n_boot=20,
                              specimen_quantile=0.75)
    for area in ALLEN_AREAS:
        animals = assembled.animal.values[assembled.area.values == area]
        names, counts = np.unique(animals, return_counts=True)
        threshold = math.ceil(np.quantile(counts, 0.75))
        kept = set(strict.animal.values[strict.area.values == area])
        assert kept == set(names[counts >= threshold])
        assert len(kept) < len(names) or len(set(counts)) == 1


def test_unknown_frame_raises(sessions):
    _, paths = sessions
    with pytest.raises(ValueError, match="stimulus_ids"):
        assemble_ecephys(paths[:1], ["a", "b"], n_boot=2)


def test_assembly_round_trips_through_zarr(assembled, tmp_path):
    write_assembly(assembled, tmp_path / "neural.zarr")
    back = read_assembly(tmp_path / "neural.zarr")
    xr.testing.assert_equal(back, assembled)
    assert back.attrs["units"] == "Hz"
