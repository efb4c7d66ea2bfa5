"""A synthetic observables table with a known answer, for the classifier tests.

Rule classes "up" and "down" (and "flat" when asked) whose runs differ only in the sign of one
weight statistic's trend over training (weight_raw_median = ±slope·t + noise, or no trend);
every other admissible statistic is independent noise with the same distribution for all.
"""

import itertools

import numpy as np
import pandas as pd

from pipeline.identify.features import observable_names
from pipeline.identify.observables import layer_position

SIGNAL = "weight_raw_median"


SIGNS = {"up": 1, "down": -1, "flat": 0}


def planted_table(n_seeds=6, n_layers=3, n_epochs=6, slope=0.5, noise=0.05, seed=0,
                  conditions=((1.0, 0.0, 0),), rules=("up", "down")):
    """Long table in the observables layout (plus run columns) with the planted signal."""
    rng = np.random.default_rng(seed)
    names = observable_names("all")
    rows = []
    grid = itertools.product(rules, ("archa", "archb"), (32, 64), range(n_seeds))
    for rule, arch, batch, init in grid:
        run = f"supervised-{arch}-{rule}-b{batch}-i{init}-d0"
        sign = SIGNS[rule]
        labels = {"run": run, "task": "supervised", "arch": arch, "rule": rule, "batch_size": batch,
                  "init_seed": init, "data_seed": 0, "curriculum": f"b{batch}-d0"}
        for layer, (fraction, level, draw), epoch, name in itertools.product(
                range(n_layers), conditions, range(n_epochs), names):
            trend = sign * slope * epoch if name == SIGNAL else 0.0
            measure, function, statistic = name.split("_")
            rows.append({**labels, "layer": f"{arch}.l{layer}", "layer_index": layer, "n_layers": n_layers,
                         "position": layer_position(layer, n_layers), "epoch": epoch,
                         "fraction": fraction, "noise": level, "draw": draw, "measure": measure,
                         "function": function, "statistic": statistic, "observable": name,
                         "value": trend + rng.normal(0, noise if name == SIGNAL else 1.0)})
    return pd.DataFrame(rows)
