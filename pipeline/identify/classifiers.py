"""The three classifiers of spec_ch5-6 B.6 with their cross-validated parameter grids.

- `svm`: z-scored continuous features, optionally PCA (chosen by CV, on the continuous features
  only, never the position one-hot), then `LinearSVC`; grid over C and n_components.
- `rf`: `RandomForestClassifier`; grid over n_estimators and max_features (√d, log₂d, d).
- `conv1d`: `pipeline.identify.conv1d.Conv1DClassifier`; grid over its settings.

Each is wrapped in `GridSearchCV` with stratified k-fold CV on the training split; a grid of
one candidate is fitted directly (nothing to select). Grids come from the config's
`identify.classify.<classifier>` block, whose keys are the estimators' parameter names.
"""

from __future__ import annotations

import itertools

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from pipeline.identify.conv1d import Conv1DClassifier

CLASSIFIERS = ("svm", "rf", "conv1d")
N_POSITION = 3

__all__ = ["CLASSIFIERS", "make_classifier"]


def _svm(settings, *, n_continuous, n_fold, seed):
    """Scaler → optional PCA on the continuous block; the one-hot passes through."""
    continuous = Pipeline([("scale", StandardScaler()), ("pca", "passthrough")])
    prep = ColumnTransformer([("cont", continuous, np.arange(n_continuous)),
                              ("pos", "passthrough", np.arange(n_continuous,
                                                               n_continuous + N_POSITION))])
    estimator = Pipeline([("prep", prep), ("svm", LinearSVC(max_iter=settings["max_iter"],
                                                            random_state=seed))])
    limit = min(n_continuous, n_fold)            # PCA cannot exceed the fold's rank
    pca = [PCA(n, random_state=seed) for n in settings["pca"] if n < limit]
    grid = {"svm__C": list(settings["C"]),
            "prep__cont__pca": (["passthrough"] if settings["pca_optional"] else []) + pca}
    if not grid["prep__cont__pca"]:
        grid["prep__cont__pca"] = ["passthrough"]
    return estimator, grid


def _rf(settings, *, seed, n_jobs):
    features = [None if f == "all" else f for f in settings["max_features"]]
    estimator = RandomForestClassifier(random_state=seed, n_jobs=n_jobs)
    return estimator, {"n_estimators": list(settings["n_estimators"]), "max_features": features}


def _conv1d(settings, *, n_statistics, n_times, seed):
    estimator = Conv1DClassifier(n_statistics=n_statistics, n_times=n_times,
                                 epochs=settings["epochs"], random_state=seed)
    keys = ("lr", "batch_size", "kernel_fraction", "stride", "filters", "pooling",
            "weight_decay")
    return estimator, {key: list(settings[key]) for key in keys}


def make_classifier(name: str, settings: dict, *, n_statistics: int, n_times: int,
                    n_train: int, cv: int = 5, seed: int = 0, n_jobs: int = 1):
    """An unfitted classifier with its grid search, for examples of the given shape.

    Parameters
    ----------
    name : {"svm", "rf", "conv1d"}
    settings : dict
        The classifier's block of `identify.classify` (parameter grids).
    n_statistics, n_times : int
        Shape of each example's trajectories (X also holds the 3 position columns).
    n_train : int
        Training examples (caps PCA at the rank of a CV fold).
    cv : int
        Stratified folds of the grid search.
    seed : int
        random_state of the estimators and the folds.
    n_jobs : int
        Parallel fits of the grid search (and trees of the forest).
    """
    if name == "svm":
        n_fold = n_train * (cv - 1) // cv
        estimator, grid = _svm(settings, n_continuous=n_statistics * n_times, n_fold=n_fold,
                               seed=seed)
    elif name == "rf":
        estimator, grid = _rf(settings, seed=seed, n_jobs=n_jobs)
    elif name == "conv1d":
        estimator, grid = _conv1d(settings, n_statistics=n_statistics, n_times=n_times,
                                  seed=seed)
    else:
        raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}; got {name!r}")
    candidates = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if len(candidates) == 1:
        return estimator.set_params(**candidates[0])
    folds = StratifiedKFold(cv, shuffle=True, random_state=seed)
    return GridSearchCV(estimator, grid, cv=folds, n_jobs=n_jobs if name != "rf" else 1)
