"""Recovery analysis on score tables the size of configs/recovery.yaml's (one generator dataset).

Synthetic predictivity tables: 14 candidates (7 classes x 2 seeds), 5 layers, 6 areas, 3 fitted
mappings (validation and test rows) plus RSA and CKA, 5 splits, 4 animals x 40 units. Baseline:
the per-cell loop a user would write with the existing summarizer, `aggregate.best_layer` once per
(area, mapping, model), then a Python bootstrap loop over resamples. Ours: `recovery.recovery`
(one choice pass over the whole table, a vectorised paired bootstrap). Point estimates (class
scores, margins, ranks) are compared; the intervals use different random draws.

    PYTHONPATH=. python benchmarks/recovery.py [--boot 1000]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from benchmarks.timing import timed
from pipeline.compare.aggregate import best_layer
from pipeline.compare.recovery import class_name, recovery
from pipeline.data.assembly import ALLEN_AREAS

CLASSES = ["ventral_cnn-supervised-bp", "ventral_cnn-supervised-fa", "ventral_cnn-supervised-kp",
           "ventral_cnn-supervised-wm", "ventral_cnn-supervised-hebb", "ventral_cnn-simclr-bp",
           "lenet-supervised-bp"]
LAYERS = ["area1", "area2", "area3", "area4", "readout"]
FITTED, FREE = ["ridge", "pls", "one_to_one"], ["rsa", "cka"]


def tables(n_animals=4, n_units=40, n_splits=5, seed=0):
    """Predictivity-shaped rows; class bp's layer k peaks at the areas it generated."""
    rng = np.random.default_rng(seed)
    units = [(f"a{a}", f"a{a}-u{u}") for a in range(n_animals) for u in range(n_units)]
    animal, neuroid = map(np.array, zip(*units))
    frames = []
    for c, cls in enumerate(CLASSES):
        for s in (0, 1):
            model = f"{cls}-s{s}"
            for i, area in enumerate(ALLEN_AREAS):
                peak = round(i * (len(LAYERS) - 1) / 5)
                for j, layer in enumerate(LAYERS):
                    level = 0.8 - 0.1 * abs(j - peak) - 0.05 * c
                    for mapping in FITTED:
                        for stage in ("select", "test"):
                            for split in range(n_splits):
                                frames.append(pd.DataFrame({
                                    "model": model, "area": area, "mapping": mapping, "layer": layer,
                                    "stage": stage, "split": split, "epoch": 5, "time": 0,
                                    "animal": animal, "neuroid_id": neuroid,
                                    "score": level + 0.2 * rng.standard_normal(len(units))}))
                    for mapping in FREE:
                        frames.append(pd.DataFrame({
                            "model": model, "area": area, "mapping": mapping, "layer": layer, "stage": "test",
                            "split": 0, "epoch": 5, "time": 0, "animal": [f"a{a}" for a in range(n_animals)],
                            "neuroid_id": "", "score": level + 0.05 * rng.standard_normal(n_animals)}))
    table = pd.concat(frames, ignore_index=True)
    return table.assign(score_full=table["score"], score_thesis=table["score"], r_full=table["score"])


def per_cell_loop(scores, generator, n_boot, seed=0):
    """Baseline: best_layer per model and cell, a Python loop over bootstrap resamples."""
    rng = np.random.default_rng(seed)
    truth, out = class_name(generator), {}
    fitted = scores[scores["mapping"].isin(FITTED)]
    for (area, mapping), cell in fitted.groupby(["area", "mapping"]):
        per_model = {}
        for model, rows in cell.groupby("model"):
            best = best_layer(rows, by=["model", "area", "mapping"])
            chosen = rows[(rows["stage"] == "test") & (rows["layer"] == best["layer"].iloc[0])]
            per_model[model] = chosen.groupby(["animal", "neuroid_id"])["score"].mean()
        classes = pd.Series({m: class_name(m) for m in per_model})
        medians = pd.Series({m: v.median() for m, v in per_model.items()})
        score = medians.groupby(classes).mean()
        n = len(next(iter(per_model.values())))
        margins = []
        for _ in range(n_boot):
            pick = rng.integers(0, n, n)
            boot = pd.Series({m: np.median(v.to_numpy()[pick]) for m, v in per_model.items()})
            by_class = boot.groupby(classes).mean()
            margins.append(by_class[truth] - by_class.drop(truth).max())
        out[(area, mapping)] = (score[truth], score[truth] - score.drop(truth).max())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args()
    scores = tables()
    generator = "ventral_cnn-supervised-bp-s101"
    depths = {area: round(i * 4 / 5) / 4 for i, area in enumerate(ALLEN_AREAS)}
    print(f"{len(scores):,} score rows, 14 candidates, {args.boot} bootstrap resamples")
    t_base, base = timed(per_cell_loop, scores, generator, args.boot)
    t_ours, (table, _, _) = timed(recovery, scores, generator, depths, n_boot=args.boot)
    ours = table.set_index(["area", "mapping"])
    diff = max(max(abs(ours.loc[key, "true_score"] - true), abs(ours.loc[key, "margin"] - margin))
               for key, (true, margin) in base.items())
    print(f"recovery (fitted mappings)  per-cell loop {t_base:.1f}s  ours {t_ours:.1f}s (all five mappings)  "
          f"speed-up {t_base / t_ours:.0f}x  max|diff| {diff:.1e}")


if __name__ == "__main__":
    main()
