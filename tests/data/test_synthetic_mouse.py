"""Tests for pipeline.data.synthetic_mouse: the generator network, the simulated sessions and
their assembly through the real Neuropixels loader."""

import json

import numpy as np
import pytest
from pynwb import NWBHDF5IO
from sklearn.linear_model import Ridge

from pipeline.data.assembly import ALLEN_AREAS
from pipeline.data.stimuli import make_stimulus_sets
from pipeline.cli import main as cli
from pipeline.data.assembly import read_assembly
from pipeline.data.synthetic_mouse import Generator, onset, simulate_synthetic_mouse, time_course
from pipeline.io import write_zarr
from pipeline.io import read_zarr


def test_features_are_deterministic_per_image(probe_small):
    images = probe_small["image"].values
    full = Generator(0).features(images)
    part = Generator(0).features(images[5:9])
    assert set(full) == set(ALLEN_AREAS)
    for area in ALLEN_AREAS:
        assert full[area].shape == (40, Generator(0).width)
        np.testing.assert_allclose(part[area], full[area][5:9], atol=1e-10)
    other = Generator(1).features(images[:4])
    assert not np.allclose(other["VISp"], full["VISp"][:4])


def test_features_reject_bad_images():
    with pytest.raises(ValueError, match="stimulus, y, x, 3"):
        Generator(0).features(np.zeros((2, 8, 8), dtype=np.uint8))


def test_latency_orders_areas():
    onset = {a: np.argmax(time_course(a) > 0.5) for a in ALLEN_AREAS}
    assert onset["VISp"] == min(onset.values())
    for area in ALLEN_AREAS:
        assert time_course(area).mean() == pytest.approx(1.0)


def test_session_layout(sessions):
    out, paths = sessions
    assert len(paths) == 3
    for path in paths:
        subject = path.parent.name.removeprefix("sub-")
        assert path.name.startswith(f"sub-{subject}_ses-") and path.suffix == ".nwb"
        with NWBHDF5IO(str(path), "r") as io:
            nwb = io.read()
            units = nwb.units.to_dataframe()
            electrodes = nwb.electrodes.to_dataframe()
            table = nwb.intervals["natural_scenes_presentations"].to_dataframe()
            assert nwb.subject.subject_id == subject
            assert path.name == f"sub-{subject}_ses-{nwb.session_id}.nwb"
        assert {"spike_times", "peak_channel_id", "quality", "firing_rate", "snr",
                "isi_violations"} <= set(units.columns)
        assert set(units.peak_channel_id) <= set(electrodes.index)
        assert set(electrodes.location) == set(ALLEN_AREAS) | {"CA1"}
        assert (units.quality != "good").sum() > 0
        assert set(table.stimulus_name) == {"natural_scenes"}
        assert table.frame.dtype == np.float64
        counts = table.frame.value_counts()
        assert counts.loc[-1.0] == 20 and (counts == 20).all() and counts.size == 41
        np.testing.assert_allclose(table.stop_time - table.start_time, 0.25)
        np.testing.assert_allclose(table.start_time.values[1:], table.stop_time.values[:-1])
        assert all(np.all(np.diff(t) >= 0) for t in units.spike_times)
    assert (out / "truth.zarr").exists()


def test_truth_store(sessions, probe_small):
    out, _ = sessions
    truth = read_zarr(out / "truth.zarr").load()
    assert truth["rate"].dims == ("stimulus", "time_bin", "neuroid")
    assert truth.sizes == {"stimulus": 40, "time_bin": 25, "neuroid": 3 * 6 * 10}
    np.testing.assert_array_equal(truth.stimulus_id.values, probe_small.stimulus_id.values)
    np.testing.assert_allclose(truth["rate_mean"], truth["rate"].mean("time_bin"))
    assert np.unique(truth.neuroid_id).size == truth.sizes["neuroid"]
    np.testing.assert_array_equal(truth.stage.values,
                                  [ALLEN_AREAS.index(a) for a in truth.area.values])
    mean_rate = truth["rate_mean"].mean("stimulus")
    assert 3 < float(mean_rate.median()) < 25


def test_same_seed_same_spikes(tmp_path, probe_small):
    probe = probe_small.isel(stimulus=slice(0, 4))
    a = simulate_synthetic_mouse(probe, tmp_path / "a", animals_per_area=1, units_per_animal=2,
                                 trials=2, seed=0)
    b = simulate_synthetic_mouse(probe, tmp_path / "b", animals_per_area=1, units_per_animal=2,
                                 trials=2, seed=0)
    with NWBHDF5IO(str(a[0]), "r") as io_a, NWBHDF5IO(str(b[0]), "r") as io_b:
        np.testing.assert_array_equal(io_a.read().units.spike_times.data[:],
                                      io_b.read().units.spike_times.data[:])
    assert not list(tmp_path.glob("**/.*tmp*"))   # no temporary left behind


def test_bad_arguments(tmp_path, probe_small):
    with pytest.raises(ValueError, match="trials"):
        simulate_synthetic_mouse(probe_small, tmp_path, animals_per_area=2, units_per_animal=2,
                                 trials=1, seed=0)


def test_stage_features_peak_at_generating_stage(tmp_path):
    """Ridge (alpha 1, z-scored features, 50/50 split) from each stage to each area's units."""
    probe = make_stimulus_sets(train_per_class=0, test_per_class=0, probe=120, seed=0)["probe"]
    simulate_synthetic_mouse(probe, tmp_path, animals_per_area=1, units_per_animal=30, trials=2,
                             seed=0)
    truth = read_zarr(tmp_path / "truth.zarr").load()
    features = Generator(0).features(probe["image"].values)
    train, test = np.split(np.random.default_rng(0).permutation(120), 2)
    score = np.zeros((6, 6))
    for j, stage in enumerate(ALLEN_AREAS):
        x = features[stage]
        x = (x - x.mean(0)) / (x.std(0) + 1e-8)
        for k, area in enumerate(ALLEN_AREAS):
            y = truth["rate_mean"].values[:, truth.area.values == area]
            pred = Ridge(alpha=1.0).fit(x[train], y[train]).predict(x[test])
            score[j, k] = np.median([np.corrcoef(p, t)[0, 1] for p, t in zip(pred.T, y[test].T)])
    np.testing.assert_array_equal(score.argmax(axis=0), np.arange(6))
    assert (np.diag(score) - np.sort(score, axis=0)[-2] > 0.1).all()


def test_cli_simulates_and_assembles_through_the_rule_verbs(tmp_path, probe_small):
    """The two rule verbs, each with its config block, give an assembly on the probe stimuli."""
    probe = tmp_path / "shapes_probe.zarr"
    write_zarr(probe_small, probe)
    simulate = {"animals_per_area": 2, "units_per_animal": 6, "trials": 10, "seed": 0}
    assemble = {"bin_size": 0.01, "window": [0.0, 0.25], "unit_threshold": 0.5,
                "median_threshold": 0.3, "specimen_quantile": None, "n_boot": 10, "seed": 0}
    assert cli(["simulate_synthetic_mouse", str(probe), str(tmp_path / "raw"), "--settings",
                json.dumps(simulate)]) == 0
    assert cli(["assemble_synthetic_mouse", str(tmp_path / "raw"), str(probe),
                str(tmp_path / "neural.zarr"), "--settings", json.dumps(assemble)]) == 0
    assembly = read_assembly(tmp_path / "neural.zarr")
    np.testing.assert_array_equal(assembly.stimulus_id.values, probe_small.stimulus_id.values)
    assert set(assembly.animal.values) <= {"700000", "700001"} and assembly.sizes["trial"] == 10


# ---------------------------------------------------------------- a trained model as the generator


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ventral_cnn trained for one epoch on random 16-px images, and a probe set."""
    from pipeline.train import TrainSettings, train
    from tests.stimulus_sets import write_stimuli

    root = tmp_path_factory.mktemp("generator")
    write_stimuli(root / "train.zarr", 24, 0, "train")
    write_stimuli(root / "test.zarr", 6, 1, "test")
    write_stimuli(root / "probe.zarr", 16, 2, "probe")
    train("ventral_cnn-supervised-bp-s3", root / "train.zarr", root / "test.zarr", root / "model",
          TrainSettings(epochs=1, batch_size=8), device="cpu")
    return root


def test_model_generator_areas_read_its_final_layers_by_depth(trained):
    """Each area's features are the final checkpoint's layer outputs (a direct forward pass)."""
    from pipeline.data.synthetic_mouse import ModelGenerator, area_layers
    from tests.test_activations import direct_forward

    probe = read_zarr(trained / "probe.zarr").load()
    hidden = ModelGenerator("ventral_cnn-supervised-bp-s3", trained / "model")
    assert hidden.epoch_ == 1
    assert hidden.area_layers_ == area_layers(["area1", "area2", "area3", "area4", "readout"])
    features = hidden.features(probe["image"].values)
    expected = direct_forward(trained / "model" / "epoch_001.pt", probe["image"].values)
    for area, layer in hidden.area_layers_.items():
        np.testing.assert_allclose(features[area], expected[layer], rtol=1e-5, atol=1e-5)
    assert hidden.depth() == {"VISp": 0.0, "VISl": 0.25, "VISal": 0.5, "VISrl": 0.5, "VISam": 0.75,
                              "VISpm": 1.0}
    with pytest.raises(ValueError, match="holds model"):
        ModelGenerator("ventral_cnn-supervised-fa-s3", trained / "model")


def test_model_generator_simulation_records_its_truth(trained, tmp_path):
    """The truth store names the generator and the layer and depth of each area; a model
    generator without its trained folder is refused."""
    probe = read_zarr(trained / "probe.zarr").load()
    simulate_synthetic_mouse(probe, tmp_path / "raw", animals_per_area=1, units_per_animal=4, trials=2,
                             seed=0, generator="ventral_cnn-supervised-bp-s3",
                             generator_dir=trained / "model")
    truth = read_zarr(tmp_path / "raw" / "truth.zarr")
    assert truth.attrs["generator"] == "ventral_cnn-supervised-bp-s3"
    assert json.loads(truth.attrs["area_layers"])["VISpm"] == "readout"
    assert json.loads(truth.attrs["area_depths"])["VISam"] == 0.75
    with pytest.raises(ValueError, match="generator_dir"):
        simulate_synthetic_mouse(probe, tmp_path / "x", animals_per_area=1, units_per_animal=2,
                                 trials=2, seed=0, generator="ventral_cnn-supervised-bp-s3")


def test_random_generator_is_unchanged_by_the_generator_key(tmp_path, probe_small):
    """generator="random" (the default) gives bit-identical spikes and truth to leaving it out."""
    probe = probe_small.isel(stimulus=slice(0, 4))
    a = simulate_synthetic_mouse(probe, tmp_path / "a", animals_per_area=1, units_per_animal=3,
                                 trials=2, seed=1)
    b = simulate_synthetic_mouse(probe, tmp_path / "b", animals_per_area=1, units_per_animal=3,
                                 trials=2, seed=1, generator="random")
    with NWBHDF5IO(str(a[0]), "r") as io_a, NWBHDF5IO(str(b[0]), "r") as io_b:
        np.testing.assert_array_equal(io_a.read().units.spike_times.data[:],
                                      io_b.read().units.spike_times.data[:])
    truth = read_zarr(tmp_path / "b" / "truth.zarr")
    assert truth.attrs["generator"] == "random"
    np.testing.assert_array_equal(truth["rate"].values, read_zarr(tmp_path / "a" / "truth.zarr")["rate"].values)


def test_dynamics_off_is_the_static_simulation(tmp_path, probe_small):
    """dynamics disabled (the default) gives bit-identical spikes and truth to leaving it out;
    the static outputs of the code before dynamics existed are checked in
    tests/compare/test_temporal.py (stored baseline)."""
    probe = probe_small.isel(stimulus=slice(0, 4))
    a = simulate_synthetic_mouse(probe, tmp_path / "a", animals_per_area=1, units_per_animal=3,
                                 trials=2, seed=1)
    b = simulate_synthetic_mouse(probe, tmp_path / "b", animals_per_area=1, units_per_animal=3,
                                 trials=2, seed=1, dynamics={"enabled": False, "tau": 0.1})
    with NWBHDF5IO(str(a[0]), "r") as io_a, NWBHDF5IO(str(b[0]), "r") as io_b:
        np.testing.assert_array_equal(io_a.read().units.spike_times.data[:],
                                      io_b.read().units.spike_times.data[:])
    truth = read_zarr(tmp_path / "b" / "truth.zarr")
    assert "code" not in truth and "dynamics" not in truth.attrs
    np.testing.assert_array_equal(truth["rate"].values, read_zarr(tmp_path / "a" / "truth.zarr")["rate"].values)


@pytest.fixture(scope="module")
def dynamic_truth(tmp_path_factory, probe_small):
    out = tmp_path_factory.mktemp("dynamic")
    simulate_synthetic_mouse(probe_small, out, animals_per_area=2, units_per_animal=4, trials=2, seed=0,
                             dynamics={"enabled": True})
    return read_zarr(out / "truth.zarr").load()


def _r2(X, Y):
    """Cross-validated-free R² of the least-squares fit of Y (stimulus, dim) from X."""
    fit = Ridge(alpha=1e-6).fit(X, Y)
    return 1 - ((Y - fit.predict(X)) ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum()


def test_dynamics_early_bins_read_the_feedforward_code_late_bins_more(dynamic_truth):
    code, ff = dynamic_truth["code"], dynamic_truth["feedforward_code"]
    assert code.dims == ("area_code", "time_bin", "stimulus", "code_dim")
    assert list(dynamic_truth["area_code"].values) == list(ALLEN_AREAS)
    assert json.loads(dynamic_truth.attrs["dynamics"])["enabled"] is True
    for area in ALLEN_AREAS:
        z, c = code.sel(area_code=area).values, ff.sel(area_code=area).values
        first = int(np.argmax(onset(area) > 0.5))                  # first bin centred after onset
        assert np.abs(z[:first - 1]).max() < 0.05 * np.abs(c).max()      # nothing before onset
        early = z[first]
        late = z[-1]
        # Early: (nearly) the feedforward code itself; late: half of it or more is not linear in it.
        assert _r2(c, early) > 0.95, area
        assert _r2(c, late) < 0.75, (area, _r2(c, late))
    # Units read the code of each bin: their rates change with the stimulus differently early and late.
    rate = dynamic_truth["rate"].values
    corr = [np.corrcoef(rate[:, 8, u], rate[:, 24, u])[0, 1] for u in range(rate.shape[2])]
    assert np.median(corr) < 0.95


def test_dynamics_settings_are_checked(tmp_path, probe_small):
    probe = probe_small.isel(stimulus=slice(0, 4))
    with pytest.raises(ValueError, match="unknown keys"):
        simulate_synthetic_mouse(probe, tmp_path, animals_per_area=1, units_per_animal=2, trials=2, seed=0,
                                 dynamics={"enabled": True, "speed": 2})
    with pytest.raises(ValueError, match="dynamics.tau"):
        simulate_synthetic_mouse(probe, tmp_path, animals_per_area=1, units_per_animal=2, trials=2, seed=0,
                                 dynamics={"enabled": True, "tau": 0})
