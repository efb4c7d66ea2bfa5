"""The identification analyses of spec_ch5-6 B.7 on one table of observables.

`identify` runs, per observable class and classifier:

1. `separability`: 10 category-balanced 75/25 splits (B.6), with confusion matrices and, for
   the random forest, Gini and permutation importance per statistic; `pairwise`: every pair
   of rule classes alone (B.7.1);
2. `averaged`: the same splits on trajectory-averaged features (B.7.2b);
3. `holdout`: train on all but one architecture, curriculum (batch size × data-order seed) or
   task and test on it (B.7.3);
4. `trajectory`: random-start subsamples of n points at a period p (dense, intermediate,
   sparse), and `thirds`: train on one consecutive third of training, test on each (B.7.4);
5. `units`: the FA-vs-IA (or any configured) runs measured under unit subsampling × noise,
   each draw classified on its own (B.7.5).

Every accuracy row carries the analysis's own setting columns and the chance level
1 / n_classes; features are z-scored inside the classifiers with training statistics only.
Separability uses `n_splits` random splits and every classifier; the other analyses use
`analyses.n_splits` splits and `analyses.classifiers` (their many settings multiply the fits).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.inspection import permutation_importance
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import StratifiedShuffleSplit
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.identify.classifiers import make_classifier
from pipeline.identify.features import Features, build_features
from pipeline.identify.measurement import Measurement

log = logging.getLogger(__name__)

ANALYSES = ("separability", "pairwise", "averaged", "holdout", "trajectory", "thirds", "units")
ACCURACY_COLUMNS = ("analysis", "observable", "classifier", "split", "accuracy", "n_train",
                    "n_test", "n_classes", "chance", "pair", "held_out_by", "held_out", "period",
                    "n_samples", "train_third", "test_third", "fraction", "noise", "draw")
CONFUSION_COLUMNS = ("observable", "classifier", "split", "true", "predicted", "count")
IMPORTANCE_COLUMNS = ("observable", "split", "kind", "statistic", "importance")

__all__ = ["ACCURACY_COLUMNS", "ANALYSES", "fit_predict", "identify", "random_splits"]


def random_splits(labels, n_splits: int, test_size: float, seed: int):
    """Category-balanced train/test index pairs (stratified shuffle splits)."""
    splitter = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def fit_predict(name: str, settings: dict, train: Features, test: Features, *, cv: int,
                seed: int, n_jobs: int = 1):
    """Fit classifier `name` (grid-searched) on `train`; returns (fitted, predictions on test)."""
    model = make_classifier(name, settings[name], n_statistics=train.values.shape[1],
                            n_times=train.values.shape[2], n_train=len(train), cv=cv,
                            seed=seed, n_jobs=n_jobs)
    model.fit(train.flat(), train.labels)
    return model, model.predict(test.flat())


def _row(analysis, observable, classifier, split, train, test, predicted, **setting):
    n_classes = len(np.unique(np.concatenate([train.labels, test.labels])))
    return {"analysis": analysis, "observable": observable, "classifier": classifier,
            "split": split, "accuracy": float(np.mean(predicted == test.labels)),
            "n_train": len(train), "n_test": len(test), "n_classes": n_classes,
            "chance": 1 / n_classes, **setting}


def _importance(model, test: Features, observable: str, split: int, *, n_repeats: int,
                seed: int) -> list[dict]:
    """Gini and permutation importance of a fitted forest, summed over each statistic's time
    points (and over the three position columns)."""
    forest = getattr(model, "best_estimator_", model)
    # One thread: on a test split this small, joblib's dispatch per prediction costs more than
    # the forest's trees (permutation importance predicts once per feature and repeat).
    forest.set_params(n_jobs=1)
    n_times = test.values.shape[2]
    groups = [s for s in test.statistics for _ in range(n_times)] + ["position"] * 3
    permuted = permutation_importance(forest, test.flat(), test.labels, n_repeats=n_repeats,
                                      random_state=seed)
    rows = []
    for kind, values in (("gini", forest.feature_importances_),
                         ("permutation", permuted.importances_mean)):
        for statistic, value in pd.Series(values).groupby(groups).sum().items():
            rows.append({"observable": observable, "split": split, "kind": kind,
                         "statistic": statistic, "importance": float(value)})
    return rows


def _confusion(model_predictions, test: Features, classes, observable, classifier, split):
    matrix = confusion_matrix(test.labels, model_predictions, labels=classes)
    return [{"observable": observable, "classifier": classifier, "split": split,
             "true": classes[i], "predicted": classes[j], "count": int(matrix[i, j])}
            for i in range(len(classes)) for j in range(len(classes))]


class _Runner:
    """Shared settings of one `identify` call and the tables it fills."""

    def __init__(self, settings: dict, n_jobs: int):
        self.s = settings
        self.n_jobs = n_jobs
        self.accuracy, self.confusion, self.importance = [], [], []
        self.svm_fits = self.svm_unconverged = 0

    def fit(self, classifier, train, test):
        if classifier != "svm":
            return fit_predict(classifier, self.s, train, test, cv=self.s["cv"],
                               seed=self.s["seed"], n_jobs=self.n_jobs)
        # Liblinear warns once per grid candidate and fold (hundreds of lines per run); the
        # refitted SVM that predicts is checked instead, and `report_convergence` says it once.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model, predicted = fit_predict(classifier, self.s, train, test, cv=self.s["cv"],
                                           seed=self.s["seed"], n_jobs=self.n_jobs)
        svm = getattr(model, "best_estimator_", model).named_steps["svm"]
        self.svm_fits += 1
        self.svm_unconverged += int(svm.n_iter_ >= svm.max_iter)
        return model, predicted

    def report_convergence(self) -> None:
        """One warning when a predicting LinearSVC stopped at its iteration cap."""
        if self.svm_unconverged:
            log.warning("LinearSVC stopped at max_iter = %d before converging in %d of %d "
                        "fitted SVMs (the selected C and PCA of each training set); their "
                        "accuracies may be below a converged fit's. Raise "
                        "identify.classify.svm.max_iter.", self.s["svm"]["max_iter"],
                        self.svm_unconverged, self.svm_fits)

    def splits(self, features, n_splits=None):
        """Random splits: `n_splits` for full-data separability, `analyses.n_splits` else."""
        n = self.s["analyses"]["n_splits"] if n_splits is None else n_splits
        return random_splits(features.labels, n, self.s["test_size"], self.s["seed"])

    def separability(self, features, observable, bar):
        classes = np.unique(features.labels)
        for split, (train, test) in enumerate(self.splits(features, self.s["n_splits"])):
            train_f, test_f = features.take(train), features.take(test)
            for classifier in self.s["classifiers"]:
                model, predicted = self.fit(classifier, train_f, test_f)
                self.accuracy.append(_row("separability", observable, classifier, split,
                                          train_f, test_f, predicted))
                self.confusion += _confusion(predicted, test_f, classes, observable, classifier,
                                             split)
                if classifier == "rf" and self.s["importance"]["n_repeats"]:
                    self.importance += _importance(model, test_f, observable, split,
                                                   n_repeats=self.s["importance"]["n_repeats"],
                                                   seed=self.s["seed"])
                bar.update(1)

    def random_split_accuracy(self, analysis, features, observable, classifiers, **setting):
        for split, (train, test) in enumerate(self.splits(features)):
            for classifier in classifiers:
                _, predicted = self.fit(classifier, features.take(train), features.take(test))
                self.accuracy.append(_row(analysis, observable, classifier, split,
                                          features.take(train), features.take(test), predicted,
                                          **setting))

    def pairwise(self, features, observable, classifiers):
        """Every pair of rule classes on its own (B.7.1), chance 1/2."""
        classes = np.unique(features.labels)
        for i, a in enumerate(classes):
            for b in classes[i + 1:]:
                pair = features.take(np.isin(features.labels, [a, b]))
                self.random_split_accuracy("pairwise", pair, observable, classifiers,
                                           pair=f"{a}|{b}")

    def holdout(self, features, observable, classifiers):
        for column in self.s["analyses"]["holdouts"]:
            values = features.meta[column].unique()
            if len(values) < 2:
                log.info("holdout by %s skipped: one value only (%s)", column, values[0])
                continue
            for value in values:
                held = (features.meta[column] == value).to_numpy()
                train_f, test_f = features.take(~held), features.take(held)
                if len(np.unique(train_f.labels)) < 2:
                    continue
                for classifier in classifiers:
                    _, predicted = self.fit(classifier, train_f, test_f)
                    self.accuracy.append(_row("holdout", observable, classifier, -1, train_f,
                                              test_f, predicted, held_out_by=column,
                                              held_out=str(value)))

    def trajectory(self, features, observable, classifiers):
        spec = self.s["analyses"]["trajectory"]
        rng = np.random.default_rng(self.s["seed"])
        n_times = features.values.shape[2]
        for name, period in spec["periods"].items():
            for n_samples in spec["samples"].get(name, []):
                if (n_samples - 1) * period + 1 > n_times:
                    log.info("trajectory %s: %d samples %d apart exceed %d checkpoints; skipped",
                             name, n_samples, period, n_times)
                    continue
                sub = features.subsampled(period, n_samples, rng)
                self.random_split_accuracy("trajectory", sub, observable, classifiers,
                                           period=name, n_samples=n_samples)

    def thirds(self, features, observable, classifiers):
        third = features.values.shape[2] // 3
        if third < 1:
            log.info("thirds skipped: %d checkpoints", features.values.shape[2])
            return
        windows = [features.window(k * third, (k + 1) * third) for k in range(3)]
        names = ("early", "middle", "late")
        for split, (train, test) in enumerate(self.splits(features)):
            for a, train_window in enumerate(windows):
                for classifier in classifiers:
                    model, _ = self.fit(classifier, train_window.take(train),
                                        train_window.take(test))
                    for b, test_window in enumerate(windows):
                        predicted = model.predict(test_window.take(test).flat())
                        self.accuracy.append(_row("thirds", observable, classifier, split,
                                                  train_window.take(train), test_window.take(test),
                                                  predicted, train_third=names[a],
                                                  test_third=names[b]))


def _conditions(table: pd.DataFrame) -> list[Measurement]:
    """The degraded measurement conditions present in a table."""
    keys = table[["fraction", "noise", "draw"]].drop_duplicates()
    return [Measurement(float(f), float(n), int(d)) for f, n, d in keys.itertuples(index=False)
            if not (f == 1 and n == 0)]


def identify(table: pd.DataFrame, settings: dict, *, n_jobs: int = 1
             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Accuracy, confusion and importance tables of every analysis (module docstring).

    Parameters
    ----------
    table : pandas.DataFrame
        Observables of every run (`pipeline.identify.observables.COLUMNS` + run columns).
    settings : dict
        The config block `identify.classify`.
    n_jobs : int
        Parallel fits inside each grid search.

    Returns
    -------
    (accuracy, confusion, importance) : pandas.DataFrame
        accuracy has `ACCURACY_COLUMNS` (split −1 for holdouts, which have one split);
        confusion: observable, classifier, split, true, predicted, count (separability);
        importance: observable, split, kind (gini, permutation), statistic, importance.
    """
    runner = _Runner(settings, n_jobs)
    analyses = settings["analyses"]
    robust = analyses["classifiers"]
    clean = table[(table["fraction"] == 1) & (table["noise"] == 0)]
    n_clean_runs = clean["run"].nunique()
    total = len(settings["observables"]) * settings["n_splits"] * len(settings["classifiers"])
    with logging_redirect_tqdm(), tqdm(total=total, desc="identify", unit="fit",
                                       disable=None) as bar:
        for observable in settings["observables"]:
            kwargs = {"statistics": settings["statistics"],
                      "activity_change": settings["activity_change"]}
            features = build_features(clean, observable, **kwargs)
            log.info("%s: %d examples (%d runs) × %d statistics × %d checkpoints", observable,
                     len(features), n_clean_runs, len(features.statistics),
                     len(features.times))
            runner.separability(features, observable, bar)
            if analyses["pairwise"] and len(np.unique(features.labels)) > 2:
                runner.pairwise(features, observable, robust)
            if analyses["averaged"]:
                runner.random_split_accuracy("averaged", features.averaged(), observable, robust)
            runner.holdout(features, observable, robust)
            runner.trajectory(features, observable, robust)
            if analyses["thirds"]:
                runner.thirds(features, observable, robust)
            for condition in _conditions(table):
                degraded = build_features(table, observable, condition=condition, **kwargs)
                runner.random_split_accuracy("units", degraded, observable, robust,
                                             fraction=condition.fraction,
                                             noise=condition.noise, draw=condition.draw)
            units_runs = table.loc[(table["fraction"] < 1) | (table["noise"] > 0), "run"].unique()
            if len(units_runs):               # the same runs measured clean: the reference
                reference = build_features(clean[clean["run"].isin(units_runs)], observable,
                                           **kwargs)
                runner.random_split_accuracy("units", reference, observable, robust,
                                             fraction=1.0, noise=0.0, draw=0)
    runner.report_convergence()
    accuracy = pd.DataFrame(runner.accuracy).reindex(columns=list(ACCURACY_COLUMNS))
    return (accuracy, pd.DataFrame(runner.confusion, columns=list(CONFUSION_COLUMNS)),
            pd.DataFrame(runner.importance, columns=list(IMPORTANCE_COLUMNS)))
