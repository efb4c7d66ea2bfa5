"""Sources and targets of the consistency estimator, as kernel statistics over stimuli.

A population is summarised by its trial-half and all-trial means and by their linear
kernels over stimuli, G = X Xᵀ, with the unit sums s = X 1 and the unit count p (all the
fitted maps, RSA and CKA need; DESIGN "Scale"). Kernels add over units, so a pooled source
is the sum of its animals' kernels less the target's own, and a model layer's kernel is
accumulated over chunks of units read from Zarr, never holding the whole layer. Features
themselves are kept only when a feature-space map (one-to-one) or a unit subsample needs
them.

Missing data (NaN means; spec: "score every unit on the stimuli it has"). A unit's mean
(all trials, or a trial half of any split-half) is NaN at a stimulus where that half has no
valid trial. Such a (stimulus, unit) cell is *missing*: the mask is the union over the
all-trial mean and every split-half, so one stimulus set serves all halves of a fit. A unit
missing at every stimulus is *dead*. Kernels are then built from the means with the missing
cells set to 0, `n_units` counts the live units only, and ``missing`` holds, per stimulus,
the number of live units missing there (it adds and subtracts like the kernels, so a pooled
source less its target keeps the right counts). A kernel is exact wherever ``missing`` is 0
and dead units add nothing to it, so `restrict` to the stimuli with ``missing == 0`` gives
the statistics of the population without its dead units. Without any missing cell
``missing`` is None and nothing else changes: the arithmetic of clean data is untouched.
`pipeline.compare.scoring` decides what is dropped for each fit.

Two records carry these statistics: `Population` (an animal, or a source pooled from
several, with a kernel per trial half) and `LayerSource` (a model layer at one epoch and
time step, one kernel for every half). Their docstrings give the shapes in the dimensions
``stimulus``, ``unit`` and ``half`` (trial split-halves, from `trial_halves`).
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

log = logging.getLogger(__name__)

_READ_ELEMENTS = 1 << 23         # activations read per chunk (float32: 32 MiB)
_PROJECTION_BLOCK = 4096         # units per block of the random projection matrix (fixes its draw)


@dataclass(frozen=True)
class Population:
    """One population of units (an animal, or a source pooled from several) over stimuli.

    With B¹, B² the means over the two trial halves of each split-half and B̄ the mean over
    all trials (spec §1.2), the kernels are G = B Bᵀ and the sums s = B 1. The half fields
    are None without trial halves (single-trial data or raw r only); the feature fields
    are None unless the features were kept.

    Attributes
    ----------
    n_units : int
        p, the number of live units (units with a value at some stimulus; module docstring).
    gram_mean : ndarray, shape (stimulus, stimulus)
        Ḡ = B̄ B̄ᵀ.
    sum_mean : ndarray, shape (stimulus,)
        s̄ = B̄ 1.
    gram_half1, gram_half2 : ndarray, shape (half, stimulus, stimulus), or None
        G¹, G².
    sum_half1, sum_half2 : ndarray, shape (half, stimulus), or None
        s¹, s².
    mean : ndarray, shape (stimulus, unit), or None
        B̄ (targets, feature-space maps and unit subsamples need it).
    half1, half2 : ndarray, shape (half, stimulus, unit), or None
        B¹, B², kept together with `mean`.
    missing : ndarray of int, shape (stimulus,), or None
        Live units without a value at each stimulus; None when no cell is missing (module
        docstring). The features keep their NaN; the kernels have 0 there.
    """

    shared: ClassVar[bool] = False          # one kernel per trial half
    n_units: int
    gram_mean: np.ndarray
    sum_mean: np.ndarray
    gram_half1: np.ndarray | None = None
    gram_half2: np.ndarray | None = None
    sum_half1: np.ndarray | None = None
    sum_half2: np.ndarray | None = None
    mean: np.ndarray | None = None
    half1: np.ndarray | None = None
    half2: np.ndarray | None = None
    missing: np.ndarray | None = None

    @property
    def has_halves(self):
        """Whether the population has trial split-halves (else only raw r is defined)."""
        return self.gram_half1 is not None

    def select_halves(self, index):
        """The same population restricted to the split-halves `index` (a slice of axis ``half``)."""
        def part(X):
            return None if X is None else X[index]
        return Population(self.n_units, self.gram_mean, self.sum_mean, part(self.gram_half1),
                          part(self.gram_half2), part(self.sum_half1), part(self.sum_half2), self.mean,
                          part(self.half1), part(self.half2), self.missing)


@dataclass(frozen=True)
class LayerSource:
    """One model layer at one epoch (and time step) over stimuli.

    A model is deterministic, so one kernel serves every trial half: A¹ = A² = Ā = its
    (possibly projected) features A, with Ḡ = A Aᵀ and s̄ = A 1.

    Attributes
    ----------
    n_units : int
        p, the number of units (or of dimensions after a projection).
    gram_mean : ndarray, shape (stimulus, stimulus)
        Ḡ.
    sum_mean : ndarray, shape (stimulus,)
        s̄.
    projection : str
        "none", or the method and dimension of the projection, e.g. "random:1000", "pca:100".
    mean : ndarray, shape (stimulus, unit), float32, or None
        The features A, when asked for (feature-space maps).
    narrow : ndarray, shape (stimulus, unit), or None
        The features A in float64 (those of Ḡ) when there are fewer units than stimuli:
        they then cost less memory than Ḡ, and PLS through them less time.
    """

    shared: ClassVar[bool] = True           # one kernel for every trial half
    n_units: int
    gram_mean: np.ndarray
    sum_mean: np.ndarray
    projection: str = "none"
    mean: np.ndarray | None = None
    narrow: np.ndarray | None = None
    missing: ClassVar[None] = None          # activations are checked finite (`layer_sources`)


def _kernels(X):
    """Kernel statistics of features X (..., stimulus, unit)."""
    return X @ np.swapaxes(X, -1, -2), X.sum(-1)


def missing_cells(mean, half1=None, half2=None):
    """(stimulus, unit) mask of the missing cells: NaN in the all-trial mean or in any half mean."""
    mask = np.isnan(mean)
    for half in (half1, half2):
        if half is not None:
            mask = mask | np.isnan(half).any(0)
    return mask


def _statistics(mean, half1, half2, keep_features):
    """A Population from its means (half means None without split-halves), NaN-aware.

    Clean means take the plain kernels; with a missing cell, the kernels are those of the
    means with missing cells set to 0, and dead units leave `n_units` (module docstring).
    """
    features = (mean, half1, half2) if keep_features else (None, None, None)
    missing = None
    n_units = mean.shape[-1]
    if np.isnan(mean).any() or (half1 is not None and (np.isnan(half1).any() or np.isnan(half2).any())):
        mask = missing_cells(mean, half1, half2)
        dead = mask.all(0)
        missing = mask[:, ~dead].sum(1)
        n_units = int((~dead).sum())
        mean, half1, half2 = (None if X is None else np.where(np.isnan(X), 0.0, X) for X in (mean, half1, half2))
    gram_mean, sum_mean = _kernels(mean)
    if half1 is None:
        return Population(n_units, gram_mean, sum_mean, mean=features[0], missing=missing)
    gram_half1, sum_half1 = _kernels(half1)
    gram_half2, sum_half2 = _kernels(half2)
    return Population(n_units, gram_mean, sum_mean, gram_half1, gram_half2, sum_half1, sum_half2, *features,
                      missing=missing)


def restrict(pop, stimuli, units=None):
    """The population on the stimuli `stimuli` (bool mask or indices), optionally only `units`.

    Kernels are indexed (a kernel is exact where ``pop.missing`` is 0; see the module
    docstring); features are indexed and lose their dead units' columns, unless `units`
    picks columns (targets). The result has ``missing`` None: the caller keeps only stimuli
    where nothing is missing. Works for `Population` and `LayerSource`.
    """
    stimuli = np.flatnonzero(stimuli) if np.asarray(stimuli).dtype == bool else np.asarray(stimuli)

    def kernel(G):
        return None if G is None else G[..., stimuli[:, None], stimuli]

    def sums(s):
        return None if s is None else s[..., stimuli]

    if isinstance(pop, LayerSource):
        return LayerSource(pop.n_units, kernel(pop.gram_mean), sums(pop.sum_mean), pop.projection,
                           None if pop.mean is None else pop.mean[stimuli],
                           None if pop.narrow is None else pop.narrow[stimuli])
    columns = units
    if columns is None and pop.mean is not None and pop.missing is not None:
        columns = np.flatnonzero(~missing_cells(pop.mean, pop.half1, pop.half2).all(0))

    def feature(X):
        if X is None:
            return None
        X = X[..., stimuli, :]
        return X if columns is None else X[..., columns]

    if units is not None:
        # targets: statistics of the chosen units only
        mean, half1, half2 = feature(pop.mean), feature(pop.half1), feature(pop.half2)
        return _statistics(mean, half1, half2, keep_features=True)
    return Population(pop.n_units, kernel(pop.gram_mean), sums(pop.sum_mean), kernel(pop.gram_half1),
                      kernel(pop.gram_half2), sums(pop.sum_half1), sums(pop.sum_half2), feature(pop.mean),
                      feature(pop.half1), feature(pop.half2))


def population(R, halves, label, *, keep_features=True):
    """Trial-half and all-trial nan-means of one population, with their kernel statistics.

    Parameters
    ----------
    R : ndarray, shape (stimulus, trial, unit)
        Responses, NaN for missing trials.
    halves : list of (ndarray, ndarray) or None
        From `trial_halves`; None for raw-r mode (no split-halves).
    label : str
        Names the population in log messages.
    keep_features : bool
        Keep the means themselves (needed by targets, feature-space maps and unit subsamples).

    Returns
    -------
    Population
    """
    R = np.asarray(R, dtype=np.float64)
    valid = ~np.isnan(R)
    R0 = np.where(valid, R, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        Bbar = R0.sum(1) / valid.sum(1)
    if halves is None:
        pop = _statistics(Bbar, None, None, keep_features)
        _log_missing(pop, label)
        return pop
    masks = np.zeros((2, len(halves), R.shape[1]))
    for h, (first, second) in enumerate(halves):
        masks[0, h, first] = 1.0
        masks[1, h, second] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        B = (np.tensordot(masks, R0, axes=([2], [1]))
             / np.tensordot(masks, valid.astype(np.float64), axes=([2], [1])))
    pop = _statistics(Bbar, B[0], B[1], keep_features)
    _log_missing(pop, label)
    return pop


def _log_missing(pop, label):
    """Log the live units and the stimuli with a missing cell of a population that has any."""
    if pop.missing is None:
        return
    n_all = pop.mean.shape[-1] if pop.mean is not None else None
    log.info("%s: %d live units%s; %d stimuli have a unit without a value in some split-half "
             "(dropped from the fits that use this population, `pipeline.compare.scoring`)",
             label, pop.n_units, "" if n_all is None else f" of {n_all}", int((pop.missing > 0).sum()))


def pooled_kernels(R, unit_groups, halves, label="pool"):
    """Kernel statistics of several populations pooled, accumulated one population at a time.

    Only one population's half means exist at a time, so memory does not grow with the
    number of animals pooled.

    Parameters
    ----------
    R : ndarray, shape (stimulus, trial, unit)
    unit_groups : list of ndarray of int
        Unit positions of each population in `R`.
    halves : list of (ndarray, ndarray) or None
    label : str
        Names the pool in log messages.

    Returns
    -------
    Population
        Kernel statistics only (no features).
    """
    total = None
    for k, idx in enumerate(unit_groups):
        pop = population(R[:, :, idx], halves, f"{label}[{k}]", keep_features=False)
        total = pop if total is None else _combine(total, pop, operator.add)
    return total


def leave_out(pooled, own):
    """A pooled source less one of its populations (the held-out target's own units); kernels only."""
    return _combine(pooled, own, operator.sub)


def _combine(a, b, op):
    """Kernel statistics of two populations combined field by field with `op` (features dropped)."""
    def apply(x, y):
        return None if x is None else op(x, y)
    missing = None
    if a.missing is not None or b.missing is not None:
        zeros = np.zeros(a.sum_mean.shape[-1], dtype=np.int64)
        missing = op(zeros if a.missing is None else a.missing, zeros if b.missing is None else b.missing)
    return Population(op(a.n_units, b.n_units), op(a.gram_mean, b.gram_mean), op(a.sum_mean, b.sum_mean),
                      apply(a.gram_half1, b.gram_half1), apply(a.gram_half2, b.gram_half2),
                      apply(a.sum_half1, b.sum_half1), apply(a.sum_half2, b.sum_half2), missing=missing)


def concatenated(populations, units=None):
    """Source built from the units of several populations, optionally a subset of them.

    Parameters
    ----------
    populations : list of Population
        With their features (``keep_features=True``).
    units : ndarray of int, optional
        Positions in the concatenation to keep (equalised source sizes); all by default.

    Returns
    -------
    Population
        Kernel statistics and features of the source.
    """
    def features(name):
        parts = [getattr(pop, name) for pop in populations]
        if parts[0] is None:
            return None
        X = np.concatenate(parts, axis=-1)
        return X if units is None else X[..., units]

    mean, half1, half2 = features("mean"), features("half1"), features("half2")
    return _statistics(mean, half1, half2, keep_features=True)


# ---------------------------------------------------------------- model layers

def _unit_axes(var):
    """The dims of an activations variable other than epoch, time and stimulus (its units)."""
    return [d for d in var.dims if d not in ("epoch", "time", "stimulus")]


def source_axes(var):
    """The leading dims of an activations variable, one source per entry: epoch[, time]."""
    return [d for d in ("epoch", "time") if d in var.dims]


def source_positions(var, epochs):
    """Labels {"epoch", "time"} of each source `layer_sources` returns for `var`, in its order.

    A feedforward layer (no ``time`` dim) has one source per epoch, labelled time 0, so score
    tables of feedforward and recurrent models share their columns.
    """
    if "time" not in var.dims:
        return [{"epoch": int(epoch), "time": 0} for epoch in epochs]
    times = var["time"].values if "time" in var.coords else np.arange(var.sizes["time"])
    return [{"epoch": int(epoch), "time": int(t)} for epoch in epochs for t in times]


def _random_projection_block(seed, block, n_units, n_components):
    """Rows [block·B, block·B + n_units) of the seeded Gaussian projection (unit, component)/√k."""
    rng = np.random.default_rng([seed, block])
    return rng.standard_normal((n_units, n_components)) / np.sqrt(n_components)


def layer_sources(var, order, *, projection=None, keep_features=False, label="layer"):
    """Kernel statistics of one model layer at every epoch (and time step), read chunk by chunk.

    The layer is read in blocks of units (all epochs, the assembly's stimuli) of at most
    `_READ_ELEMENTS` values, so a lazily opened Zarr variable is never loaded whole; each
    block is converted to float64 and added to the kernels.

    Parameters
    ----------
    var : xarray.DataArray
        Dims (epoch, stimulus, unit...), or (epoch, time, stimulus, unit...) for a recurrent
        model, e.g. a lazily opened activations variable.
    order : ndarray of int
        Positions along `stimulus` of the assembly's stimuli.
    projection : dict, optional
        ``{"method": "none" | "random" | "pca", "n_components": k, "seed": s}``. Layers
        with more than k units are reduced to k dimensions: "random", a seeded Gaussian
        random projection (Johnson-Lindenstrauss; drawn in fixed blocks of units, so the
        result does not depend on the read chunks); "pca", the top k principal components
        over the assembly's stimuli (kernel PCA of the centred kernel; at k ≥ stimuli - 1
        linear maps are unchanged). PCA is fit on all of the assembly's stimuli, test
        stimuli included, as an unsupervised step on the features only.
    keep_features : bool
        Also return the (projected) features, float32, for feature-space maps.
    label : str
        Names the layer in messages.

    Returns
    -------
    list of LayerSource
        One per epoch, or per (epoch, time) in epoch-major order; with `keep_features`, their
        ``mean`` holds the features; ``narrow`` holds them in float64 when there are fewer
        (projected) units than stimuli.
    """
    projection = dict(projection or {})
    method = projection.get("method", "none")
    k = int(projection.get("n_components", 0) or 0)
    units, leading = _unit_axes(var), source_axes(var)
    var = var.transpose(*leading, "stimulus", *units)
    # n_epochs counts sources: epochs, or (epoch, time) pairs flattened epoch-major.
    n_epochs = int(np.prod([var.sizes[d] for d in leading]))
    n_units = int(np.prod([var.sizes[d] for d in units]))
    if method not in ("none", "random", "pca"):
        raise ValueError(f"projection method must be 'none', 'random' or 'pca'; got {method!r}.")
    if method != "none" and k < 1:
        raise ValueError(f"projection {method!r} needs n_components >= 1; got {k}.")
    if method == "none" or n_units <= k:
        method = "none"
    n = len(order)
    G = np.zeros((n_epochs, n, n))
    s = np.zeros((n_epochs, n))
    Z = np.zeros((n_epochs, n, k)) if method == "random" else None
    kept = [] if keep_features and method == "none" else None
    narrow = [] if method == "none" and n_units < len(order) else None
    lead = units[0]
    inner = int(np.prod([var.sizes[d] for d in units[1:]]))
    per_read = max(1, _READ_ELEMENTS // max(1, n_epochs * var.sizes["stimulus"] * inner))
    done = 0                                         # units read so far
    for start in range(0, var.sizes[lead], per_read):
        block = np.asarray(var.isel({lead: slice(start, start + per_read)}).values)
        X = block.reshape(n_epochs, var.sizes["stimulus"], -1)[:, order].astype(np.float64)
        if not np.isfinite(X).all():
            raise ValueError(f"activations {label!r}: features contain NaN or inf (first at "
                             f"{_position(var, leading, order, done, np.argwhere(~np.isfinite(X))[0])}); "
                             "expected finite values.")
        G += X @ np.swapaxes(X, 1, 2)
        s += X.sum(2)
        offset = 0
        while Z is not None and offset < X.shape[2]:  # the projection rows of these units
            b, within = divmod(done + offset, _PROJECTION_BLOCK)
            width = min(_PROJECTION_BLOCK - within, X.shape[2] - offset)
            omega = _random_projection_block(projection.get("seed", 0), b, _PROJECTION_BLOCK, k)
            Z += X[:, :, offset:offset + width] @ omega[within:within + width]
            offset += width
        if kept is not None:
            kept.append(X.astype(np.float32))
        if narrow is not None:
            narrow.append(X)
        done += X.shape[2]
    label_projection = "none" if method == "none" else f"{method}:{k}"
    sources = []
    for e in range(n_epochs):
        gram, sums, p = G[e], s[e], n_units
        features = None
        if method == "random":
            features = Z[e]
        elif method == "pca":
            features = _pca_features(G[e], k)
        if features is not None:
            (gram, sums), p = _kernels(features), features.shape[1]
        kept_features = None
        if keep_features:
            kept_features = (np.concatenate([c[e] for c in kept], axis=1) if kept is not None
                             else features.astype(np.float32))
        narrow_features = (np.concatenate([c[e] for c in narrow], axis=1) if narrow is not None
                           else features if features is not None and p < n else None)
        sources.append(LayerSource(p, gram, sums, label_projection, kept_features, narrow_features))
    if method != "none":
        log.info("%s: %d units reduced to %d dimensions (%s)", label, n_units, k, label_projection)
    return sources


def _position(var, leading, order, done, index):
    """'epoch e[, time t], stimulus_id s, unit u' of entry `index` (source, stimulus, unit) of a read block."""
    source, stimulus, unit = (int(i) for i in index)
    parts = []
    for dim, i in zip(leading, np.unravel_index(source, [var.sizes[d] for d in leading])):
        parts.append(f"{dim} {var[dim].values[i] if dim in var.coords else i}")
    position = int(order[stimulus])
    if "stimulus_id" in var.coords:
        parts.append(f"stimulus_id {str(var['stimulus_id'].values[position])!r}")
    else:
        parts.append(f"stimulus {position}")
    parts.append(f"unit {done + unit}")
    return ", ".join(parts)


def _pca_features(G, k):
    """Scores on the top k principal components over stimuli, from the uncentred kernel.

    With H the centring matrix, H G H = U Λ Uᵀ and the PCA scores are U_k Λ_k^½ (the
    features' mean over stimuli removed; linear maps with an intercept do not see it).
    """
    col = G.mean(0)
    Gc = G - col[:, None] - col[None, :] + col.mean()
    lam, U = np.linalg.eigh(Gc)
    lam, U = lam[::-1][:k], U[:, ::-1][:, :k]
    return U * np.sqrt(np.clip(lam, 0.0, None))
