"""Noise-corrected consistency: inter-animal ceilings and model predictivity (spec §1).

Per target unit, split-half h (trial halves 1, 2) and train/test split s, with a map F fit on
the training stimuli (DESIGN "The central metric"):

    p1 = F(A1_train -> B1_train)(A1_test),  p2 = F(A2_train -> B2_train)(A2_test)
    r = corr(p1, B2_test),  r_mapping = corr(p1, p2),  r_target = corr(B1_test, B2_test)
    score        = r / sqrt(r_mapping · r_target)
    score_thesis = r / sqrt(SB(r_mapping) · SB(r_target))
    score_full   = corr(F(Abar_train -> Bbar_train)(Abar_test), Bbar_test) / sqrt(SB(r_mapping) · SB(r_target))

(bar = mean over all trials). All three are NaN where r_mapping or r_target is <= 0. Every
quantity is computed per (h, s) and nan-averaged over h, giving one row per (unit, split).

Speed (DESIGN "Scale"): the fitted maps work on stimulus × stimulus kernels. A pooled source's
kernel is the sum of its animals' kernels, so each animal's half-split kernels are computed once
per area and the target's own are subtracted; a model layer has one kernel for every
split-half. Fits are batched over split-halves and splits, with all target units in one solve.
"""

from __future__ import annotations

import logging

import dask
import numpy as np
import pandas as pd

from pipeline.compare.mappings import MAPPINGS, center_kernel, compare_rdms, pearson, rdm_from_gram
from pipeline.compare.parallel import compute
from pipeline.compare.splits import stimulus_splits, trial_halves
from pipeline.data.assembly import validate_assembly

log = logging.getLogger(__name__)

QUANTITIES = ("r", "r_mapping", "r_target", "score", "score_full", "score_thesis")
SCORES = ("score", "score_full", "score_thesis")
_FITS_PER_CALL = 1024         # fits per batched mapping call: bounds memory, amortises overhead
_FEATURE_CHUNK = 8192         # model units converted to float64 at a time


def spearman_brown(r, n=2):
    """Reliability of the mean of n parallel halves, from the correlation r of one pair.

    Spec §1: SB(r) = n·r / (1 + (n-1)·r). Negative r is kept, not clipped.
    """
    return n * r / (1 + (n - 1) * r)


def corrected_scores(r, r_mapping, r_target, r_full):
    """The three noise-corrected scores from their correlation terms (arrays broadcast).

    SB enters only the denominators (spec §1.2). NaN where r_mapping or r_target <= 0.

    Returns
    -------
    score, score_full, score_thesis : ndarray
    """
    valid = (r_mapping > 0) & (r_target > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sb = np.sqrt(spearman_brown(r_mapping) * spearman_brown(r_target))
        score = np.where(valid, r / np.sqrt(r_mapping * r_target), np.nan)
        score_full = np.where(valid, r_full / sb, np.nan)
        score_thesis = np.where(valid, r / sb, np.nan)
    return score, score_full, score_thesis


# ---------------------------------------------------------------- populations and sources

def _population(R, halves, label):
    """Half-trial and all-trial nan-means of one population, with their kernel statistics.

    Parameters
    ----------
    R : ndarray, shape (stimulus, trial, unit)
        Responses, NaN for missing trials.
    halves : list of (ndarray, ndarray)
        From `trial_halves`.
    label : str
        Names the population in log messages.

    Returns
    -------
    dict
        B1, B2 (half, stimulus, unit); Bbar (stimulus, unit); kernels G1, G2 (half, stimulus,
        stimulus), Gbar; unit sums s1, s2 (half, stimulus), sbar; unit count p.
    """
    R = np.asarray(R, dtype=np.float64)
    valid = ~np.isnan(R)
    R0 = np.where(valid, R, 0.0)
    masks = np.zeros((2, len(halves), R.shape[1]))
    for h, (first, second) in enumerate(halves):
        masks[0, h, first] = 1.0
        masks[1, h, second] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        B = np.tensordot(masks, R0, axes=([2], [1])) / np.tensordot(masks, valid.astype(float), axes=([2], [1]))
        Bbar = R0.sum(1) / valid.sum(1)
    n_empty = int(np.isnan(B).any(axis=(0, 1)).sum())
    if n_empty:
        log.warning("%s: %d units have a stimulus with no valid trial in some split-half; "
                    "their correlations are NaN", label, n_empty)
    pop = {"B1": B[0], "B2": B[1], "Bbar": Bbar, "p": R.shape[2]}
    for key, X in (("1", B[0]), ("2", B[1]), ("bar", Bbar)):
        pop["G" + key] = X @ np.swapaxes(X, -1, -2)
        pop["s" + key] = X.sum(-1)
    return pop


_SOURCE_KEYS = ("G1", "G2", "Gbar", "s1", "s2", "sbar", "p")


def _pool(populations):
    """Kernel statistics of the concatenation of several populations (sums over animals)."""
    return {key: sum(pop[key] for pop in populations) for key in _SOURCE_KEYS}


def _features(layer, epoch_index, order):
    """Kernel statistics of one model layer at one epoch: A1 = A2 = Abar = features.

    Parameters
    ----------
    layer : xarray.DataArray, dims (epoch, stimulus, unit...)
    epoch_index : int
    order : ndarray of int
        Positions along `stimulus` of the assembly's stimuli.
    """
    X = layer.isel(epoch=epoch_index).transpose("stimulus", ...).values[order].reshape(len(order), -1)
    G = np.zeros((len(order), len(order)))
    s = np.zeros(len(order))
    for start in range(0, X.shape[1], _FEATURE_CHUNK):
        chunk = X[:, start:start + _FEATURE_CHUNK].astype(np.float64)
        if not np.isfinite(chunk).all():
            raise ValueError(f"activations {layer.name!r} epoch index {epoch_index}: features "
                             "contain NaN or inf; expected finite values.")
        G += chunk @ chunk.T
        s += chunk.sum(1)
    return {"G1": G, "G2": G, "Gbar": G, "s1": s, "s2": s, "sbar": s, "p": X.shape[1]}


# ---------------------------------------------------------------- scoring one target

def _split_kernels(G, splits):
    """Centred kernels for every split, stacked on a new axis -3."""
    parts = [center_kernel(G, train, test) for train, test in splits]
    return np.stack([k for k, _ in parts], -3), np.stack([k for _, k in parts], -3)


def _predict_groups(mapping, groups, n_features):
    """Test predictions for several groups of fits in one batched call of the mapping.

    Each group is (K_train, K_test, Y_train) with leading axes that broadcast; one call
    amortises the per-call overhead of the PLS power iterations over every fit.
    """
    shapes, flat = [], []
    for arrays in groups:
        batch = np.broadcast_shapes(*(a.shape[:-2] for a in arrays))
        shapes.append(batch)
        flat.append([np.broadcast_to(a, batch + a.shape[-2:]).reshape((-1,) + a.shape[-2:]) for a in arrays])
    predictions = mapping.predict_from_kernel(*(np.concatenate(parts) for parts in zip(*flat)), n_features)
    ends = np.cumsum([int(np.prod(batch)) for batch in shapes])
    return [block.reshape(batch + predictions.shape[-2:])
            for block, batch in zip(np.split(predictions, ends[:-1]), shapes)]


def _score_fitted(mapping, source, target, splits):
    """Per-unit quantities of one fitted mapping, nan-averaged over split-halves.

    Returns
    -------
    dict of ndarray, shape (split, unit), keyed by `QUANTITIES`.
    """
    train = np.stack([tr for tr, _ in splits])
    test = np.stack([te for _, te in splits])
    n_splits, n_halves = len(splits), target["B1"].shape[0]
    p = source["p"]

    Kbar_train, Kbar_test = _split_kernels(source["Gbar"], splits)
    Bbar = target["Bbar"]
    r_full = None
    shared = source["G1"].ndim == 2                  # a model: one kernel for all halves
    sums = {q: 0.0 for q in QUANTITIES}
    counts = {q: 0 for q in QUANTITIES}
    chunk = max(1, _FITS_PER_CALL // (2 * n_splits))
    for start in range(0, n_halves, chunk):
        halves = slice(start, start + chunk)
        Y = np.stack([target["B1"][halves], target["B2"][halves]])      # (2, h, stimulus, unit)
        if shared:
            K_train, K_test = Kbar_train, Kbar_test
        else:
            K_train, K_test = _split_kernels(np.stack([source["G1"][halves], source["G2"][halves]]), splits)
        groups = [(K_train, K_test, Y[:, :, train])]
        if r_full is None:                           # the all-trial maps join the first batch
            groups.append((Kbar_train, Kbar_test, Bbar[train]))
        predictions = _predict_groups(mapping, groups, p)
        if r_full is None:
            r_full = pearson(predictions[1], Bbar[test], axis=-2)        # (split, unit)
        p1, p2 = predictions[0]
        B1_test, B2_test = Y[0][:, test], Y[1][:, test]                  # (h, split, test, unit)
        r = pearson(p1, B2_test, axis=-2)
        r_mapping = pearson(p1, p2, axis=-2)
        r_target = pearson(B1_test, B2_test, axis=-2)
        values = dict(zip(QUANTITIES, (r, r_mapping, r_target,
                                       *corrected_scores(r, r_mapping, r_target, r_full))))
        for q, v in values.items():
            sums[q] = sums[q] + np.nansum(v, axis=0)
            counts[q] = counts[q] + np.isfinite(v).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {q: sums[q] / counts[q] for q in QUANTITIES}


def _score_rsa(source, target):
    """RSA quantities for one target population, nan-averaged over split-halves (one value each).

    r = compare(RDM(A1), RDM(B2)), r_mapping = compare(RDM(A1), RDM(A2)),
    r_target = compare(RDM(B1), RDM(B2)); score_full uses RDM(Abar) vs RDM(Bbar).
    All stimuli are used (spec §1.5).
    """
    rdms = {}
    for name, pop in (("A", source), ("B", target)):
        for key in ("1", "2", "bar"):
            rdms[name + key] = rdm_from_gram(pop["G" + key], pop["s" + key], pop["p"])
    r = compare_rdms(rdms["A1"], rdms["B2"])
    r_mapping = compare_rdms(rdms["A1"], rdms["A2"]) * np.ones_like(r)
    r_target = compare_rdms(rdms["B1"], rdms["B2"])
    r_full = compare_rdms(rdms["Abar"], rdms["Bbar"])
    values = dict(zip(QUANTITIES, (r, r_mapping, r_target,
                                   *corrected_scores(r, r_mapping, r_target, r_full))))
    with np.errstate(invalid="ignore"):
        return {q: np.array([[np.nan if np.isnan(v).all() else np.nanmean(v)]]) for q, v in values.items()}


def _score_target(source, target, mappings, splits, labels, neuroid_ids):
    """All mappings for one (source, target population) pair, as a tidy frame."""
    frames = []
    for name, mapping in mappings.items():
        if name == "rsa":
            values, ids = _score_rsa(source, target), np.array([""])
        else:
            values, ids = _score_fitted(mapping, source, target, splits), neuroid_ids
        n_splits, n_units = values["r"].shape
        frame = pd.DataFrame({
            **labels,
            "neuroid_id": np.tile(ids, n_splits),
            "mapping": name,
            "split": np.repeat(np.arange(n_splits), n_units),
            **{q: values[q].ravel() for q in QUANTITIES},
        })
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _interanimal_target(own, pooled, mappings, splits, labels, neuroid_ids):
    """Pooled-source scores for one held-out animal: the source is the area less the animal."""
    source = {key: pooled[key] - own[key] for key in _SOURCE_KEYS}
    return _score_target(source, own, mappings, splits, labels, neuroid_ids)


# ---------------------------------------------------------------- public API

def _build_mappings(names, alpha, n_components):
    unknown = [name for name in names if name not in MAPPINGS and name != "rsa"]
    if unknown:
        raise ValueError(f"unknown mappings {unknown}; expected names from {sorted(MAPPINGS) + ['rsa']}.")
    params = {"ridge": {"alpha": alpha}, "pls": {"n_components": n_components}}
    return {name: None if name == "rsa" else MAPPINGS[name](**params[name]) for name in names}


def _responses(assembly, source):
    """Assembly as a float64 (stimulus, trial, neuroid) array, after validation."""
    validate_assembly(assembly, source)
    if "time_bin" in assembly.dims:
        raise ValueError(f"{source}: consistency needs responses averaged over time_bin; "
                         f"found dims {tuple(assembly.dims)}.")
    return assembly.transpose("stimulus", "trial", "neuroid").values.astype(np.float64)


def _groups(assembly):
    """Neuroid positions per (area, animal), in order of first appearance."""
    keys = pd.DataFrame({"area": assembly["area"].values.astype(str),
                         "animal": assembly["animal"].values.astype(str)})
    return {key: np.asarray(idx) for key, idx in keys.groupby(["area", "animal"], sort=False).indices.items()}


def _columns(extra=()):
    return ["area", "animal", "neuroid_id", "mapping", "split", *extra, *QUANTITIES]


def interanimal(assembly, *, mappings=("ridge", "pls", "rsa"), n_halves=20, n_splits=5,
                train_frac=0.5, seed=0, alpha=1.0, n_components=25, scheduler=None, n_workers=1):
    """Inter-animal consistency with a pooled source (spec §1.3 "holdout" mode).

    For every area and held-out target animal, the source is the concatenation of all other
    animals' units in that area. Areas with a single animal are skipped (logged).

    Parameters
    ----------
    assembly : xarray.DataArray
        NeuralAssembly, dims (stimulus, trial, neuroid), coords neuroid_id, animal, area;
        NaN trials are left out of the means.
    mappings : sequence of str
        Names from `MAPPINGS` and "rsa".
    n_halves, n_splits : int
        Trial split-halves and train/test stimulus splits.
    train_frac : float
        Fraction of stimuli used to fit.
    seed : int
        Seed of the split-halves and of the first stimulus split.
    alpha : float
        Ridge penalty.
    n_components : int
        PLS components (clipped to what the data support, logged).
    scheduler : None or str
        None: a local scheduler with `n_workers` workers (threads for one, processes for
        more); "threads", "processes" or "synchronous" pick a local scheduler. Any other
        string is the address of a dask.distributed scheduler.
    n_workers : int
        Local workers.

    Returns
    -------
    pandas.DataFrame
        Columns area, animal, neuroid_id, mapping, split, r, r_mapping, r_target, score,
        score_full, score_thesis; one row per (mapping, neuroid, split), RSA one per animal
        with split 0 and neuroid_id "".
    """
    maps = _build_mappings(mappings, alpha, n_components)
    R = _responses(assembly, "interanimal assembly")
    halves = trial_halves(R.shape[1], n_halves, seed)
    splits = stimulus_splits(R.shape[0], n_splits, train_frac, seed)
    neuroid_ids = assembly["neuroid_id"].values.astype(str)
    groups = _groups(assembly)
    tasks = []
    for area in dict.fromkeys(area for area, _ in groups):
        animals = [animal for a, animal in groups if a == area]
        if len(animals) < 2:
            log.warning("interanimal: area %s has %d animal(s); skipped (needs at least 2)", area, len(animals))
            continue
        pops = {animal: dask.delayed(_population)(R[:, :, groups[area, animal]], halves, f"{area}/{animal}")
                for animal in animals}
        pooled = dask.delayed(_pool)(list(pops.values()))
        for animal in animals:
            tasks.append(dask.delayed(_interanimal_target)(
                pops[animal], pooled, maps, splits, {"area": area, "animal": animal},
                neuroid_ids[groups[area, animal]]))
    log.info("interanimal: %d target animals, %d neuroids, %d stimuli; mappings %s; "
             "%d split-halves x %d splits (train_frac %g, seed %d)", len(tasks), R.shape[2], R.shape[0],
             list(maps), n_halves, n_splits, train_frac, seed)
    frames = compute(tasks, scheduler, n_workers, "interanimal")
    if not frames:
        return pd.DataFrame(columns=_columns())
    return pd.concat(frames, ignore_index=True)[_columns()]


def _align_stimuli(activations, assembly):
    """Positions in `activations` of the assembly's stimuli; ValueError naming missing ids."""
    if "stimulus_id" not in activations.coords:
        raise ValueError(f"activations have no 'stimulus_id' coord; found coords {sorted(activations.coords)}.")
    have = pd.Index(activations["stimulus_id"].values.astype(str))
    if have.has_duplicates:
        raise ValueError(f"activations: stimulus_id has {int(have.duplicated().sum())} duplicate values.")
    want = assembly["stimulus_id"].values.astype(str)
    order = have.get_indexer(want)
    missing = want[order < 0]
    if missing.size:
        raise ValueError(
            f"activations lack {missing.size} of the assembly's {want.size} stimulus_id values "
            f"(missing: {', '.join(repr(str(m)) for m in missing[:10])}{', ...' if missing.size > 10 else ''}); "
            "both must cover the same stimulus set.")
    return order


def predictivity(activations, assembly, *, mappings=("ridge", "pls", "rsa"), n_halves=20, n_splits=5,
                 train_frac=0.5, seed=0, alpha=1.0, n_components=25, scheduler=None, n_workers=1):
    """Neural predictivity of every model layer and epoch, mapped per target animal (spec §1.3).

    The model source is deterministic (A1 = A2 = Abar = features), so the RSA mapping term
    is 1. Features are used raw (no z-scoring), in float64.

    Parameters
    ----------
    activations : xarray.Dataset
        One data var per layer, dims (epoch, stimulus, unit...), coord stimulus_id on stimulus.
        Stimuli are matched to the assembly's by stimulus_id; extra ones are ignored.
    assembly : xarray.DataArray
        NeuralAssembly, as for `interanimal`.
    mappings, n_halves, n_splits, train_frac, seed, alpha, n_components, scheduler, n_workers
        As for `interanimal`.

    Returns
    -------
    pandas.DataFrame
        The `interanimal` columns plus layer and epoch; one row per (layer, epoch, mapping,
        neuroid, split), RSA one per (layer, epoch, animal).
    """
    maps = _build_mappings(mappings, alpha, n_components)
    order = _align_stimuli(activations, assembly)
    R = _responses(assembly, "predictivity assembly")
    halves = trial_halves(R.shape[1], n_halves, seed)
    splits = stimulus_splits(R.shape[0], n_splits, train_frac, seed)
    neuroid_ids = assembly["neuroid_id"].values.astype(str)
    groups = _groups(assembly)
    pops = {key: dask.delayed(_population)(R[:, :, idx], halves, "/".join(key)) for key, idx in groups.items()}
    epochs = activations["epoch"].values if "epoch" in activations.coords else np.arange(activations.sizes["epoch"])
    tasks = []
    for layer in activations.data_vars:
        for e, epoch in enumerate(epochs):
            features = dask.delayed(_features)(activations[layer], e, order)
            for (area, animal), idx in groups.items():
                labels = {"area": area, "animal": animal, "layer": layer, "epoch": int(epoch)}
                tasks.append(dask.delayed(_score_target)(features, pops[area, animal], maps, splits,
                                                         labels, neuroid_ids[idx]))
    log.info("predictivity: %d layers x %d epochs x %d target (area, animal) populations, %d neuroids, "
             "%d stimuli; mappings %s; %d split-halves x %d splits (train_frac %g, seed %d)",
             len(activations.data_vars), len(epochs), len(groups), R.shape[2], R.shape[0], list(maps),
             n_halves, n_splits, train_frac, seed)
    frames = compute(tasks, scheduler, n_workers, "predictivity")
    columns = _columns(("layer", "epoch"))
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]
