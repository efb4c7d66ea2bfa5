"""Time-resolved consistency: per-bin and temporally fixed maps against scikit-learn, ground truth
on virtual animals with known dynamics, model time, phase summaries, and the time-averaged
path left bit for bit as it was."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge

from pipeline.compare.mappings import PLSMap, RidgeMap
from pipeline.compare.model_time import (bin_sources, graded_pseudo_layers, step_of_bin, timedecay_states,
                                         uniform_layers)
from pipeline.compare.splits import stimulus_splits
from pipeline.compare.temporal import fixed_scores, temporal_interanimal, temporal_predictivity
from pipeline.compare.temporal_summary import bin_medians, phase_medians
from pipeline.data.allen_neuropixels import neuropixels_assembly
from pipeline.data.reliability import trial_halves
from pipeline.data.stimuli import make_stimulus_sets
from pipeline.data.synthetic_mouse import LATENCY, simulate_synthetic_mouse
from pipeline.io import read_zarr
from tests.compare import time_averaged_baseline

AREAS = ("VISp", "VISpm")                          # the earliest and latest onsets: 40 and 66 ms
LATE = (0.18, 0.25)                                # the recurrent state has (nearly) settled


def onset_bin(area):
    """Start (s) of the first 10-ms bin starting at or after the area's onset."""
    return np.ceil(LATENCY[area] / 0.01 - 1e-9) * 0.01


def responding(table):
    """Rows of bins that start at or after their area's onset."""
    starts = table.index.get_level_values("time_bin")
    areas = table.index.get_level_values("area")
    return table[starts >= np.array([onset_bin(a) for a in areas]) - 1e-9]


def time_resolved(values, n_animals=1, area="IT", bin_size=0.01):
    """A time-resolved assembly from (stimulus, trial, time_bin, neuroid) values."""
    n_stim, _, n_bins, n_units = values.shape
    per = n_units // n_animals
    return xr.DataArray(
        values, dims=("stimulus", "trial", "time_bin", "neuroid"), name="response",
        coords={"stimulus_id": ("stimulus", [f"s{i:03d}" for i in range(n_stim)]),
                "time_bin": ("time_bin", bin_size * np.arange(n_bins)),
                "time_bin_end": ("time_bin", bin_size * np.arange(1, n_bins + 1)),
                "neuroid_id": ("neuroid", [f"u{u}" for u in range(n_units)]),
                "animal": ("neuroid", [f"m{u // per}" for u in range(n_units)]),
                "area": ("neuroid", [area] * n_units),
                "reliability": ("neuroid", np.full(n_units, np.nan))})


def store(layers, stimulus_ids, epoch=3):
    """Activations Dataset of {name: (time, stimulus, unit)} or {name: (stimulus, unit)} arrays."""
    data = {}
    for name, values in layers.items():
        dims = (("epoch", "time", "stimulus", f"unit_{name}") if values.ndim == 3
                else ("epoch", "stimulus", f"unit_{name}"))
        data[name] = (dims, values[None].astype(np.float32))
    return xr.Dataset(data, coords={"epoch": [epoch], "stimulus_id": ("stimulus", list(stimulus_ids))})


@pytest.fixture(scope="module")
def linear_problem():
    """Features per bin and noisy targets that read them linearly, time-resolved."""
    rng = np.random.default_rng(0)
    n_stim, n_bins, p, q, n_trials = 40, 4, 5, 6, 6
    X = rng.standard_normal((n_stim, n_bins, p))
    rates = X @ rng.standard_normal((p, q)) + 0.5 * rng.standard_normal((n_stim, n_bins, q))
    trials = rates[:, None] + rng.standard_normal((n_stim, n_trials, n_bins, q))
    return X, trials


def _corr(a, b):
    """Pearson r per column of two (stimulus, unit) arrays."""
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


@pytest.mark.parametrize("name", ["ridge", "pls"])
def test_fixed_map_equals_a_stacked_bins_sklearn_fit(linear_problem, name):
    X, trials = linear_problem
    n_stim, n_trials, n_bins, q = trials.shape
    halves = trial_halves(n_trials, 2, seed=0)
    splits = stimulus_splits(n_stim, 2, 0.5, seed=0)
    ours_map, theirs = {"ridge": (RidgeMap(3.0), lambda: Ridge(alpha=3.0)),
                        "pls": (PLSMap(3), lambda: PLSRegression(3, scale=False))}[name]
    mean = trials.mean(1)
    half = [np.stack([trials[:, idx].mean(1) for idx in pair]) for pair in zip(*halves)]
    values = fixed_scores(ours_map, (X, X[None], X[None]), (mean, half[0], half[1]), splits)

    def stacked(Y, train, test):
        fit = theirs().fit(X[train].reshape(-1, X.shape[2]), Y[train].reshape(-1, q))
        return fit.predict(X[test].reshape(-1, X.shape[2])).reshape(test.size, n_bins, q)

    for s, (train, test) in enumerate(splits):
        p_bar = stacked(mean, train, test)
        r_full = np.stack([_corr(p_bar[:, b], mean[test, b]) for b in range(n_bins)])
        np.testing.assert_allclose(values["r_full"][s], r_full, atol=1e-6)
        r = []
        for h in range(len(halves)):
            p1 = stacked(half[0][h], train, test)
            r.append(np.stack([_corr(p1[:, b], half[1][h][test, b]) for b in range(n_bins)]))
        np.testing.assert_allclose(values["r"][s], np.mean(r, axis=0), atol=1e-6)
    assert values["score"].shape == (len(splits), n_bins, q)
    # One map for all bins: refitting on the bins reversed changes nothing, per-bin fits would.
    reversed_values = fixed_scores(ours_map, (X[:, ::-1], X[None, :, ::-1], X[None, :, ::-1]),
                                   (mean[:, ::-1], half[0][:, :, ::-1], half[1][:, :, ::-1]), splits)
    np.testing.assert_allclose(reversed_values["r_full"][:, ::-1], values["r_full"], atol=1e-10)


def test_fixed_map_interanimal_uses_the_pooled_other_animals(linear_problem):
    _, trials = linear_problem
    assembly = time_resolved(trials, n_animals=2)
    table = temporal_interanimal(assembly, maps=("fixed",), mappings=("ridge",), n_halves=2, n_splits=2,
                                 alpha=2.0, seed=0)
    splits = stimulus_splits(trials.shape[0], 2, 0.5, seed=0)
    mean = trials.mean(1)
    source, target = mean[..., 3:], mean[..., :3]                 # animal m1 -> animal m0
    rows = table[table["animal"] == "m0"].set_index(["split", "time_bin", "neuroid_id"])["r_full"]
    for s, (train, test) in enumerate(splits):
        fit = Ridge(alpha=2.0).fit(source[train].reshape(-1, 3), target[train].reshape(-1, 3))
        pred = fit.predict(source[test].reshape(-1, 3)).reshape(test.size, -1, 3)
        for b, start in enumerate(assembly["time_bin"].values):
            expected = _corr(pred[:, b], target[test, b])
            got = [rows[s, start, f"u{u}"] for u in range(3)]
            np.testing.assert_allclose(got, expected, atol=1e-6)
    assert set(table["temporal"]) == {"fixed"} and (table["source"] == "pooled").all()


def test_per_bin_pls_equals_sklearn_per_bin(linear_problem):
    X, trials = linear_problem
    assembly = time_resolved(trials)
    ids = assembly["stimulus_id"].values
    sources = {b: store({"layer": X[:, b]}, ids) for b in range(X.shape[1])}
    table = temporal_predictivity(sources, assembly, maps=("per_bin",), mappings=("pls",), n_components=3,
                                  n_halves=2, n_splits=2, seed=0, select_layers=False)
    splits = stimulus_splits(X.shape[0], 2, 0.5, seed=0)
    mean = trials.mean(1)
    X = X.astype(np.float32).astype(np.float64)                  # as the activations store holds them
    rows = table.set_index(["split", "time_bin", "neuroid_id"])["r_full"]
    for b, start in enumerate(assembly["time_bin"].values):
        for s, (train, test) in enumerate(splits):
            fit = PLSRegression(3, scale=False).fit(X[train, b], mean[train, b])
            expected = _corr(fit.predict(X[test, b]), mean[test, b])
            got = [rows[s, start, f"u{u}"] for u in range(trials.shape[3])]
            np.testing.assert_allclose(got, expected, atol=1e-6)
    assert set(table["temporal"]) == {"per_bin"}


def test_assemblies_without_time_bins_and_gaps_are_refused(linear_problem):
    _, trials = linear_problem
    flat = time_resolved(trials).isel(time_bin=0, drop=True)
    with pytest.raises(ValueError, match="time_bins: keep"):
        temporal_interanimal(flat)
    holed = trials.copy()
    holed[3, :, 1, 0] = np.nan                                    # no valid trial: a missing cell
    with pytest.raises(ValueError, match="per-bin map"):
        temporal_interanimal(time_resolved(holed, n_animals=2), maps=("fixed",), n_halves=2, n_splits=2)
    with pytest.raises(ValueError, match="mappings"):
        temporal_interanimal(time_resolved(trials, n_animals=2), maps=("fixed",), mappings=("one_to_one",))


# ---------------------------------------------------------------- virtual animals with dynamics

@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    """Four virtual animals with dynamics, two areas assembled time-resolved, and their truth
    (about 45 s with the scores below: the tests that use it are marked slow)."""
    probe = make_stimulus_sets(train_per_class=0, test_per_class=0, probe=120, seed=0)["probe"]
    out = tmp_path_factory.mktemp("dynamic")
    paths = simulate_synthetic_mouse(probe, out, animals_per_area=4, units_per_animal=12, trials=60, seed=0,
                                     dynamics={"enabled": True})
    assembly = neuropixels_assembly(paths, probe["stimulus_id"].values, areas=AREAS, n_boot=20, seed=0,
                                    time_bins="keep")
    truth = read_zarr(out / "truth.zarr").load()
    return assembly, truth


SETTINGS = dict(mappings=("ridge",), n_halves=6, n_splits=4, seed=0)


@pytest.fixture(scope="module")
def ceilings(dynamic):
    """Estimated per-bin ceilings (noisy trials) and the true ones (noise-free rates)."""
    assembly, truth = dynamic
    estimated = temporal_interanimal(assembly, maps=("per_bin",), **SETTINGS)
    rates = truth["rate"].set_index(neuroid="neuroid_id").sel(neuroid=assembly["neuroid_id"].values)
    noise_free = assembly.isel(trial=[0]).copy(data=rates.transpose("stimulus", "time_bin", "neuroid")
                                              .values[:, None].astype(np.float32))
    true = temporal_interanimal(noise_free, maps=("per_bin",), **SETTINGS)
    return estimated, true.assign(score=true["r_full"])


def _per_bin(table):
    return bin_medians(table).set_index(["area", "time_bin"])["median"]


@pytest.mark.slow
def test_per_bin_ceiling_recovers_the_true_ceiling(ceilings):
    estimated, true = ceilings
    diff = responding(_per_bin(estimated) - _per_bin(true))
    assert diff.notna().all() and len(diff) == 21 + 18                 # VISp from 40 ms, VISpm from 70 ms
    assert diff.abs().max() < 0.05, diff.round(3).to_dict()
    # Each bin is estimated on its own: the raw split-half numerator alone is far below the truth.
    raw = responding(bin_medians(estimated.assign(score=estimated["r"])).set_index(["area", "time_bin"])["median"])
    assert (responding(_per_bin(true)) - raw).min() > 0.1


@pytest.fixture(scope="module")
def models(dynamic):
    """Per-bin scores of the generator (its codes over time) and of its feedforward code alone."""
    assembly, truth = dynamic
    ids = truth["stimulus_id"].values
    generator = store({a: truth["code"].sel(area_code=a).values for a in AREAS}, ids)
    n_bins = truth.sizes["time_bin"]
    feedforward = store({a: np.repeat(truth["feedforward_code"].sel(area_code=a).values[None], n_bins, 0)
                         for a in AREAS}, ids)
    scores = {}
    for name, activations in (("generator", generator), ("feedforward", feedforward)):
        sources = bin_sources(activations, assembly["time_bin"].values, offset=0.0, step=0.01)
        scores[name] = temporal_predictivity(sources, assembly, maps=("per_bin",), **SETTINGS).assign(model=name)
    return scores


@pytest.mark.slow
def test_the_generator_scores_at_the_ceiling_in_every_bin(models, ceilings):
    estimated, _ = ceilings
    gap = responding(_per_bin(models["generator"]) - _per_bin(estimated))
    assert gap.notna().all() and len(gap) == 21 + 18
    assert gap.abs().max() < 0.1, gap.round(3).to_dict()
    chosen = bin_medians(models["generator"]).groupby("area")["layer"].first()
    assert chosen.to_dict() == {area: area for area in AREAS}      # each area's own code


@pytest.mark.slow
def test_feedforward_model_scores_well_early_and_worse_late(models):
    """Early: the area's first bin after onset (the recurrent state is still near 0); late: 180-250 ms."""
    medians = {}
    for area in AREAS:
        phases = {"early": (onset_bin(area), onset_bin(area) + 0.01), "late": LATE}
        for name, table in models.items():
            rows = phase_medians(table[table["area"] == area], phases).set_index("phase")["median"]
            medians.update({(name, area, phase): value for phase, value in rows.items()})
    for area in AREAS:
        early = medians["feedforward", area, "early"] - medians["generator", area, "early"]
        late = medians["generator", area, "late"] - medians["feedforward", area, "late"]
        assert early > -0.05, (area, early)                       # as good as the generator early
        assert late > 0.1, (area, late)                           # clearly worse late
        # its drop from early to late exceeds the generator's (the ceiling's) by the same margin
        drop = {name: medians[name, area, "early"] - medians[name, area, "late"] for name in models}
        assert drop["feedforward"] - drop["generator"] > 0.1, (area, drop)


# ---------------------------------------------------------------- model time

def test_recurrent_steps_map_one_to_one_onto_bins():
    starts = 0.01 * np.arange(25)
    mapping = step_of_bin(starts, 19, offset=0.07, step=0.01)      # spec: 70-260 ms
    assert mapping == {b: b - 7 for b in range(7, 25)}
    assert step_of_bin(starts, 4, offset=0.0, step=0.02) == {0: 0, 2: 1, 4: 2, 6: 3}


def test_uniform_spreads_layers_over_bins_in_order():
    assert uniform_layers(3, 6) == [0, 0, 1, 1, 2, 2]
    assert uniform_layers(4, 5) == [0, 0, 1, 2, 3]
    with pytest.raises(ValueError):
        uniform_layers(0, 3)


def test_graded_pseudo_layers_mix_consecutive_layers_in_proportion():
    # Each layer's units carry their layer index, so the mix of every pseudo-layer is visible.
    layers = [np.full((2, w), float(k)) + np.arange(w) * 1e-3 for k, w in enumerate((30, 20, 40))]
    pseudo = graded_pseudo_layers(layers, 5, seed=0)
    assert all(p.shape == (2, 20) for p in pseudo)
    source = [np.floor(p[0] + 1e-6).astype(int) for p in pseudo]
    assert (source[0] == 0).all() and (source[-1] == 2).all() and (source[2] == 1).all()
    assert sorted(set(source[1])) == [0, 1] and (source[1] == 0).sum() == 10      # depth 0.5
    assert len(set(np.round(pseudo[1][0], 6))) == 20                                # no unit twice


def test_timedecay_is_a_leaky_integrator_with_one_step_per_layer():
    layers = [np.ones((3, 2)), 2 * np.ones((3, 4))]
    states = timedecay_states(layers, 6, decay=0.5, image_steps=2)
    assert states[0].shape == (6, 3, 2)
    np.testing.assert_allclose(states[0][:, 0, 0], [1, 1.5, 0.75, 0.375, 0.1875, 0.09375])
    np.testing.assert_allclose(states[1][:, 0, 0], [0, 2, 3, 1.5, 0.75, 0.375])
    with pytest.raises(ValueError, match="decay"):
        timedecay_states(layers, 3, decay=1.0, image_steps=1)


def test_feedforward_sources_per_bin():
    rng = np.random.default_rng(0)
    layers = {"a": rng.standard_normal((8, 5)), "b": rng.standard_normal((8, 7))}
    activations = store(layers, [f"s{i}" for i in range(8)])
    starts = 0.01 * np.arange(6)
    uniform = bin_sources(activations, starts, feedforward="uniform", offset=0.02)
    assert sorted(uniform) == [2, 3, 4, 5]
    np.testing.assert_allclose(uniform[2]["uniform"].values[0], layers["a"], rtol=1e-6)
    np.testing.assert_allclose(uniform[5]["uniform"].values[0], layers["b"], rtol=1e-6)
    decayed = bin_sources(activations, starts, feedforward="timedecay", offset=0.0, decay=0.5, image_steps=1)
    np.testing.assert_allclose(decayed[1]["a"].values[0], 0.5 * layers["a"], rtol=1e-6)
    np.testing.assert_allclose(decayed[1]["b"].values[0], layers["b"], rtol=1e-6)
    with pytest.raises(ValueError, match="feedforward"):
        bin_sources(activations, starts, feedforward="sideways")


def test_phase_medians_average_bins_then_take_the_median_over_units():
    rows = [{"area": "IT", "animal": "m", "neuroid_id": f"u{u}", "mapping": "ridge", "temporal": "per_bin",
             "split": s, "time_bin": t, "time_bin_end": t + 0.01, "score": u + 10 * t + s}
            for u in range(3) for s in range(2) for t in (0.0, 0.01, 0.02)]
    table = pd.DataFrame(rows)
    out = phase_medians(table, {"a": (0.0, 0.02), "b": (0.02, 0.03)}).set_index("phase")["median"]
    assert out["a"] == pytest.approx(1 + 0.05 + 0.5)              # unit 1: mean of t 0, 0.01 and splits
    assert out["b"] == pytest.approx(1 + 0.2 + 0.5)
    with pytest.raises(ValueError, match="phase"):
        phase_medians(table, {"c": (0.5, 0.6)})


# ---------------------------------------------------------------- the time-averaged path

def test_time_averaged_results_are_bit_identical_to_the_stored_ones():
    """Bit for bit, except model-source PLS: its layers are narrower than the training set,
    so it runs through their features (`pls_predict_features`), equal to the stored kernel
    form to rounding."""
    stored = np.load(time_averaged_baseline.BASELINE)
    now = time_averaged_baseline.results()
    assert sorted(now) == sorted(stored.files)
    model_pls = stored["predictivity/mapping"] == "pls"
    assert model_pls.any()
    for key in stored.files:
        if key.startswith("predictivity/") and now[key].dtype == np.float64:
            np.testing.assert_array_equal(now[key][~model_pls], stored[key][~model_pls], err_msg=key)
            np.testing.assert_allclose(now[key][model_pls], stored[key][model_pls], rtol=1e-12, atol=1e-13,
                                       err_msg=key)
        else:
            np.testing.assert_array_equal(now[key], stored[key], err_msg=key)


def test_fixed_map_skips_sources_whose_units_change_between_bins(linear_problem):
    X, trials = linear_problem
    assembly = time_resolved(trials)
    ids = assembly["stimulus_id"].values
    activations = store({"a": X[:, 0, :3], "b": X[:, 1]}, ids)           # widths 3 and 5
    sources = bin_sources(activations, assembly["time_bin"].values, feedforward="uniform")
    table = temporal_predictivity(sources, assembly, n_halves=2, n_splits=2, select_layers=False)
    assert set(table["temporal"]) == {"per_bin"}
    with pytest.raises(ValueError, match="same units in every bin"):
        temporal_predictivity(sources, assembly, maps=("fixed",), n_halves=2, n_splits=2)
