"""Aggregation of score tables: medians over units and the best layer per area."""

import numpy as np

from pipeline.compare.aggregate import best_layer, summarize
from pipeline.compare.consistency import predictivity


def test_best_layer_picks_the_generating_layer(simulate, to_activations):
    assembly, rates = simulate(n_animals=2, units_per_animal=15, n_trials=10, seed=10)
    ids = assembly["stimulus_id"].values
    noise = np.random.default_rng(0).standard_normal(rates.shape)
    activations = to_activations(rates, ids, layer="good")
    activations["bad"] = to_activations(noise, ids, layer="bad")["bad"]
    scores = predictivity(activations, assembly, mappings=("ridge",), n_halves=3, n_splits=2)
    summary = summarize(scores)
    assert set(summary["layer"]) == {"good", "bad"}
    chosen = best_layer(summary)
    assert list(chosen["layer"]) == ["good"]
    assert chosen["score"].iloc[0] > 0.9
