"""The classifiers on data with a known answer: a planted trend sign is separated perfectly, and
permuted labels sit within the binomial interval around chance (spec_ch5-6 B.6–B.7)."""

import logging
import warnings
from dataclasses import replace

import numpy as np
import pytest
import scipy.stats
from sklearn.exceptions import ConvergenceWarning

from pipeline.identify.analyses import ACCURACY_COLUMNS, fit_predict, identify, random_splits
from pipeline.identify.features import build_features
from tests.identify.planted import planted_table

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SETTINGS = {
    "observables": ["weights", "activations"], "activity_change": "feedback",
    "statistics": "admissible", "classifiers": ["svm", "rf", "conv1d"], "n_splits": 2,
    "test_size": 0.25, "cv": 3, "seed": 0,
    "svm": {"C": [1.0, 50.0], "pca": [5], "pca_optional": True, "max_iter": 5000},
    "rf": {"n_estimators": [30], "max_features": ["sqrt"]},
    "conv1d": {"epochs": 60, "lr": [0.01], "batch_size": [32], "kernel_fraction": [0.5], "stride": [1],
               "filters": [8], "pooling": ["none"], "weight_decay": [0.0]},
    "importance": {"n_repeats": 2},
    "analyses": {"classifiers": ["svm", "rf"], "n_splits": 2, "pairwise": True, "averaged": True,
                 "holdouts": ["arch", "curriculum", "task"],
                 "thirds": True,
                 "trajectory": {"periods": {"dense": 1, "sparse": 2}, "samples": {"dense": [2, 4], "sparse": [3, 9]}}},
}


@pytest.fixture(scope="module")
def planted():
    return planted_table(n_seeds=4, conditions=((1.0, 0.0, 0), (0.5, 0.0, 0)))


@pytest.mark.parametrize("classifier", ["svm", "rf", "conv1d"])
def test_planted_trend_sign_is_separated_perfectly(planted, classifier):
    features = build_features(planted, "weights")
    for train, test in random_splits(features.labels, 3, 0.25, seed=1):
        _, predicted = fit_predict(classifier, SETTINGS, features.take(train), features.take(test),
                                   cv=3, seed=0)
        assert np.array_equal(predicted, features.take(test).labels)


@pytest.mark.parametrize("classifier", ["svm", "rf"])
def test_permuted_labels_stay_within_the_binomial_chance_interval(classifier):
    table = planted_table(n_seeds=25, n_layers=4, seed=5)
    features = build_features(table, "weights")
    shuffled = replace(features, labels=np.random.default_rng(7).permutation(features.labels))
    (train, test), = random_splits(shuffled.labels, 1, 0.25, seed=3)
    _, predicted = fit_predict(classifier, SETTINGS, shuffled.take(train), shuffled.take(test), cv=3, seed=0)
    n = len(test)
    correct = int(np.sum(predicted == shuffled.labels[test]))
    low, high = scipy.stats.binom.interval(0.99, n, 0.5)
    assert n == 200 and low <= correct <= high, (correct, low, high)


def test_identify_runs_every_analysis(planted):
    settings = {**SETTINGS, "observables": ["weights"], "classifiers": ["svm", "rf"],
                "svm": {**SETTINGS["svm"], "C": [1.0], "pca": []}}          # one candidate: no CV
    accuracy, confusion, importance = identify(planted, settings)
    assert list(accuracy.columns) == list(ACCURACY_COLUMNS)
    assert set(accuracy["analysis"]) == {"separability", "averaged", "holdout", "trajectory", "thirds",
                                         "units"}
    weights = accuracy[(accuracy["observable"] == "weights")]
    separable = weights[weights["analysis"].isin(["separability", "averaged", "units"])]
    assert (separable["accuracy"] == 1).all(), separable.groupby(["analysis", "classifier"])["accuracy"].min()
    assert (accuracy["chance"] == 0.5).all()
    holdouts = accuracy[accuracy["analysis"] == "holdout"]
    assert set(holdouts["held_out_by"]) == {"arch", "curriculum"}          # one task: not held out
    assert set(holdouts["held_out"]) == {"archa", "archb", "b32-d0", "b64-d0"}
    trajectory = accuracy[accuracy["analysis"] == "trajectory"]
    assert set(map(tuple, trajectory[["period", "n_samples"]].drop_duplicates().to_numpy())) == {
        ("dense", 2), ("dense", 4), ("sparse", 3)}                          # 9 samples 2 apart: too long
    thirds = accuracy[accuracy["analysis"] == "thirds"]
    assert len(thirds.drop_duplicates(["train_third", "test_third"])) == 9
    units = accuracy[accuracy["analysis"] == "units"]
    assert set(units["fraction"]) == {0.5, 1.0}
    # confusion counts add up to the test sets; the planted statistic is the most important one
    counts = confusion.groupby(["observable", "classifier", "split"])["count"].sum()
    assert (counts == 24).all()
    top = (importance[importance["observable"] == "weights"].groupby(["kind", "statistic"])["importance"]
           .mean().groupby(level=0).idxmax())
    assert {statistic for _, statistic in top} == {"weight_raw_median"}


def test_pairwise_classifies_every_pair_of_three_classes():
    table = planted_table(n_seeds=3, rules=("up", "down", "flat"))
    settings = {**SETTINGS, "observables": ["weights"], "classifiers": ["rf"],
                "importance": {"n_repeats": 0},
                "analyses": {**SETTINGS["analyses"], "classifiers": ["rf"], "averaged": False,
                             "holdouts": [], "thirds": False, "trajectory": {"periods": {}, "samples": {}}}}
    accuracy, _, _ = identify(table, settings)
    pairwise = accuracy[accuracy["analysis"] == "pairwise"]
    assert set(pairwise["pair"]) == {"down|flat", "down|up", "flat|up"}
    assert (pairwise["chance"] == 0.5).all() and (pairwise["accuracy"] == 1).all()
    assert (accuracy.loc[accuracy["analysis"] == "separability", "chance"] == 1 / 3).all()


@pytest.mark.parametrize("max_iter, warned", [(1, True), (5000, False)])
def test_an_unconverged_svm_is_reported_once_not_per_fit(planted, caplog, max_iter, warned):
    """Liblinear's ConvergenceWarning (one per grid candidate and fold) is replaced by one log
    warning that counts the predicting SVMs that stopped at max_iter."""
    settings = {**SETTINGS, "observables": ["weights"], "classifiers": ["svm"],
                "svm": {**SETTINGS["svm"], "pca": [], "max_iter": max_iter},
                "analyses": {**SETTINGS["analyses"], "classifiers": ["svm"], "pairwise": False,
                             "averaged": False, "holdouts": [], "thirds": False,
                             "trajectory": {"periods": {}, "samples": {}}}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING, logger="pipeline.identify.analyses"):
            identify(planted, settings)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    reports = [r.getMessage() for r in caplog.records if "LinearSVC stopped" in r.getMessage()]
    n_fits = 3 * 2              # 2 splits each: separability, the 50 % units draw, its clean reference
    assert reports == ([f"LinearSVC stopped at max_iter = 1 before converging in {n_fits} of "
                        f"{n_fits} fitted SVMs (the selected C and PCA of each training set); "
                        "their accuracies may be below a converged fit's. Raise "
                        "identify.classify.svm.max_iter."] if warned else [])
