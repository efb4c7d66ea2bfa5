"""Identification figures draw the tables of rule identify (and only read them)."""

import numpy as np
import pandas as pd
import pytest

from pipeline.figures.identify import (plot_identify_accuracy, plot_identify_confusion,
                                       plot_identify_importance, plot_identify_trajectory,
                                       plot_identify_units)
from pipeline.identify.analyses import ACCURACY_COLUMNS


@pytest.fixture
def accuracy():
    rng = np.random.default_rng(0)
    rows = []
    for observable in ("weights", "activations"):
        for classifier in ("svm", "rf"):
            for split in range(3):
                base = {"observable": observable, "classifier": classifier, "split": split,
                        "chance": 0.25, "n_classes": 4}
                rows.append({**base, "analysis": "separability", "accuracy": 0.5 + 0.1 * split})
                rows.append({**base, "analysis": "averaged", "accuracy": rng.uniform(0.3, 0.6)})
                rows.append({**base, "analysis": "holdout", "held_out_by": "arch", "held_out": "lenet",
                             "accuracy": 0.7})
                for n in (2, 4):
                    rows.append({**base, "analysis": "trajectory", "period": "dense", "n_samples": n,
                                 "accuracy": 0.4 + 0.1 * n})
                for a in ("early", "middle", "late"):
                    for b in ("early", "middle", "late"):
                        rows.append({**base, "analysis": "thirds", "train_third": a, "test_third": b,
                                     "accuracy": 0.9 if a == b else 0.4})
                for fraction in (0.1, 1.0):
                    for noise in (0.0, 1.0):
                        rows.append({**base, "analysis": "units", "fraction": fraction, "noise": noise,
                                     "draw": 0, "accuracy": 0.5 + 0.4 * fraction - 0.1 * noise,
                                     "chance": 0.5})
    return pd.DataFrame(rows).reindex(columns=list(ACCURACY_COLUMNS))


def test_accuracy_figure_draws_the_split_means(accuracy, tmp_path):
    out = tmp_path / "accuracy.png"
    means = plot_identify_accuracy(accuracy, out, dpi=40)
    assert out.stat().st_size > 0
    svm = means[(means["panel"] == "separability") & (means["observable"] == "weights")
                & (means["classifier"] == "svm")]
    assert svm["mean"].item() == pytest.approx(0.6)
    assert set(means["panel"]) == {"separability", "averaged", "holdout: arch"}


def test_trajectory_and_units_figures(accuracy, tmp_path):
    for plot, name in ((plot_identify_trajectory, "trajectory"), (plot_identify_units, "units")):
        plot(accuracy, tmp_path / f"{name}.png", dpi=40)
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    empty = accuracy[accuracy["analysis"] == "separability"]
    plot_identify_units(empty, tmp_path / "none.png", dpi=40)            # says why, still a figure
    assert (tmp_path / "none.png").exists()


def test_confusion_and_importance_figures(tmp_path):
    classes = ["adam", "fa", "ia", "sgdm"]
    confusion = pd.DataFrame([{"observable": "weights", "classifier": "rf", "split": 0, "true": t,
                               "predicted": p, "count": 5 if t == p else 1} for t in classes for p in classes])
    plot_identify_confusion(confusion, tmp_path / "confusion.png", dpi=40)
    importance = pd.DataFrame([{"observable": "weights", "split": s, "kind": k, "statistic": stat,
                                "importance": v} for s in range(2) for k in ("gini", "permutation")
                               for stat, v in (("weight_raw_median", 0.5), ("position", 0.01))])
    means = plot_identify_importance(importance, tmp_path / "importance.png", dpi=40)
    assert means.set_index(["kind", "statistic"])["importance"].loc[("gini", "weight_raw_median")] == 0.5
    assert (tmp_path / "confusion.png").exists() and (tmp_path / "importance.png").exists()


def test_tables_without_the_needed_columns_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks column"):
        plot_identify_accuracy(pd.DataFrame({"accuracy": [0.5]}), tmp_path / "x.png")
