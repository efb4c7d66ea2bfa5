"""Aggregation of score tables: medians over units, Brain-Score's aggregate and the best layer."""

import numpy as np
import pandas as pd
import pytest

from pipeline.compare.aggregate import best_layer, median_over_units, summarize
from pipeline.compare.consistency import predictivity
from pipeline.compare.scoring import QUANTITIES


def test_best_layer_picks_the_generating_layer(simulate, to_activations):
    assembly, rates = simulate(n_animals=2, units_per_animal=15, n_trials=10, seed=10)
    ids = assembly["stimulus_id"].values
    noise = np.random.default_rng(0).standard_normal(rates.shape)
    activations = to_activations(rates, ids, layer="good")
    activations["bad"] = to_activations(noise, ids, layer="bad")["bad"]
    scores = predictivity(activations, assembly, mappings=("ridge",), n_halves=3, n_splits=2)
    summary = median_over_units(scores)
    assert set(summary["layer"]) == {"good", "bad"}
    chosen = best_layer(scores)
    assert list(chosen["layer"]) == ["good"]
    assert chosen["layers_chosen"].iloc[0] == "good:2"
    assert chosen["score"].iloc[0] > 0.9


def _table(select, test, n_units=5, n_splits=3):
    """Predictivity-shaped rows: per layer, constant select and test scores for every unit."""
    rows = []
    for layer in select:
        for split in range(n_splits):
            for stage, value in (("select", select[layer][split]), ("test", test[layer][split])):
                for u in range(n_units):
                    rows.append({"area": "VISp", "animal": "m0", "neuroid_id": f"u{u}", "mapping": "pls",
                                 "layer": layer, "epoch": 0, "split": split, "stage": stage,
                                 **{q: value for q in QUANTITIES}})
    return pd.DataFrame(rows)


def test_best_layer_chooses_on_validation_rows_and_reports_held_out_rows():
    # The test rows favour layer "a" everywhere; the validation rows favour "b" in splits
    # 0 and 1 and "a" in split 2. A choice that looked at test data would report 0.9.
    table = _table(select={"a": [0.1, 0.1, 0.8], "b": [0.5, 0.6, 0.2]},
                   test={"a": [0.9, 0.9, 0.9], "b": [0.3, 0.4, 0.5]})
    row = best_layer(table).iloc[0]
    assert row["layer"] == "b"
    assert row["layers_chosen"] == "b:2, a:1"
    assert row["score"] == pytest.approx(np.mean([0.3, 0.4, 0.9]))
    # The summary of one layer uses its test rows only.
    assert median_over_units(table).set_index("layer").loc["b", "score"] == pytest.approx(0.4)


def test_best_layer_rejects_a_summary():
    table = _table(select={"a": [0.1]}, test={"a": [0.2]}, n_splits=1)
    with pytest.raises(ValueError, match="not a summary"):
        best_layer(median_over_units(table))


def test_brainscore_aggregate_is_median_over_neuroids_then_mean_over_splits():
    rng = np.random.default_rng(1)
    rows = []
    for split in range(3):
        for u in range(7):
            rows.append({"area": "VISp", "animal": "m0", "neuroid_id": f"u{u}", "mapping": "ridge", "split": split,
                         **{q: rng.uniform(0.2, 0.9) for q in QUANTITIES}})
    table = pd.DataFrame(rows)
    table.loc[9, "ceiling_brainscore"] = np.nan                       # skipped, as xarray does
    raw = np.mean([np.median(table.loc[table["split"] == s, "r_full"]) for s in range(3)])
    ceiling = np.mean([np.nanmedian(table.loc[table["split"] == s, "ceiling_brainscore"]) for s in range(3)])
    row = median_over_units(table).iloc[0]
    assert row["brainscore_raw"] == pytest.approx(raw)
    assert row["brainscore_ceiling"] == pytest.approx(ceiling)
    assert row["brainscore_score"] == pytest.approx(raw**2 / ceiling)
    assert row["score"] == pytest.approx(table.groupby("neuroid_id")["score"].mean().median())


def test_summarize_takes_each_models_best_layer_at_its_final_epoch():
    base = dict(dataset="d", area="VISp", animal="m1", mapping="pls", split=0)
    ceiling = pd.DataFrame([{**base, "neuroid_id": f"u{u}", **{q: 0.8 for q in QUANTITIES}} for u in range(3)])
    scores = pd.DataFrame([
        {**base, "neuroid_id": f"u{u}", "model": "m-s-r-s0", "layer": layer, "epoch": epoch, "stage": stage,
         **{q: value for q in QUANTITIES}}
        for u in range(3)
        for layer, epoch, value in [("a", 0, 0.9), ("a", 2, 0.2), ("b", 2, 0.4), ("b", 0, 0.1)]
        for stage in ("select", "test")
    ])
    row = summarize(ceiling, scores).iloc[0]
    assert (row["layer"], row["epoch"]) == ("b", 2)          # not epoch 0's better layer a
    assert row["score"] == pytest.approx(0.4)
    assert row["score_ceiling"] == pytest.approx(0.8)
    assert row["fraction_of_ceiling"] == pytest.approx(0.5)
