"""The noise-corrected estimator for one (source, target population) pair (spec §1.2).

Per target unit, split-half h (trial halves 1, 2) and train/test split s, with a map F fit on
the training stimuli (DESIGN "The central metric"):

    p1 = F(A1_train -> B1_train)(A1_test),  p2 = F(A2_train -> B2_train)(A2_test)
    r = corr(p1, B2_test),  r_mapping = corr(p1, p2),  r_target = corr(B1_test, B2_test)
    r_full = corr(F(Abar_train -> Bbar_train)(Abar_test), Bbar_test)       (bar: all trials)
    score        = r / sqrt(r_mapping · r_target)
    score_thesis = r / sqrt(SB(r_mapping) · SB(r_target))                 (spec eq. 3.4)
    score_full   = r_full / sqrt(SB(r_mapping) · SB(r_target))

SB(x) = 2x/(1+x) enters only the denominators. Where r_mapping or r_target is <= 0 the
scores and the SB terms ``r_mapping_sb``, ``r_target_sb`` are NaN (spec §1.2: left NaN on
purpose); every quantity is then nan-averaged over the split-halves, giving one row per
(unit, split). Brain-Score's convention is stored beside them: ``ceiling_brainscore`` is
the SB split-half reliability (negative values kept, as Brain-Score keeps them) and
``score_brainscore`` = r_full² / ceiling (its neuroid-wise explained variance;
`pipeline.compare.ceilings`).

RSA and CKA fit nothing and give one value per target population: the same terms with
"corr" replaced by the comparison of the two populations' RDMs (or CKA), over all stimuli
(spec §1.5), and Brain-Score's RDM/CKA convention r_full / ceiling.

Without trial halves (single-trial data, e.g. trial-averaged recordings) only the raw
``r_full`` is defined; every other quantity is NaN and the rows say
``noise_corrected = False``.

Undefined splits. A row's ratio scores are nan-means over the split-halves in which they
are defined (r_mapping > 0 and r_target > 0); where a reliability is near 0 the few
defined halves can give ratios of any size (|score| 1e9 has been seen). Such rows are kept,
and the boolean column ``defined`` says whether the score was defined in *every*
split-half of the row (per-half rows: in that half; rows without halves: False).
Aggregations that should not see unstable ratios filter on it.

Missing data (NaN in the neural data; `pipeline.compare.sources` for the cells and
kernels). A target unit is scored on the stimuli it has: for each fit, a stimulus is
dropped where the source has a missing cell (any of its live units) or where that target
unit has one; target units with the same dropped stimuli are fitted together (PLS is a
joint fit, so a unit with missing stimuli never changes its neighbours' fit), and a split's
train and test stimuli lose the dropped ones. Dead units (no value at any stimulus) leave
the source and give NaN rows as targets; a split left with fewer than 2 training or 3 test
stimuli gives NaN rows. RSA and CKA drop the stimuli where either population has a missing
cell. Units and stimuli without missing cells are computed exactly as on clean data, and
data without any NaN mean takes the clean arithmetic unchanged. Each drop is logged
(`pipeline.compare.tasks.prepare` logs, once per analysis, which units and stimuli are
missing; stimuli missing in every unit are removed there before the splits are drawn).
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.compare.ceilings import (
    brainscore_ceiled,
    brainscore_neuroid_ceiling,
    corrected_scores,
    spearman_brown,
)
from pipeline.compare.cka import cka_from_grams
from pipeline.compare.mappings import FEATURE_MAPPINGS, MAPPINGS, center_kernel, pearson
from pipeline.compare.rsa import compare_rdms, rdm_from_gram
from pipeline.compare.sources import missing_cells, restrict

log = logging.getLogger(__name__)

PER_HALF = ("r", "r_mapping", "r_target", "r_mapping_sb", "r_target_sb", "score", "score_full",
            "score_thesis", "ceiling_brainscore")
QUANTITIES = ("r", "r_mapping", "r_target", "r_full", "r_mapping_sb", "r_target_sb", "score",
              "score_full", "score_thesis", "ceiling_brainscore", "score_brainscore")
SCORES = ("score", "score_full", "score_thesis")
POPULATION_MAPPINGS = ("rsa", "cka", "cka_unbiased")
_FITS_PER_CALL = 512          # fits per batched mapping call: bounds memory, amortises overhead
_FEATURE_ELEMENTS = 1 << 24   # source feature values per one-to-one call


def half_quantities(r, r_mapping, r_target, r_full):
    """Every per-split-half quantity of `PER_HALF`, arrays broadcast (r_full per split)."""
    score, score_full, score_thesis = corrected_scores(r, r_mapping, r_target, r_full)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "r": r, "r_mapping": r_mapping * np.ones_like(r), "r_target": r_target * np.ones_like(r),
            "r_mapping_sb": np.where(r_mapping > 0, spearman_brown(r_mapping), np.nan) * np.ones_like(r),
            "r_target_sb": np.where(r_target > 0, spearman_brown(r_target), np.nan) * np.ones_like(r),
            "score": score, "score_full": score_full, "score_thesis": score_thesis,
            "ceiling_brainscore": brainscore_neuroid_ceiling(r_target) * np.ones_like(r),
        }


class _HalfMean:
    """Running nan-mean over split-halves (axis 0 of each update), or the halves themselves."""

    def __init__(self, keep_halves):
        self.keep = keep_halves
        self.parts, self.sums, self.counts = [], {}, {}
        self.n = 0                  # split-halves added

    def add(self, values):
        if self.keep:
            self.parts.append(values)
            return
        for q, v in values.items():
            self.sums[q] = self.sums.get(q, 0.0) + np.nansum(v, axis=0)
            self.counts[q] = self.counts.get(q, 0) + np.isfinite(v).sum(0)
        self.n += values["score"].shape[0]

    def result(self):
        """dict of arrays (split, unit), or (half, split, unit) when halves are kept, with ``defined``."""
        if self.keep:
            out = {q: np.concatenate([p[q] for p in self.parts]) for q in PER_HALF}
            out["defined"] = np.isfinite(out["score"])
            return out
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {q: self.sums[q] / self.counts[q] for q in PER_HALF}
        out["defined"] = self.counts["score"] == self.n
        return out


def _split_kernels(G, splits):
    """Centred train and cross kernels for every split, stacked on a new axis -3.

    `center_kernel` for all splits at once (splits of equal sizes, as `stimulus_splits`
    makes them): with X centred on the training mean m of split s, K_train =
    (X_tr - m)(X_tr - m)ᵀ and K_cross = (X_te - m)(X_tr - m)ᵀ, from G = X Xᵀ alone.
    """
    train = np.stack([tr for tr, _ in splits])                     # (split, n_train)
    test = np.stack([te for _, te in splits])
    if len({tr.size for tr, _ in splits}) > 1 or len({te.size for _, te in splits}) > 1:
        parts = [center_kernel(G, tr, te) for tr, te in splits]
        return np.stack([k for k, _ in parts], -3), np.stack([k for _, k in parts], -3)
    n = G.shape[-1]
    mean_weights = np.zeros((n, len(splits)))
    mean_weights[train, np.arange(len(splits))[:, None]] = 1.0 / train.shape[1]
    col = np.swapaxes(G @ mean_weights, -1, -2)                    # (..., split, stimulus): X mᵀ
    col_train = np.take_along_axis(col, np.broadcast_to(train, col.shape[:-1] + train.shape[-1:]), -1)
    col_test = np.take_along_axis(col, np.broadcast_to(test, col.shape[:-1] + test.shape[-1:]), -1)
    mm = col_train.mean(-1)[..., None, None]                       # m mᵀ
    K_train = G[..., train[:, :, None], train[:, None, :]] - col_train[..., :, None] - col_train[..., None, :] + mm
    K_cross = G[..., test[:, :, None], train[:, None, :]] - col_test[..., :, None] - col_train[..., None, :] + mm
    return K_train, K_cross


def _kernel_predictions(maps, source, Y_halves, Y_bar, splits):
    """Predictions of the kernel maps for a chunk of split-halves and, if asked, the all-trial fits.

    The split kernels are computed once and shared by the maps. For an animal source (one
    kernel per half) the all-trial fits join the half fits in one batched call per map; a
    model's kernel is shared by every half and broadcast, so ridge solves it once per split.
    A model source with fewer units than training stimuli is fitted by PLS through its
    features (`_shared_feature_predictions`), which then costs less than its kernel.

    Returns
    -------
    dict
        name -> (half predictions (2, half, split, test, unit) or None, all-trial predictions
        (split, test, unit) or None).
    """
    n_train = len(splits[0][0])
    out = {name: _shared_feature_predictions(mapping, source.narrow, Y_halves, Y_bar, splits)
           for name, mapping in maps.items()
           if source.shared and source.narrow is not None and source.n_units < n_train
           and hasattr(mapping, "predict_from_shared_features")}
    maps = {name: mapping for name, mapping in maps.items() if name not in out}
    if not maps:
        return out
    shared = source.shared
    if shared or Y_halves is None:
        K_bar = _split_kernels(source.gram_mean, splits)
        K_half = K_bar if Y_halves is not None else None
    else:
        K_half = _split_kernels(np.stack([source.gram_half1, source.gram_half2]), splits)
        K_bar = _split_kernels(source.gram_mean, splits) if Y_bar is not None else None
    for name, mapping in maps.items():
        p = source.n_units
        if shared or Y_halves is None or Y_bar is None:
            halves = None if Y_halves is None else mapping.predict_from_kernel(*K_half, Y_halves, p)
            full = None if Y_bar is None else mapping.predict_from_kernel(*K_bar, Y_bar, p)
            out[name] = (halves, full)
            continue
        batch = Y_halves.shape[:-2]
        flat = [np.concatenate([k.reshape((-1,) + k.shape[-2:]), kb]) for k, kb in zip(K_half, K_bar)]
        Y = np.concatenate([Y_halves.reshape((-1,) + Y_halves.shape[-2:]), Y_bar])
        pred = mapping.predict_from_kernel(*flat, Y, p)
        n_half = int(np.prod(batch))
        out[name] = (pred[:n_half].reshape(batch + pred.shape[-2:]), pred[n_half:])
    return out


def _shared_feature_predictions(mapping, X, Y_halves, Y_bar, splits):
    """`_kernel_predictions`' output for one map fitted through a model's features X (stimulus, unit).

    Every half fit and the all-trial fit of a split share that split's training features,
    so they are fitted as one group.
    """
    train = np.stack([tr for tr, _ in splits])
    test = np.stack([te for _, te in splits])
    fits = []
    if Y_halves is not None:                             # (2, half, split, n, unit) -> (split, 2·half, n, unit)
        fits.append(np.moveaxis(Y_halves, 2, 0).reshape((len(splits), -1) + Y_halves.shape[-2:]))
    if Y_bar is not None:
        fits.append(Y_bar[:, None])
    pred = mapping.predict_from_shared_features(X[train], X[test], np.concatenate(fits, axis=1))
    halves = full = None
    if Y_halves is not None:
        n_half = 2 * Y_halves.shape[1]
        halves = np.moveaxis(pred[:, :n_half].reshape((len(splits),) + Y_halves.shape[:2] + pred.shape[-2:]), 0, 2)
    if Y_bar is not None:
        full = pred[:, -1]
    return halves, full


def _feature_predictions(mapping, X, Y_train, train, test):
    """Predictions of a feature-space map (one-to-one) for features X (..., stimulus, unit)."""
    return mapping.predict_from_features(X[..., train, :], X[..., test, :], Y_train)


def score_fitted(maps, source, target, splits, *, keep_halves=False):
    """Per-unit quantities of fitted mappings over the given splits.

    Parameters
    ----------
    maps : dict
        name -> mapping, names from `MAPPINGS` (``predict_from_kernel``) or
        `FEATURE_MAPPINGS` (``predict_from_features``).
    source : pipeline.compare.sources.Population or LayerSource
        Needs its features for feature-space maps.
    target : pipeline.compare.sources.Population
        With its features.
    splits : list of (ndarray, ndarray)
        Train/test splits of equal sizes.
    keep_halves : bool
        Return every split-half instead of their nan-mean.

    Returns
    -------
    dict
        name -> dict of `QUANTITIES`, shape (split, unit), or (half, split, unit) with
        `keep_halves`.
    """
    if source.missing is not None or target.missing is not None:
        return _score_fitted_missing(maps, source, target, splits, keep_halves)
    train = np.stack([tr for tr, _ in splits])
    test = np.stack([te for _, te in splits])
    Bbar = target.mean
    kernel_maps = {n: m for n, m in maps.items() if n in MAPPINGS}
    feature_maps = {n: m for n, m in maps.items() if n in FEATURE_MAPPINGS}
    unknown = set(maps) - set(kernel_maps) - set(feature_maps)
    if unknown:
        raise ValueError(f"score_fitted: {sorted(unknown)} are not fitted mappings.")
    raw = not target.has_halves
    shared = source.shared
    r_full = {}
    for name, mapping in feature_maps.items():
        r_full[name] = pearson(_feature_predictions(mapping, source.mean, Bbar[train], train, test),
                               Bbar[test], axis=-2)
    accs = {name: _HalfMean(keep_halves) for name in maps}
    n_halves = 0 if raw else target.half1.shape[0]
    B_test = None
    if kernel_maps and raw:
        for name, (_, full) in _kernel_predictions(kernel_maps, source, None, Bbar[train], splits).items():
            r_full[name] = pearson(full, Bbar[test], axis=-2)

    def add(name, p1, p2):
        B1_test, B2_test = B_test
        accs[name].add(half_quantities(pearson(p1, B2_test, axis=-2), pearson(p1, p2, axis=-2),
                                       pearson(B1_test, B2_test, axis=-2), r_full[name]))

    chunk = max(1, _FITS_PER_CALL // (2 * len(splits)))
    for start in range(0, n_halves, chunk):
        halves = slice(start, start + chunk)
        Y = np.stack([target.half1[halves], target.half2[halves]])      # (2, h, stimulus, unit)
        B_test = (Y[0][:, test], Y[1][:, test])                          # (h, split, test, unit)
        if not kernel_maps:
            continue
        sub = source if shared else source.select_halves(halves)
        first = start == 0
        predictions = _kernel_predictions(kernel_maps, sub, Y[:, :, train], Bbar[train] if first else None, splits)
        for name, (pair, full) in predictions.items():
            if first:
                r_full[name] = pearson(full, Bbar[test], axis=-2)
            add(name, *pair)
    if feature_maps and not raw:
        per_fit = 2 * len(splits) * max(1, train.shape[1] * source.n_units)
        feature_chunk = max(1, _FEATURE_ELEMENTS // per_fit)
        for start in range(0, n_halves, feature_chunk):
            halves = slice(start, start + feature_chunk)
            Y = np.stack([target.half1[halves], target.half2[halves]])
            B_test = (Y[0][:, test], Y[1][:, test])
            X = source.mean if shared else np.stack([source.half1[halves], source.half2[halves]])
            for name, mapping in feature_maps.items():
                add(name, *_feature_predictions(mapping, X, Y[:, :, train], train, test))
    out = {}
    for name in maps:
        if raw:
            shape = ((1,) if keep_halves else ()) + r_full[name].shape
            values = {q: np.full(shape, np.nan) for q in QUANTITIES}
            values["r_full"] = r_full[name].reshape(shape)
            values["defined"] = np.zeros(shape, bool)
        else:
            values = accs[name].result()
            values["r_full"] = r_full[name] * np.ones_like(values["r"])
            values["score_brainscore"] = brainscore_ceiled(values["r_full"], values["ceiling_brainscore"])
        out[name] = values
    return out


_MIN_TRAIN, _MIN_TEST = 2, 3     # stimuli a split keeps after drops, else its rows are NaN


def _nan_values(maps, n_halves, n_splits, n_units, keep_halves):
    shape = ((n_halves,) if keep_halves else ()) + (n_splits, n_units)
    values = {name: {q: np.full(shape, np.nan) for q in QUANTITIES} for name in maps}
    for name in maps:
        values[name]["defined"] = np.zeros(shape, bool)
    return values


def _score_fitted_missing(maps, source, target, splits, keep_halves):
    """`score_fitted` with missing cells: target units grouped by the stimuli they keep.

    Each group (units with the same missing stimuli, joined with the source's) is scored on
    the stimuli it keeps, the splits' indices renumbered; a group that keeps every stimulus
    uses the splits as they are. Dead units and splits too small after drops stay NaN.
    See the module docstring.
    """
    n_stimuli = target.mean.shape[0]
    n_halves = target.half1.shape[0] if target.has_halves else 1
    out = _nan_values(maps, n_halves, len(splits), target.mean.shape[1], keep_halves)
    if source.n_units == 0:
        log.warning("the source has no live unit: NaN for its %d target units", target.mean.shape[1])
        return out
    source_drop = np.zeros(n_stimuli, bool) if source.missing is None else source.missing > 0
    drop = missing_cells(target.mean, target.half1, target.half2) | source_drop[:, None]
    patterns, inverse = np.unique(drop, axis=1, return_inverse=True)
    inverse = np.ravel(inverse)
    for g in range(patterns.shape[1]):
        units = np.flatnonzero(inverse == g)
        keep = ~patterns[:, g]
        if not keep.any():
            log.warning("%d target units have no stimulus left after drops: their rows are NaN", units.size)
            continue
        sub_source, sub_target = restrict(source, keep), restrict(target, keep, units)
        if keep.all():
            parts = [(slice(None), score_fitted(maps, sub_source, sub_target, splits, keep_halves=keep_halves))]
        else:
            log.info("%d target units: %d of %d stimuli dropped from their fits (missing in the source or "
                     "in these units)", units.size, n_stimuli - int(keep.sum()), n_stimuli)
            renumber = np.cumsum(keep) - 1
            parts = []
            for s, (train, test) in enumerate(splits):
                train, test = renumber[train[keep[train]]], renumber[test[keep[test]]]
                if train.size < _MIN_TRAIN or test.size < _MIN_TEST:
                    log.warning("split %d keeps %d training and %d test stimuli after drops (need %d and %d): "
                                "NaN for %d units", s, train.size, test.size, _MIN_TRAIN, _MIN_TEST, units.size)
                    continue
                parts.append((slice(s, s + 1), score_fitted(maps, sub_source, sub_target, [(train, test)],
                                                            keep_halves=keep_halves)))
        for at, values in parts:
            for name in maps:
                for q, v in values[name].items():
                    out[name][q][..., at, units] = v
    return out


def _population_compare(name, method):
    """(statistic of a kernel, comparison of two statistics) for RSA or CKA.

    The statistic takes a kernel (..., stimulus, stimulus), its unit sums (..., stimulus)
    and the unit count: the condensed RDM for RSA, the kernel itself for CKA.
    """
    if name == "rsa":
        def stat(gram, sums, n_units):
            return rdm_from_gram(gram, sums, n_units, condensed=True)

        def compare(a, b):
            return compare_rdms(a, b, method, condensed=True)
    else:
        def stat(gram, sums, n_units):
            return gram

        def compare(a, b):
            return cka_from_grams(a, b, unbiased=name == "cka_unbiased")
    return stat, compare


def score_population(name, source, target, *, rsa_compare="pearson", keep_halves=False):
    """RSA or CKA quantities for one target population over all stimuli (one value each).

    r = compare(A1, B2), r_mapping = compare(A1, A2), r_target = compare(B1, B2) per
    split-half and r_full = compare(Abar, Bbar), with compare the RDM comparison
    `rsa_compare` of 1 - Pearson RDMs (RSA) or linear CKA from the kernels (``cka`` biased,
    ``cka_unbiased`` Song et al.'s unbiased HSIC). A model source has A1 = A2 = Abar.

    Returns
    -------
    dict of ndarray
        `QUANTITIES`, shape (1, 1) (split 0, one "unit"), or (half, 1, 1) with `keep_halves`.
    """
    if source.missing is not None or target.missing is not None:
        keep = np.ones(target.sum_mean.shape[-1], bool)
        for pop in (source, target):
            if pop.missing is not None:
                keep &= pop.missing == 0
        if keep.sum() < 4 or source.n_units == 0 or target.n_units == 0:
            log.warning("%s: %d stimuli without a missing cell in source and target (need 4), %d and %d live "
                        "units (need 1): NaN", name, int(keep.sum()), source.n_units, target.n_units)
            n_halves = target.gram_half1.shape[0] if target.has_halves and keep_halves else 1
            values = _nan_values([name], n_halves, 1, 1, keep_halves)[name]
            return values
        if not keep.all():
            log.info("%s: %d of %d stimuli dropped (a unit of the source or target has no value there)",
                     name, int((~keep).sum()), keep.size)
        return score_population(name, restrict(source, keep), restrict(target, keep),
                                rsa_compare=rsa_compare, keep_halves=keep_halves)
    stat, compare = _population_compare(name, rsa_compare)
    r_full = np.asarray(compare(stat(source.gram_mean, source.sum_mean, source.n_units),
                                stat(target.gram_mean, target.sum_mean, target.n_units)))
    if not target.has_halves:
        shape = ((1,) if keep_halves else ()) + (1, 1)
        out = {q: np.full(shape, np.nan) for q in QUANTITIES}
        out["r_full"] = np.full(shape, float(r_full))
        out["defined"] = np.zeros(shape, bool)
        return out
    if source.shared:
        A1 = A2 = stat(source.gram_mean, source.sum_mean, source.n_units)
    else:
        A1 = stat(source.gram_half1, source.sum_half1, source.n_units)
        A2 = stat(source.gram_half2, source.sum_half2, source.n_units)
    B1 = stat(target.gram_half1, target.sum_half1, target.n_units)
    B2 = stat(target.gram_half2, target.sum_half2, target.n_units)
    n_halves = target.gram_half1.shape[0]
    r = np.broadcast_to(compare(A1, B2), (n_halves,))
    r_mapping = np.broadcast_to(compare(A1, A2), (n_halves,))
    values = half_quantities(r, r_mapping, compare(B1, B2), r_full)
    acc = _HalfMean(keep_halves)
    acc.add({q: v.reshape(-1, 1, 1) for q, v in values.items()})
    out = acc.result()
    out["r_full"] = r_full * np.ones_like(out["r"])
    out["score_brainscore"] = brainscore_ceiled(out["r_full"], out["ceiling_brainscore"], convention="ratio")
    return out
