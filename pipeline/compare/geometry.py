"""Representational geometry of every model layer and epoch: PCA spectrum, participation ratio,
components for a share of the variance, and linear-probe accuracy (P3, spec_ch5-6 Part C).

A layer at least as wide as the stimulus set is read once into its Gram matrix K = X Xᵀ over
the stimuli, which serves the spectrum and the probe; a narrower one uses its unit covariance.

- the covariance spectrum λ is the eigenvalues of the centred Gram divided by (n − 1) (the
  non-zero eigenvalues of XcᵀXc and XcXcᵀ coincide), scikit-learn's ``PCA.explained_variance_``;
- participation ratio PR = (Σλ)² / Σλ² (Gao et al. 2017; isotropic variance in k dimensions
  gives k);
- n_components = the fewest leading components whose variance exceeds `variance` of the total
  (scikit-learn's ``PCA(n_components=variance).n_components_``);
- the linear probe is a one-vs-all ridge classifier (targets ±1, as scikit-learn's
  ``RidgeClassifier``; kernel form for wide layers) or a logistic regression (scikit-learn),
  its accuracy averaged over seeded stratified folds.

The tests check each against scikit-learn (PCA, RidgeClassifier) and closed forms (a known
spectrum, an isotropic Gaussian in k dimensions).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.compare.epochs import select_epochs

log = logging.getLogger(__name__)

CLASSIFIERS = ("ridge", "logistic")
# Float64 values of one layer converted at a time while the Gram matrix is summed.
_BLOCK_ELEMENTS = 2 ** 24


def gram(X) -> np.ndarray:
    """X Xᵀ in float64, summed over blocks of units so a wide float32 layer is never copied whole.

    Parameters
    ----------
    X : ndarray, shape (stimulus, unit)

    Returns
    -------
    ndarray, shape (stimulus, stimulus)
    """
    X = np.asarray(X)
    n, d = X.shape
    step = max(1, _BLOCK_ELEMENTS // max(n, 1))
    K = np.zeros((n, n))
    for start in range(0, d, step):
        block = X[:, start:start + step].astype(np.float64)
        K += block @ block.T
    return K


def center_gram(K) -> np.ndarray:
    """The Gram matrix of the stimulus-centred responses: H K H with H = I − 11ᵀ/n."""
    K = np.asarray(K, dtype=np.float64)
    row = K.mean(0)
    return K - row[None, :] - row[:, None] + row.mean()


def spectrum_from_gram(K, n_units=None) -> np.ndarray:
    """Covariance eigenvalues (descending, ≥ 0) of responses whose Gram matrix is K.

    Parameters
    ----------
    K : ndarray, shape (stimulus, stimulus)
        X Xᵀ of the uncentred responses (`gram`).
    n_units : int, optional
        Units of X; the spectrum then stops at min(stimulus − 1, unit) values.

    Returns
    -------
    ndarray, shape (min(stimulus − 1, unit),)
        The eigenvalues of the unbiased covariance (divided by n − 1); centring removes one
        dimension, so at most n − 1 can be non-zero. Rounding-level negatives are set to 0.
    """
    n = K.shape[0]
    if n < 2:
        raise ValueError(f"a spectrum needs at least 2 stimuli; got {n}")
    keep = n - 1 if n_units is None else min(n - 1, n_units)
    eigenvalues = np.linalg.eigvalsh(center_gram(K))[::-1][:keep] / (n - 1)
    return np.maximum(eigenvalues, 0.0)


def spectrum(X) -> np.ndarray:
    """Covariance eigenvalues (descending, ≥ 0) of responses X (stimulus, unit).

    From the Gram matrix when units ≥ stimuli (`spectrum_from_gram`), else from the unit × unit
    covariance; either way min(stimulus − 1, unit) values.
    """
    X = np.asarray(X)
    n, d = X.shape
    if d >= n:
        return spectrum_from_gram(gram(X), d)
    if n < 2:
        raise ValueError(f"a spectrum needs at least 2 stimuli; got {n}")
    Xc = X.astype(np.float64) - X.mean(0, dtype=np.float64)
    eigenvalues = np.linalg.eigvalsh(Xc.T @ Xc)[::-1][:min(n - 1, d)] / (n - 1)
    return np.maximum(eigenvalues, 0.0)


def participation_ratio(eigenvalues) -> float:
    """(Σλ)² / Σλ²: the number of dimensions the variance is spread over (Gao et al. 2017).

    NaN when all variance is zero (a constant layer).
    """
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    total = eigenvalues.sum()
    if total <= 0:
        return float("nan")
    return float(total ** 2 / (eigenvalues ** 2).sum())


def n_components(eigenvalues, variance=0.9) -> int:
    """The fewest leading components whose share of the variance exceeds `variance`.

    scikit-learn's ``PCA(n_components=variance)`` convention: the first k whose cumulative
    explained-variance ratio is strictly above `variance` (all components if none is, 0 for a
    constant layer).
    """
    if not 0 < variance < 1:
        raise ValueError(f"variance must be in (0, 1); got {variance!r}")
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    total = eigenvalues.sum()
    if total <= 0:
        return 0
    ratio = np.cumsum(eigenvalues) / total
    return int(min(np.searchsorted(ratio, variance, side="right") + 1, eigenvalues.size))


# ---------------------------------------------------------------- linear probe

def probe_folds(labels, n_splits=5, seed=0):
    """Seeded stratified folds of the stimuli: list of (train, test) index arrays.

    Each class's stimuli are shuffled (seeded) and dealt to the folds in turn, starting where
    the previous class stopped, so every fold holds each class's share to within one stimulus
    and the fold sizes differ by at most one (scikit-learn's ``StratifiedKFold(shuffle=True)``
    has the same guarantees; written here to keep scikit-learn out of the job's start-up). The
    number of folds is clipped to the smallest class's size; the clipped number is what is used.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"a linear probe needs at least 2 classes; got {classes.size}")
    k = int(min(n_splits, counts.min()))
    if k < 2:
        raise ValueError(f"a linear probe needs at least 2 stimuli of every class for 2 folds; the "
                         f"smallest class has {counts.min()} (choose a coarser label level or "
                         f"more stimuli)")
    if k < n_splits:
        log.info("probe: %d folds instead of %d (smallest class has %d stimuli)", k, n_splits, k)
    rng = np.random.default_rng(seed)
    fold = np.empty(labels.size, dtype=int)
    start = 0
    for name in classes:
        members = rng.permutation(np.flatnonzero(labels == name))
        fold[members] = (start + np.arange(members.size)) % k
        start = (start + members.size) % k
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def _one_vs_all(labels, classes):
    """Targets ±1, one column per class (scikit-learn ``RidgeClassifier``'s coding)."""
    return np.where(labels[:, None] == classes[None, :], 1.0, -1.0)


def _ridge_fold(K, Y, train, test, alpha):
    """Kernel ridge with intercept fit on `train`, one-vs-all scores on `test`.

    With training responses centred on their mean, W = Xcᵀ (Kc + α'I)⁻¹ Yc and the scores are
    (x − μ)ᵀW + ȳ (the primal ridge of scikit-learn with ``fit_intercept=True``). α' =
    α · tr(Kc)/n_train: the penalty is relative to the layer's mean squared centred norm, so
    one `alpha` means the same for layers and epochs of any activation scale (our choice).
    """
    Ktt = K[np.ix_(train, train)]
    Kst = K[np.ix_(test, train)]
    mean_t = Ktt.mean(0)                                      # k(x_j, μ) for training j
    Kc = Ktt - mean_t[None, :] - mean_t[:, None] + mean_t.mean()
    Ks = Kst - mean_t[None, :] - Kst.mean(1, keepdims=True) + mean_t.mean()
    penalty = alpha * max(np.trace(Kc), np.finfo(float).tiny) / len(train)
    y_mean = Y[train].mean(0)
    coef = np.linalg.solve(Kc + penalty * np.eye(len(train)), Y[train] - y_mean)
    return Ks @ coef + y_mean


def _ridge_fold_primal(X, Y, train, test, alpha):
    """`_ridge_fold` in the unit space, (XcᵀXc + α'I)⁻¹ XcᵀYc, for layers narrower than the
    stimulus set (same penalty α' = α · ‖Xc‖²/n_train)."""
    mean = X[train].mean(0)
    Xc = X[train] - mean
    C = Xc.T @ Xc
    penalty = alpha * max(np.trace(C), np.finfo(float).tiny) / len(train)
    y_mean = Y[train].mean(0)
    coef = np.linalg.solve(C + penalty * np.eye(C.shape[0]), Xc.T @ (Y[train] - y_mean))
    return (X[test] - mean) @ coef + y_mean


def probe_accuracy(X=None, labels=None, *, K=None, classifier="ridge", alpha=1.0, C=1.0,
                   max_iter=1000, n_splits=5, seed=0) -> dict:
    """Cross-validated accuracy of a linear classifier of `labels` from a layer's responses.

    Parameters
    ----------
    X : ndarray, shape (stimulus, unit), optional
        Responses; needed for "logistic", optional for "ridge" when `K` is given.
    labels : array-like, shape (stimulus,)
    K : ndarray, shape (stimulus, stimulus), optional
        X Xᵀ (`gram`), reused by the ridge probe; without it a layer narrower than the
        stimulus set is solved in the unit space.
    classifier : {"ridge", "logistic"}
        "ridge": one-vs-all ridge (`_ridge_fold`, penalty `alpha` relative to the layer's
        scale). "logistic": multinomial logistic regression (scikit-learn, inverse penalty
        `C`, `max_iter`) on responses divided by their training fold's RMS centred norm.
    n_splits, seed : int
        Seeded stratified folds (`probe_folds`); the same for every layer, epoch and model.

    Returns
    -------
    dict
        probe_accuracy (mean over folds), probe_accuracy_sd (s.d. over folds), probe_n_splits,
        n_classes, probe_chance (share of the most frequent class).
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}; got {classifier!r}")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    folds = probe_folds(labels, n_splits, seed)
    accuracies = []
    if classifier == "ridge":
        Y = _one_vs_all(labels, classes)
        primal = K is None and np.shape(X)[1] < np.shape(X)[0]
        if primal:
            X = np.asarray(X, dtype=np.float64)
        elif K is None:
            K = gram(X)
        for train, test in folds:
            scores = (_ridge_fold_primal(X, Y, train, test, alpha) if primal
                      else _ridge_fold(np.asarray(K, dtype=np.float64), Y, train, test, alpha))
            accuracies.append(np.mean(classes[scores.argmax(1)] == labels[test]))
    else:
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        for train, test in folds:
            mean = X[train].mean(0)
            scale = np.sqrt(((X[train] - mean) ** 2).sum(1).mean()) or 1.0
            model = LogisticRegression(C=C, max_iter=max_iter)
            model.fit((X[train] - mean) / scale, labels[train])
            accuracies.append(model.score((X[test] - mean) / scale, labels[test]))
    return {"probe_accuracy": float(np.mean(accuracies)),
            "probe_accuracy_sd": float(np.std(accuracies, ddof=1)),
            "probe_n_splits": len(folds), "n_classes": int(classes.size),
            "probe_chance": float(counts.max() / counts.sum())}


# ---------------------------------------------------------------- per model

def stimulus_labels(stimuli: xr.Dataset, stimulus_ids, level: str) -> np.ndarray:
    """The `level` label of each of `stimulus_ids`, looked up by stimulus_id in a stimulus set."""
    if level not in stimuli.coords:
        raise ValueError(f"stimulus set {stimuli.attrs.get('name', '')!r} has no label level "
                         f"{level!r}; its coords: {list(stimuli.coords)}")
    table = pd.Series(stimuli[level].values.astype(str), index=stimuli["stimulus_id"].values.astype(str))
    ids = pd.Index(np.asarray(stimulus_ids).astype(str))
    missing = ids.difference(table.index)
    if missing.size:
        raise ValueError(f"{missing.size} stimulus_id values of the activations are not in the "
                         f"stimulus set (first: {missing[0]!r}); both must be the same set")
    return table.reindex(ids).to_numpy()


def layer_responses(var: xr.DataArray):
    """(epoch, time, responses (stimulus, unit)) of one layer; time 0 for feedforward layers,
    as in `pipeline.compare.sources.source_positions`."""
    units = [d for d in var.dims if d not in ("epoch", "time", "stimulus")]
    for i, epoch in enumerate(var["epoch"].values):
        at_epoch = var.isel(epoch=i)
        if "time" in var.dims:
            times = var["time"].values if "time" in var.coords else np.arange(var.sizes["time"])
            steps = [(int(t), at_epoch.isel(time=j)) for j, t in enumerate(times)]
        else:
            steps = [(0, at_epoch)]
        for t, values in steps:
            X = values.transpose("stimulus", *units).values
            yield int(epoch), t, X.reshape(X.shape[0], -1)


def geometry(activations: xr.Dataset, labels, *, epochs="all", variance=0.9,
             probe=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Participation ratio, components for `variance`, spectrum and probe accuracy per layer/epoch.

    Parameters
    ----------
    activations : xarray.Dataset
        One data var per layer, dims (epoch[, time], stimulus, unit...), coords epoch and
        stimulus_id (`pipeline.activations.extract`).
    labels : array-like, shape (stimulus,)
        Class of each stimulus, in the activations' stimulus order (`stimulus_labels`).
    epochs : "all", "final", "ends" or list of int
        Checkpoints to analyse (`select_epochs`).
    variance : float
        Share of the variance `n_components` must reach.
    probe : dict, optional
        Keyword arguments of `probe_accuracy` (classifier, alpha, C, max_iter, n_splits, seed);
        a `label_level` key is recorded in the table, not passed on.

    Returns
    -------
    layers : pandas.DataFrame
        One row per (layer, epoch, time): n_stimuli, n_units, participation_ratio, variance,
        n_components, total_variance, and the `probe_accuracy` fields, with the probe's
        classifier and label_level.
    spectrum : pandas.DataFrame
        One row per (layer, epoch, time, component): eigenvalue (covariance) and
        explained_variance_ratio (eigenvalue / total).
    """
    probe = dict(probe or {})
    label_level = probe.pop("label_level", None)
    labels = np.asarray(labels)
    if labels.shape != (activations.sizes["stimulus"],):
        raise ValueError(f"labels must have one entry per stimulus ({activations.sizes['stimulus']}); "
                         f"got shape {labels.shape}")
    activations = select_epochs(activations, epochs)
    rows, spectra = [], []
    for layer in activations.data_vars:
        for epoch, time, X in layer_responses(activations[layer]):
            K = gram(X) if X.shape[1] >= X.shape[0] else None     # shared by spectrum and probe
            eigenvalues = spectrum(X) if K is None else spectrum_from_gram(K, X.shape[1])
            total = eigenvalues.sum()
            key = {"layer": str(layer), "epoch": epoch, "time": time}
            accuracy = probe_accuracy(X, labels, K=K, **probe)
            rows.append({**key, "n_stimuli": X.shape[0], "n_units": X.shape[1],
                         "participation_ratio": participation_ratio(eigenvalues),
                         "variance": variance, "n_components": n_components(eigenvalues, variance),
                         "total_variance": float(total),
                         "classifier": probe.get("classifier", "ridge"), "label_level": label_level,
                         **accuracy})
            ratio = eigenvalues / total if total > 0 else np.full_like(eigenvalues, np.nan)
            spectra.append(pd.DataFrame({**key, "component": np.arange(1, eigenvalues.size + 1),
                                         "eigenvalue": eigenvalues, "explained_variance_ratio": ratio}))
        log.info("geometry: layer %s done", layer)
    return pd.DataFrame(rows), pd.concat(spectra, ignore_index=True)
