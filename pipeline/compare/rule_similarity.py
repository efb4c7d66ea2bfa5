"""Learning rule × learning rule similarity of layer RDMs, with a bootstrap over stimuli (P3).

For every architecture × objective, layer and epoch, each model's RDM on the same stimuli
(`pipeline.compare.rsa.rdm`) is compared with every other model's (`rsa.compare_rdms`), and
the model × model similarities are averaged into rule × rule cells over seed pairs. A rule's
diagonal cell averages its *distinct* seed pairs (how alike two seeds of one rule are); it is
NaN with a single seed. Confidence intervals are percentiles of a bootstrap over stimuli: each
draw resamples the stimuli with replacement, once for every model, layer and epoch, and
compares the RDMs restricted to the drawn stimuli, leaving out the pairs of a stimulus with its
own copy (their dissimilarity is 0 by construction; rsatoolbox's pattern bootstrap sets them
to NaN for the same reason).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import rankdata

from pipeline.compare.epochs import select_epochs
from pipeline.compare.geometry import layer_responses
from pipeline.compare.rsa import COMPARE_METHODS, RDM_METRICS, compare_rdms, rdm
from pipeline.models.names import parse_model_name

log = logging.getLogger(__name__)


def _similarity(vectors, method):
    """Model × model comparison of condensed RDMs (model, pair).

    Pearson, Spearman and cosine are inner products of normalised rows, one BLAS call for all
    pairs (equal to `compare_rdms`, which the tests check); Kendall's τ-a and "dot" go through
    `compare_rdms` broadcast over the pairs of models.
    """
    if method in ("pearson", "spearman", "cosine"):
        v = rankdata(vectors, axis=-1) if method == "spearman" else np.asarray(vectors, float)
        if method != "cosine":
            v = v - v.mean(-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            v = v / np.sqrt((v * v).sum(-1, keepdims=True))
        return v @ v.T
    return compare_rdms(vectors[:, None, :], vectors[None, :, :], method, condensed=True)


# Pair weights (draw, pair) held at once by `_weighted_similarity`.
_BLOCK_ELEMENTS = 2 ** 23


def _weighted_similarity(vectors, counts, method):
    """Pearson, cosine or dot similarity of condensed RDMs (model, pair) for many draws at once.

    A draw that picks stimulus s c_s times holds the pair (s, t), s ≠ t, c_s·c_t times, and no
    pair of a stimulus with its own copy; so every draw is the same pairs with weights
    w = c_s·c_t, and the comparison needs only the weighted sums Σw, Σw·a and Σw·a·b: one
    matrix product per block of draws instead of a resampled copy of every RDM.

    Parameters
    ----------
    vectors : ndarray, shape (model, pair)
        Condensed RDMs on all stimuli (`rsa.upper_tri` order).
    counts : ndarray, shape (draw, stimulus)
        How often each draw picks each stimulus.
    """
    m, p = vectors.shape
    n = counts.shape[1]
    iu = np.triu_indices(n, k=1)
    first, second = np.triu_indices(m)                # model pairs, row by row (a ≤ b)
    out = np.empty((counts.shape[0], m, m))
    step = max(1, _BLOCK_ELEMENTS // max(p, 1))
    for start in range(0, counts.shape[0], step):
        c = counts[start:start + step].astype(np.float64)
        w = c[:, iu[0]] * c[:, iu[1]]                                 # (draw, pair)
        total = w.sum(1)[:, None]
        sums = w @ vectors.T                                          # Σw·a, (draw, model)
        # Σw·a·b for b ≥ a, one model a at a time (a (pair, model) product, not all pairs at once)
        cross = np.concatenate([w @ (vectors[a] * vectors[a:]).T for a in range(m)], axis=1)
        if method == "pearson":
            cross = cross - sums[:, first] * sums[:, second] / total
        if method == "dot":
            value = cross
        else:
            diagonal = cross[:, first == second]                      # (draw, model), a = b
            with np.errstate(invalid="ignore", divide="ignore"):
                value = cross / np.sqrt(diagonal[:, first] * diagonal[:, second])
        block = out[start:start + step]
        block[:, first, second] = value
        block[:, second, first] = value
    return out


def model_similarity(rdms, method="pearson", *, n_boot=0, seed=0, draws=None):
    """Similarity of every pair of models' RDMs, and its bootstrap over stimuli.

    Parameters
    ----------
    rdms : ndarray, shape (model, stimulus, stimulus)
        Square RDMs on the same stimuli.
    method : str
        A `pipeline.compare.rsa.COMPARE_METHODS` entry.
    n_boot, seed : int
        Bootstrap draws of the stimuli (with replacement), seeded; ignored when `draws` is given.
    draws : ndarray of int, shape (boot, stimulus), optional
        Stimulus indices of each draw, so several layers and epochs share one set of resamples.

    Returns
    -------
    point : ndarray, shape (model, model)
        On all stimuli.
    boot : ndarray, shape (boot, model, model)
        One similarity matrix per draw (pairs of a stimulus with its own copy left out).
        Pearson, cosine and dot from weighted sums (`_weighted_similarity`); Spearman and
        Kendall's τ-a rank each draw's resampled pairs.
    """
    rdms = np.asarray(rdms, dtype=np.float64)
    m, n = rdms.shape[0], rdms.shape[-1]
    if draws is None:
        draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    draws = np.asarray(draws, dtype=np.int64).reshape(-1, n)
    iu = np.triu_indices(n, k=1)
    vectors = rdms[:, iu[0], iu[1]]
    point = _similarity(vectors, method)
    if method in ("pearson", "cosine", "dot"):
        counts = np.stack([np.bincount(idx, minlength=n) for idx in draws]) if len(draws) \
            else np.zeros((0, n), dtype=np.int64)
        return point, _weighted_similarity(vectors, counts, method)
    boot = np.empty((len(draws), m, m))
    for b, idx in enumerate(draws):
        i, j = idx[iu[0]], idx[iu[1]]
        keep = i != j                              # a stimulus against its own copy
        boot[b] = _similarity(rdms[:, i[keep], j[keep]], method)
    return point, boot


def rule_cells(similarity, rules, seeds=None, *, seed_pairs="all"):
    """Average model × model similarities (..., model, model) into rule × rule cells.

    A cell averages the pairs of distinct models whose rules are (a, b), so the diagonal holds
    only seed pairs of one rule. With `seed_pairs` "distinct", pairs of models of the same seed
    are left out of every cell: the models of one seed start from the same weights whatever
    their rule, which makes two rules look alike early in training; the off-diagonal cells
    then compare like the diagonal, across initialisations (they need two seeds or more).

    Returns
    -------
    cells : ndarray, shape (..., rule, rule)
    names : list of str
        The rules, in order of first appearance.
    n_pairs : ndarray of int, shape (rule, rule)
        Model pairs averaged per cell (0: NaN cell).
    """
    if seed_pairs not in ("all", "distinct"):
        raise ValueError(f"seed_pairs must be 'all' or 'distinct'; got {seed_pairs!r}")
    rules = np.asarray(rules)
    names = list(dict.fromkeys(rules.tolist()))
    keep = ~np.eye(len(rules), dtype=bool)
    if seed_pairs == "distinct":
        seeds = np.asarray(seeds)
        keep &= seeds[:, None] != seeds[None, :]
    cells = np.full(similarity.shape[:-2] + (len(names), len(names)), np.nan)
    n_pairs = np.zeros((len(names), len(names)), dtype=int)
    for a, rule_a in enumerate(names):
        for b, rule_b in enumerate(names):
            mask = (rules[:, None] == rule_a) & (rules[None, :] == rule_b) & keep
            n_pairs[a, b] = mask.sum()
            if n_pairs[a, b]:
                cells[..., a, b] = similarity[..., mask].mean(-1)
    return cells, names, n_pairs


def rule_similarity(activations: dict[str, xr.Dataset], *, epochs="final", metric="correlation",
                    compare="pearson", n_boot=1000, ci=0.95, seed=0, seed_pairs="all") -> pd.DataFrame:
    """Rule × rule RDM similarity per architecture × objective, layer and epoch, with bootstrap CIs.

    Parameters
    ----------
    activations : dict of str to xarray.Dataset
        Model name `{arch}-{objective}-{rule}-s{seed}` -> its activations on one stimulus set
        (`pipeline.activations.extract`); every store must hold the same stimulus_ids.
    epochs : "all", "final", "ends" or list of int
        Each model's checkpoints to compare (`select_epochs`); models are compared at equal
        epoch numbers.
    metric : str
        RDM dissimilarity (`rsa.rdm`), "correlation" by default (spec §1.5).
    compare : str
        RDM comparison (`rsa.compare_rdms`).
    n_boot : int
        Bootstrap draws over stimuli (0: no interval).
    ci : float
        Central percentile interval of the draws, e.g. 0.95 → 2.5th and 97.5th percentiles.
    seed : int
        Seed of the draws; the same draws serve every group, layer and epoch.
    seed_pairs : {"all", "distinct"}
        Which model pairs a cell averages (`rule_cells`): all pairs of distinct models, or only
        those of different seeds (different initial weights).

    Returns
    -------
    pandas.DataFrame
        One row per (arch, objective, layer, epoch, time, rule_a, rule_b): similarity (all
        stimuli), ci_low, ci_high, n_pairs (model pairs averaged), seed_pairs, n_boot, ci,
        metric, compare, n_stimuli.
    """
    if metric not in RDM_METRICS:
        raise ValueError(f"metric must be one of {RDM_METRICS}; got {metric!r}")
    if compare not in COMPARE_METHODS:
        raise ValueError(f"compare must be one of {COMPARE_METHODS}; got {compare!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    if seed_pairs not in ("all", "distinct"):
        raise ValueError(f"seed_pairs must be 'all' or 'distinct'; got {seed_pairs!r}")
    if not activations:
        raise ValueError("rule_similarity needs the activations of at least one model; got none")
    names = list(activations)
    ids = [np.asarray(ds["stimulus_id"].values).astype(str) for ds in activations.values()]
    for name, these in zip(names[1:], ids[1:]):
        if these.shape != ids[0].shape or (these != ids[0]).any():
            raise ValueError(f"model {name!r}: its activations hold other stimuli (or another order) "
                             f"than those of {names[0]!r}; compare models on one stimulus set")
    n = ids[0].size
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    # (arch, objective, layer, epoch, time) -> list of (rule, RDM)
    groups: dict[tuple, list] = {}
    for name, ds in activations.items():
        spec = parse_model_name(name)
        ds = select_epochs(ds, epochs)
        for layer in ds.data_vars:
            for epoch, time, X in layer_responses(ds[layer]):
                key = (spec.arch, spec.objective, str(layer), epoch, time)
                groups.setdefault(key, []).append((spec.rule, spec.seed, rdm(X, metric)))
    rows = []
    low_q, high_q = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
    for (arch, objective, layer, epoch, time), members in groups.items():
        rules, seeds, rdms = zip(*members)
        # one model: no pair to compare, so no draw either
        point, boot = model_similarity(np.stack(rdms), compare,
                                       draws=draws if len(members) > 1 else draws[:0])
        cells, rule_names, n_pairs = rule_cells(point, rules, seeds, seed_pairs=seed_pairs)
        boot_cells, _, _ = rule_cells(boot, rules, seeds, seed_pairs=seed_pairs)
        low = high = np.full(cells.shape, np.nan)
        if len(boot):
            with warnings.catch_warnings():           # cells without pairs are NaN in every draw
                warnings.simplefilter("ignore", RuntimeWarning)
                low, high = np.nanpercentile(boot_cells, [low_q, high_q], axis=0)
        for a, rule_a in enumerate(rule_names):
            for b, rule_b in enumerate(rule_names):
                rows.append({"arch": arch, "objective": objective, "layer": layer, "epoch": epoch,
                             "time": time, "rule_a": rule_a, "rule_b": rule_b,
                             "similarity": cells[a, b], "ci_low": low[a, b], "ci_high": high[a, b],
                             "n_pairs": int(n_pairs[a, b]), "seed_pairs": seed_pairs,
                             "n_boot": n_boot, "ci": ci,
                             "metric": metric, "compare": compare, "n_stimuli": n})
    log.info("rule_similarity: %d (arch, objective, layer, epoch) groups of %d models, %d draws",
             len(groups), len(names), n_boot)
    return pd.DataFrame(rows)
