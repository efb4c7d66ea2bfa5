"""Recurrent models in the compare stage: each (layer, time step) is a source of its own."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.compare.aggregate import best_layer, median_over_units
from pipeline.compare.consistency import predictivity
from pipeline.compare.scoring import QUANTITIES

SETTINGS = dict(mappings=("ridge", "one_to_one"), n_halves=3, n_splits=2, seed=0)


def recurrent_store(layers, stimulus_ids):
    """Activations Dataset from {layer: array (epoch, time, stimulus, unit)}."""
    n_epochs, n_times = next(iter(layers.values())).shape[:2]
    return xr.Dataset(
        {name: (("epoch", "time", "stimulus", f"unit_{name}"), values.astype(np.float32))
         for name, values in layers.items()},
        coords={"epoch": [3, 7][:n_epochs], "time": np.arange(n_times),
                "stimulus_id": ("stimulus", list(stimulus_ids))})


@pytest.fixture(scope="module")
def cohort(simulate):
    return simulate(n_animals=2, units_per_animal=12, n_trials=10, seed=4)


def test_every_layer_and_time_step_is_scored_as_its_own_source(cohort):
    assembly, rates = cohort
    rng = np.random.default_rng(0)
    ids = assembly["stimulus_id"].values
    # Epochs and steps all differ, so a mix-up of the (epoch, time) order changes the scores.
    layers = {"early": rng.standard_normal((2, 3, len(ids), 9)),
              "late": rng.standard_normal((2, 3, len(ids), 20)) + rates[None, None, :, :20]}
    scores = predictivity(recurrent_store(layers, ids), assembly, **SETTINGS)
    assert scores["time"].dtype.kind == "i"
    sources = scores[["layer", "epoch", "time"]].drop_duplicates()
    assert len(sources) == 2 * 2 * 3
    assert set(map(tuple, sources.values)) == {(layer, epoch, t) for layer in layers
                                               for epoch in (3, 7) for t in range(3)}
    # The rows of (late, epoch 7, step 1) equal those of a feedforward store holding that slice.
    late = layers["late"][1:, 1].astype(np.float32)
    sliced = xr.Dataset({"late": (("epoch", "stimulus", "unit_late"), late)},
                        coords={"epoch": [7], "stimulus_id": ("stimulus", list(ids))})
    alone = predictivity(sliced, assembly, **SETTINGS)
    assert (alone["time"] == 0).all()
    ours = scores[(scores["layer"] == "late") & (scores["epoch"] == 7) & (scores["time"] == 1)]
    keys = ["animal", "neuroid_id", "mapping", "split", "stage"]
    merged = ours.merge(alone, on=keys, suffixes=("", "_alone"))
    assert len(merged) == len(ours) == len(alone)
    np.testing.assert_allclose(merged["score"], merged["score_alone"], rtol=1e-10, equal_nan=True)
    summary = median_over_units(scores)
    assert len(summary[summary["mapping"] == "ridge"]) == 12          # one row per (layer, epoch, time)


def _table(select, test, n_units=4, n_splits=3):
    """Predictivity rows for (layer, time) candidates with constant select and test scores."""
    rows = []
    for (layer, time), by_split in select.items():
        for split in range(n_splits):
            for stage, value in (("select", by_split[split]), ("test", test[layer, time][split])):
                rows += [{"area": "IT", "animal": "m0", "neuroid_id": f"u{u}", "mapping": "pls",
                          "layer": layer, "epoch": 0, "time": time, "split": split, "stage": stage,
                          **{q: value for q in QUANTITIES}} for u in range(n_units)]
    return pd.DataFrame(rows)


def test_best_layer_and_time_are_chosen_on_validation_rows_only():
    # Test rows favour (a, t0) everywhere; validation rows favour (a, t1) in splits 0 and 2 and
    # (b, t0) in split 1. A choice that looked at test data would report 0.9.
    table = _table(select={("a", 0): [0.1, 0.1, 0.1], ("a", 1): [0.6, 0.2, 0.7], ("b", 0): [0.3, 0.5, 0.2]},
                   test={("a", 0): [0.9, 0.9, 0.9], ("a", 1): [0.4, 0.5, 0.6], ("b", 0): [0.2, 0.3, 0.1]})
    row = best_layer(table).iloc[0]
    assert (row["layer"], row["time"]) == ("a", 1)
    assert row["layers_chosen"] == "a@t1:2, b@t0:1"
    assert row["score"] == pytest.approx(np.mean([0.4, 0.3, 0.6]))


def test_feedforward_tables_without_a_time_column_still_aggregate():
    table = _table(select={("a", 0): [0.5, 0.5, 0.5], ("b", 0): [0.1, 0.1, 0.1]},
                   test={("a", 0): [0.4, 0.4, 0.4], ("b", 0): [0.8, 0.8, 0.8]}).drop(columns="time")
    row = best_layer(table).iloc[0]
    assert row["layer"] == "a" and "time" not in row and row["layers_chosen"] == "a:3"
    mixed = pd.concat([table, _table(select={("c", 2): [0.9] * 3}, test={("c", 2): [0.7] * 3})])
    assert best_layer(mixed)[["layer", "time"]].values.tolist() == [["c", 2]]
    assert set(median_over_units(mixed)["time"]) == {0, 2}                     # missing time reads as step 0


def test_ground_truth_step_of_the_generating_layer_is_chosen(simulate):
    """One (layer, time) holds the animals' noise-free rates; the other steps hold degraded copies."""
    assembly, rates = simulate(n_animals=3, units_per_animal=12, n_trials=12, seed=11,
                               areas=("V4", "IT"))
    rng = np.random.default_rng(1)
    ids = assembly["stimulus_id"].values
    n = len(ids)
    it_rates = rates[:, assembly["area"].values == "IT"]
    v4_rates = rates[:, assembly["area"].values == "V4"]

    def degraded(signal, weight):
        return weight * signal + rng.standard_normal(signal.shape) * signal.std()

    # "late" carries IT: its response builds up and peaks at step 2, then decays (step 3).
    late = np.stack([rng.standard_normal((n, it_rates.shape[1])), degraded(it_rates, 0.5), it_rates,
                     degraded(it_rates, 1.0)])
    # "early" carries V4 exactly at step 1.
    early = np.stack([degraded(v4_rates, 0.3), v4_rates, degraded(v4_rates, 0.7), degraded(v4_rates, 0.3)])
    store = recurrent_store({"early": early[None], "late": late[None]}, ids)
    scores = predictivity(store, assembly, mappings=("ridge",), n_halves=4, n_splits=3, seed=0)
    chosen = best_layer(scores).set_index("area")
    assert chosen.loc["IT", ["layer", "time"]].tolist() == ["late", 2]
    assert chosen.loc["V4", ["layer", "time"]].tolist() == ["early", 1]
    assert chosen.loc["IT", "layers_chosen"] == "late@t2:3"
    assert (chosen["score"] > 0.9).all(), chosen["score"]


def test_predictivity_figure_and_summary_take_recurrent_tables(tmp_path):
    from pipeline.compare.aggregate import summarize
    from pipeline.figures.predictivity import plot_predictivity

    table = _table(select={("a", 0): [0.2] * 3, ("a", 1): [0.6] * 3, ("b", 1): [0.4] * 3},
                   test={("a", 0): [0.1] * 3, ("a", 1): [0.5] * 3, ("b", 1): [0.3] * 3})
    table["dataset"], table["model"] = "d", "convrnn-supervised-bp-s0"
    ceiling = table[(table["layer"] == "a") & (table["time"] == 0) & (table["stage"] == "test")]
    ceiling = ceiling.drop(columns=["layer", "epoch", "time", "stage", "model"]).assign(score=0.8)
    ceiling.to_parquet(tmp_path / "ceiling.parquet")
    table.to_parquet(tmp_path / "scores.parquet")
    plot_predictivity(tmp_path / "ceiling.parquet", [tmp_path / "scores.parquet"], tmp_path / "fig.png", dpi=40)
    assert (tmp_path / "fig.png").stat().st_size > 0
    summary = summarize(pd.read_parquet(tmp_path / "ceiling.parquet"),
                        pd.read_parquet(tmp_path / "scores.parquet")).iloc[0]
    assert (summary["layer"], summary["time"]) == ("a", 1)
    assert summary["fraction_of_ceiling"] == pytest.approx(0.5 / 0.8)
