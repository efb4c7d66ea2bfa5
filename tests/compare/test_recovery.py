"""Tests for pipeline.compare.recovery: model recovery on virtual brains whose generator is one
of a set of known layered networks (small numpy networks standing in for trained models; the
slow test trains real ones)."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import binomtest

from pipeline.compare.aggregate import best_layer
from pipeline.compare.consistency import predictivity
from pipeline.compare.recovery import class_name, recovery, recovery_matrix, unit_scores
from pipeline.data.assembly import ALLEN_AREAS
from pipeline.data.synthetic_mouse import area_codes, area_layers, nearest_depth

N_STIMULI, N_INPUT, WIDTH = 100, 24, 32
LAYERS = ("l1", "l2", "l3", "l4")
CLASSES = ("bp", "fa", "kp")               # ventral_cnn-supervised-{rule}: three hypotheses
SETTINGS = dict(mappings=("ridge", "pls", "one_to_one", "rsa", "cka"), n_halves=2, n_splits=3,
                n_components=8, epochs="final")
FITTED = ("ridge", "pls", "one_to_one")


def network(rule, seed, stimuli):
    """Layer outputs of a 4-layer ReLU network; a class shares its weights up to a seed's jitter."""
    base = np.random.default_rng([CLASSES.index(rule), 7])
    jitter = np.random.default_rng([CLASSES.index(rule), seed, 11])
    h, out = stimuli, {}
    for layer in LAYERS:
        w = base.standard_normal((h.shape[1], WIDTH)) + 0.35 * jitter.standard_normal((h.shape[1], WIDTH))
        h = h @ w / np.sqrt(h.shape[1])
        h = np.maximum((h - h.mean(1, keepdims=True)) / h.std(1, keepdims=True) - 0.5, 0)
        out[layer] = h
    return out


def activations(features, stimulus_ids, permutation=None):
    """An activations Dataset (one epoch) of every layer; rows permuted for a shuffled control."""
    order = np.arange(len(stimulus_ids)) if permutation is None else permutation
    return xr.Dataset({layer: (("epoch", "stimulus", f"unit_{layer}"), x[order][None].astype(np.float32))
                       for layer, x in features.items()},
                      coords={"epoch": [1], "stimulus_id": ("stimulus", list(stimulus_ids))})


def virtual_animals(features, seed, n_animals=3, n_units=10, n_trials=12):
    """Poisson units reading each area's code of the generator's layer (synthetic_mouse's model)."""
    stages = {area: features[layer] for area, layer in area_layers(LAYERS).items()}
    codes = area_codes(stages, seed)
    rng = np.random.default_rng([seed, 3])
    blocks, animal, area, ids = [], [], [], []
    for name, code in codes.items():
        for k in range(n_animals):
            z = code @ rng.standard_normal((code.shape[1], n_units))
            rate = rng.uniform(2, 8, n_units) * np.logaddexp(0, (z - z.mean(0)) / z.std(0))
            blocks.append(rng.poisson(rate[:, None, :] * np.ones((1, n_trials, 1))).astype(float))
            animal += [f"m{k}"] * n_units
            area += [name] * n_units
            ids += [f"{name}-m{k}-u{u}" for u in range(n_units)]
    return xr.DataArray(
        np.concatenate(blocks, axis=2), dims=("stimulus", "trial", "neuroid"),
        coords={"stimulus_id": ("stimulus", [f"s{i:03d}" for i in range(N_STIMULI)]),
                "neuroid_id": ("neuroid", ids), "animal": ("neuroid", animal), "area": ("neuroid", area),
                "reliability": ("neuroid", np.full(len(ids), np.nan))})


def depths():
    return {area: LAYERS.index(layer) / (len(LAYERS) - 1) for area, layer in area_layers(LAYERS).items()}


def scored(assembly, models, **settings):
    """Predictivity rows of every candidate, labelled as the pipeline's predictivity rule does."""
    tables = []
    for name, acts in models.items():
        table = predictivity(acts, assembly, **{**SETTINGS, **settings})
        table.insert(0, "model", name)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


@pytest.fixture(scope="module")
def stimuli():
    return np.random.default_rng(0).standard_normal((N_STIMULI, N_INPUT))


@pytest.fixture(scope="module")
def candidates(stimuli):
    ids = [f"s{i:03d}" for i in range(N_STIMULI)]
    return {f"ventral_cnn-supervised-{rule}-s{seed}": activations(network(rule, seed, stimuli), ids)
            for rule in CLASSES for seed in (0, 1)}


@pytest.fixture(scope="module")
def exact(stimuli, candidates):
    """The generator is candidate ventral_cnn-supervised-kp-s0 itself."""
    assembly = virtual_animals(network("kp", 0, stimuli), seed=0)
    scores = scored(assembly, candidates)
    return scores, recovery(scores, "ventral_cnn-supervised-kp-s0", depths(), n_boot=200)


def test_area_layers_spread_by_relative_depth():
    assert area_layers(["area1", "area2", "area3", "area4", "readout"]) == {
        "VISp": "area1", "VISl": "area2", "VISal": "area3", "VISrl": "area3", "VISam": "area4",
        "VISpm": "readout"}
    assert list(area_layers(["a", "b", "c", "d", "e", "f"]).values()) == list("abcdef")
    assert set(area_layers(["only"]).values()) == {"only"}
    assert [nearest_depth(d, 3) for d in (0.0, 0.24, 0.25, 0.74, 0.75, 1.0)] == [0, 0, 1, 1, 2, 2]


def test_exact_candidate_is_recovered_first_at_its_depth_by_every_fitted_mapping(exact):
    _, (table, classes, _) = exact
    fitted = table[table["mapping"].isin(FITTED)]
    assert len(fitted) == len(ALLEN_AREAS) * len(FITTED)
    assert (fitted["rank"] == 1).all(), fitted[["area", "mapping", "winner", "margin"]]
    assert (fitted["margin"] > 0).all() and (fitted["margin_low"] <= fitted["margin"]).all()
    assert (fitted["depth_layer"] == fitted["area"].map(area_layers(LAYERS))).all()
    units = unit_scores(exact[0])
    chosen = units[(units["model"] == "ventral_cnn-supervised-kp-s0") & units["mapping"].isin(FITTED)]
    chosen = chosen.drop_duplicates(["area", "mapping"])
    assert len(chosen) == len(fitted)
    assert (chosen["layer"] == chosen["area"].map(area_layers(LAYERS))).all(), chosen[["area", "mapping", "layer"]]
    assert set(classes["class"]) == {f"ventral_cnn-supervised-{r}" for r in CLASSES}


def test_recovery_table_equals_a_recomputation_from_the_score_tables(exact):
    """One cell (VISal, ridge) recomputed with aggregate.best_layer and plain pandas."""
    scores, (table, classes, _) = exact
    best = best_layer(scores, by=["model", "area", "mapping"])
    cell = best[(best["area"] == "VISal") & (best["mapping"] == "ridge")]
    by_class = cell.assign(cls=cell["model"].map(class_name)).groupby("cls")["score"].mean()
    truth = "ventral_cnn-supervised-kp"
    row = table[(table["area"] == "VISal") & (table["mapping"] == "ridge")].iloc[0]
    assert row["true_score"] == pytest.approx(by_class[truth], abs=1e-12)
    assert row["margin"] == pytest.approx(by_class[truth] - by_class.drop(truth).max(), abs=1e-12)
    assert row["rank"] == 1 + int((by_class.drop(truth) > by_class[truth]).sum())
    assert row["winner"] == by_class.idxmax()
    layer = cell.loc[cell["model"].str.startswith(truth), "layer"]
    assert row["best_layer"] in set(layer)
    got = classes[(classes["area"] == "VISal") & (classes["mapping"] == "ridge")].set_index("class")["score"]
    pd.testing.assert_series_equal(got.sort_index(), by_class.sort_index(), check_names=False, atol=1e-12)


def test_margin_interval_covers_and_tightens_with_coverage(exact):
    scores, (table, _, _) = exact
    narrow, _, _ = recovery(scores, "ventral_cnn-supervised-kp-s0", depths(), n_boot=200, ci=0.5)
    assert (narrow["margin_high"] - narrow["margin_low"] <= table["margin_high"] - table["margin_low"] + 1e-12).all()
    again, _, _ = recovery(scores, "ventral_cnn-supervised-kp-s0", depths(), n_boot=200)
    pd.testing.assert_frame_equal(again, table)                  # seeded bootstrap


def test_shuffled_stimulus_control_is_not_first_beyond_chance(stimuli, candidates):
    """A control candidate (a real network's activations with permuted stimulus rows) over a
    small matrix: every class as a held-out-seed generator, every area and mapping."""
    ids = [f"s{i:03d}" for i in range(N_STIMULI)]
    permutation = np.random.default_rng(5).permutation(N_STIMULI)
    control = "ventral_cnn-rotation-bp-s0"                    # its own class: the shuffled control
    models = {name: acts for name, acts in candidates.items() if name.endswith("-s0")}
    models[control] = activations(network("bp", 0, stimuli), ids, permutation)
    classes = []
    for k, rule in enumerate(CLASSES):
        assembly = virtual_animals(network(rule, 9, stimuli), seed=k + 1, n_animals=2, n_trials=8)
        table = scored(assembly, models, mappings=("ridge", "cka"), n_splits=2)
        _, by_class, _ = recovery(table, f"ventral_cnn-supervised-{rule}-s9", depths(), n_boot=20)
        classes.append(by_class.assign(dataset=f"virtual_{rule}"))
    classes = pd.concat(classes, ignore_index=True)
    first = classes[classes["rank"] == 1]
    n_cells = len(first)
    wins = int((first["class"] == class_name(control)).sum())
    chance = 1 / classes["class"].nunique()
    assert binomtest(wins, n_cells, chance, alternative="greater").pvalue > 0.05, (wins, n_cells)
    matrix = recovery_matrix(classes)
    assert class_name(control) not in set(matrix.loc[matrix["count"] > 0, "winner"]) or wins > 0
    recovered = matrix.drop_duplicates(["mapping", "group"])
    assert (recovered["n"] == len(CLASSES)).all()
    assert ((recovered["ci_low"] <= recovered["proportion"]) & (recovered["proportion"] <= recovered["ci_high"])).all()


def test_recovery_matrix_counts_and_binomial_interval():
    """Two mappings over four datasets with planted winners; interval from scipy's binomtest."""
    rows = []
    for d, (truth, winners) in enumerate([("a-b-c", {"ridge": "a-b-c", "rsa": "x-y-z"}),
                                          ("a-b-c", {"ridge": "a-b-c", "rsa": "a-b-c"}),
                                          ("x-y-z", {"ridge": "x-y-z", "rsa": "a-b-c"}),
                                          ("x-y-z", {"ridge": "a-b-c", "rsa": "a-b-c"})]):
        for mapping, winner in winners.items():
            for area in ALLEN_AREAS:
                for cls in ("a-b-c", "x-y-z"):
                    rows.append({"dataset": f"d{d}", "area": area, "mapping": mapping, "class": cls,
                                 "score": 1.0 if cls == winner else 0.5, "is_true": cls == truth})
    matrix = recovery_matrix(pd.DataFrame(rows), ci=0.9)
    ridge = matrix[(matrix["mapping"] == "ridge") & (matrix["group"] == "early")]
    assert ridge.set_index(["true_class", "winner"])["count"].to_dict() == {
        ("a-b-c", "a-b-c"): 2, ("x-y-z", "a-b-c"): 1, ("x-y-z", "x-y-z"): 1}
    summary = ridge.iloc[0]
    assert (summary["n"], summary["recovered"], summary["chance"]) == (4, 3, 0.5)
    expected = binomtest(3, 4).proportion_ci(confidence_level=0.9, method="exact")
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((expected.low, expected.high))
    rsa = matrix[(matrix["mapping"] == "rsa") & (matrix["group"] == "late")].iloc[0]
    assert rsa["recovered"] == 1
    absent = pd.DataFrame(rows)
    absent.loc[absent["dataset"] == "d3", "is_true"] = False      # its generator is not a candidate
    assert recovery_matrix(absent)["n"].max() == 3


def test_recovery_rejects_tables_and_depths_that_do_not_fit(exact):
    scores, _ = exact
    with pytest.raises(ValueError, match="no generator depth"):
        recovery(scores, "ventral_cnn-supervised-kp-s0", {"VISp": 0.0})
    with pytest.raises(ValueError, match="lack columns"):
        recovery(scores.drop(columns="layer"), "ventral_cnn-supervised-kp-s0", depths())


def test_unit_scores_choose_rsa_layers_in_sample(exact):
    scores, _ = exact
    units = unit_scores(scores)
    assert set(units.loc[units["mapping"].isin(["rsa", "cka"]), "selection"]) == {"in-sample"}
    assert set(units.loc[units["mapping"].isin(FITTED), "selection"]) == {"validation"}


def test_cli_verbs_write_the_tables_the_matrix_and_the_summary(exact, tmp_path):
    """`recovery` reads the generator from truth.zarr's attrs; a random generator is refused."""
    from pipeline.cli import main as cli
    from pipeline.io import write_zarr

    scores, _ = exact
    raw = tmp_path / "raw"
    write_zarr(xr.Dataset(attrs={"generator": "ventral_cnn-supervised-kp-s0",
                                 "area_depths": json.dumps(depths())}), raw / "truth.zarr")
    tables = []
    for model, rows in scores.groupby("model"):
        tables.append(tmp_path / f"{model}.parquet")
        rows.to_parquet(tables[-1])
    out = {name: tmp_path / f"{name}.csv" for name in ("table", "classes", "depth")}
    settings = json.dumps({"metric": "score", "n_boot": 50, "ci": 0.9, "seed": 0})
    assert cli(["recovery", str(raw), *map(str, tables), "--dataset", "virtual_x",
                *[f"--{name}={path}" for name, path in out.items()], "--settings", settings]) == 0
    table = pd.read_csv(out["table"])
    assert set(table["dataset"]) == {"virtual_x"} and len(table) == len(ALLEN_AREAS) * 5
    assert cli(["recovery_matrix", str(out["classes"]), "--out", str(tmp_path / "matrix.csv"),
                "--settings", settings]) == 0
    assert cli(["recovery_summary", str(out["table"]), "--matrix", str(tmp_path / "matrix.csv"),
                "--out", str(tmp_path / "summary.rst")]) == 0
    assert "virtual_x: generator ventral_cnn-supervised-kp-s0" in (tmp_path / "summary.rst").read_text()
    write_zarr(xr.Dataset(attrs={"generator": "random"}), raw / "truth.zarr")
    with pytest.raises(SystemExit, match="random generator"):
        cli(["recovery", str(raw), *map(str, tables), "--dataset", "virtual_x",
             *[f"--{name}={path}" for name, path in out.items()], "--settings", settings])


@pytest.mark.slow
@pytest.mark.timeout(15 * 60)
def test_trained_exact_candidate_is_recovered_through_the_whole_data_path(tmp_path):
    """Trained ventral_cnn candidates (bp, fa, hebb); the generator is the bp candidate itself.
    NWB sessions -> Neuropixels loader -> extraction -> predictivity -> recovery, 240 probe images
    (with 120, PLS(25) picks area2 for VISp in 3 of 4 splits): ridge and PLS rank bp first in every area, and the exact model's best layer is the generator's layer for
    the areas played by area1-area4 (VISpm reads the readout, a linear function of area4, which
    ridge and PLS cannot tell from it)."""
    from pipeline.activations import extract
    from pipeline.checkpoints import run_epochs
    from pipeline.data.allen_neuropixels import neuropixels_assembly
    from pipeline.data.stimuli import make_stimulus_sets
    from pipeline.data.synthetic_mouse import simulate_synthetic_mouse
    from pipeline.io import read_zarr, write_zarr
    from pipeline.train import TrainSettings, train

    sets = make_stimulus_sets(train_per_class=10, test_per_class=2, probe=240, seed=0)
    for split, stimuli in sets.items():
        write_zarr(stimuli, tmp_path / f"{split}.zarr")
    models = [f"ventral_cnn-supervised-{rule}-s0" for rule in ("bp", "fa", "hebb")]
    activations = {}
    for name in models:
        train(name, tmp_path / "train.zarr", tmp_path / "test.zarr", tmp_path / name,
              TrainSettings(epochs=2, batch_size=32), device="cpu")
        extract(list(run_epochs(tmp_path / name).values()), tmp_path / "probe.zarr",
                tmp_path / f"{name}.zarr", device="cpu")
        activations[name] = read_zarr(tmp_path / f"{name}.zarr")
    paths = simulate_synthetic_mouse(sets["probe"], tmp_path / "raw", animals_per_area=3, units_per_animal=20,
                                     trials=20, seed=0, generator=models[0], generator_dir=tmp_path / models[0])
    assembly = neuropixels_assembly(paths, sets["probe"]["stimulus_id"].values, n_boot=20, seed=0)
    scores = scored(assembly, activations, mappings=("ridge", "pls"), n_components=25, n_splits=4)
    truth = read_zarr(tmp_path / "raw" / "truth.zarr")
    table, _, _ = recovery(scores, models[0], json.loads(truth.attrs["area_depths"]), n_boot=100)
    assert (table["rank"] == 1).all(), table[["area", "mapping", "winner", "margin"]]
    units = unit_scores(scores)
    exact_model = units[units["model"] == models[0]].drop_duplicates(["area", "mapping"])
    layers = json.loads(truth.attrs["area_layers"])
    early = exact_model[exact_model["area"] != "VISpm"]
    assert (early["layer"] == early["area"].map(layers)).all(), early[["area", "mapping", "layer", "layer_counts"]].to_string()
