"""Time-resolved consistency (spec §4.2): scores per unit and 10-ms bin, ceilings per bin.

A time-resolved NeuralAssembly (dim time_bin, `pipeline.data.assembly`) is scored with two
kinds of map from a source (pooled other animals, or a model layer given time by
`pipeline.compare.model_time`) to each target unit:

- ``per_bin`` (the thesis' temporally varying map): a separate map per bin, PLS(25) in the
  thesis. Each bin is one time-averaged problem, scored by the engine itself
  (`pipeline.compare.consistency`), so every estimator, missing-data rule and speed-up of the
  engine applies unchanged, bin by bin.
- ``fixed`` (the temporally fixed map, spec eq. 2.13): one linear map per unit shared by all
  bins, fit on the training stimuli of every bin stacked as rows, so the "artificial neuron"
  keeps its identity over time. The thesis fits a spatially factored readout by SGD; here the
  map is the closed-form ridge (or PLS) of the engine's mappings on the stacked rows.

Both are noise-corrected per unit and bin with the §1.2 estimator (`score`, `score_full`,
`score_thesis` and their parts, as in the engine's tables), on the same trial split-halves and
stimulus splits as the engine draws for the same seed. `phase_medians` gives the early- and
late-phase medians (spec §4.2: 130–140 and 200–210 ms, configurable) and `bin_medians` the
median over units per bin, for the ceiling band over time (`pipeline.compare.temporal_summary`).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from tqdm import tqdm

from pipeline.compare.ceilings import brainscore_ceiled
from pipeline.compare.consistency import _align_stimuli, interanimal, predictivity
from pipeline.compare.epochs import select_epochs
from pipeline.compare.mappings import PLSMap, RidgeMap, pearson
from pipeline.compare.scoring import PER_HALF, QUANTITIES, half_quantities
from pipeline.compare.splits import inner_splits, stimulus_splits
from pipeline.compare.tasks import animal_groups
from pipeline.data.assembly import validate_assembly
from pipeline.data.reliability import trial_halves

log = logging.getLogger(__name__)

TEMPORAL_MAPS = ("per_bin", "fixed")
FIXED_MAPPINGS = {"ridge": lambda alpha, n_components: RidgeMap(alpha),
                  "pls": lambda alpha, n_components: PLSMap(n_components)}


def check_time_resolved(assembly, label):
    """The assembly, validated and with a time_bin dim; ValueError naming `label` otherwise."""
    validate_assembly(assembly, label)
    if "time_bin" not in assembly.dims:
        raise ValueError(f"{label}: temporal scores need a time-resolved assembly (dim time_bin; "
                         f"datasets.<name>.assemble.time_bins: keep); found dims {tuple(assembly.dims)}")
    return assembly.transpose("stimulus", "trial", "time_bin", "neuroid")


def _check(maps, mappings):
    unknown = [m for m in maps if m not in TEMPORAL_MAPS]
    if unknown:
        raise ValueError(f"temporal maps must be among {TEMPORAL_MAPS}; got {unknown}")
    if "fixed" in maps:
        bad = [m for m in mappings if m not in FIXED_MAPPINGS]
        if bad:
            raise ValueError(f"the temporally fixed map takes mappings {sorted(FIXED_MAPPINGS)}; "
                             f"got {bad}")


def _bin_labels(assembly, b):
    start = float(assembly["time_bin"].values[b])
    end = (float(assembly["time_bin_end"].values[b]) if "time_bin_end" in assembly.coords
           else np.nan)
    return start, end


def _one_bin(assembly, b):
    """The (stimulus, trial, neuroid) assembly of bin `b` (its time coords dropped)."""
    single = assembly.isel(time_bin=b)
    return single.drop_vars([n for n, c in single.coords.items()
                             if n == "time_bin" or "time_bin" in c.dims or n == "time_bin_end"])


def _per_bin(score_bin, assembly, desc):
    """Concatenated frames of `score_bin(bin assembly)`, labelled with the bin."""
    frames = []
    for b in tqdm(range(assembly.sizes["time_bin"]), desc=desc, unit="bin", disable=None):
        frame = score_bin(_one_bin(assembly, b), b)
        if frame is None:
            continue
        start, end = _bin_labels(assembly, b)
        frame.insert(0, "time_bin", start)
        frame.insert(1, "time_bin_end", end)
        frames.append(frame)
    return frames


# ---------------------------------------------------------------- the temporally fixed map

def _half_means(R, halves):
    """Nan-means over all trials and each trial half: (stimulus, bin, unit) and 2 × (half, …)."""
    valid = ~np.isnan(R)
    R0 = np.where(valid, R, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = R0.sum(1) / valid.sum(1)
        masks = np.zeros((2, len(halves), R.shape[1]))
        for h, (first, second) in enumerate(halves):
            masks[0, h, first] = 1.0
            masks[1, h, second] = 1.0
        B = (np.tensordot(masks, R0, axes=([2], [1]))
             / np.tensordot(masks, valid.astype(np.float64), axes=([2], [1])))
    return mean, B[0], B[1]


def _stacked_predictions(mapping, X, Y, train, test):
    """One map fit on the training stimuli of every bin stacked; predictions per test bin.

    X (stimulus, bin, feature), Y (stimulus, bin, unit) → (test, bin, unit).
    """
    n_bins = X.shape[1]
    fitted = clone(mapping).fit(X[train].reshape(-1, X.shape[2]), Y[train].reshape(-1, Y.shape[2]))
    return fitted.predict(X[test].reshape(-1, X.shape[2])).reshape(test.size, n_bins, -1)


def fixed_scores(mapping, source, target, splits):
    """Per (split, bin, unit) quantities of a temporally fixed map (spec eq. 2.13, §1.2).

    Parameters
    ----------
    mapping : RidgeMap or PLSMap
        Fit once per split and trial half on the stacked (training stimulus, bin) rows.
    source : tuple of ndarray
        (mean, half1, half2): all-trial means (stimulus, bin, feature) and the two trial-half
        means (half, stimulus, bin, feature); a model gives its features for all three
        (half axis of length 1, broadcast).
    target : tuple of ndarray
        The same for the target's units (stimulus, bin, unit); halves (half, stimulus, bin,
        unit), or None for raw r only.
    splits : list of (ndarray, ndarray)
        Train/test stimulus splits.

    Returns
    -------
    dict of str to ndarray
        `QUANTITIES` and ``defined``, each (split, bin, unit): nan-means over the split-halves,
        as the engine's rows (``defined``: the score was defined in every split-half).
    """
    A_bar, A1, A2 = source
    B_bar, B1, B2 = target
    out = {q: [] for q in QUANTITIES + ("defined",)}
    for train, test in splits:
        r_full = pearson(_stacked_predictions(mapping, A_bar, B_bar, train, test), B_bar[test], axis=0)
        if B1 is None:
            values = {q: np.full(r_full.shape, np.nan) for q in QUANTITIES}
            values["r_full"], values["defined"] = r_full, np.zeros(r_full.shape, bool)
        else:
            halves = []
            for h in range(B1.shape[0]):
                a = h if A1.shape[0] > 1 else 0
                p1 = _stacked_predictions(mapping, A1[a], B1[h], train, test)
                p2 = _stacked_predictions(mapping, A2[a], B2[h], train, test)
                halves.append(half_quantities(pearson(p1, B2[h][test], axis=0), pearson(p1, p2, axis=0),
                                              pearson(B1[h][test], B2[h][test], axis=0), r_full))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)         # a unit undefined in every half
                values = {q: np.nanmean([v[q] for v in halves], axis=0) for q in PER_HALF}
            values["defined"] = np.all([np.isfinite(v["score"]) for v in halves], axis=0)
            values["r_full"] = r_full
            values["score_brainscore"] = brainscore_ceiled(r_full, values["ceiling_brainscore"])
        for q in out:
            out[q].append(values[q])
    return {q: np.stack(v) for q, v in out.items()}


def _fixed_frame(values, labels, ids, starts, ends, mapping, stage):
    """Tidy rows (bin, split, unit) of `fixed_scores` arrays (split, bin, unit)."""
    n_splits, n_bins, n_units = values["r"].shape
    index = np.indices((n_splits, n_bins, n_units)).reshape(3, -1)
    frame = pd.DataFrame({"time_bin": starts[index[1]], "time_bin_end": ends[index[1]], **labels,
                          "neuroid_id": ids[index[2]], "mapping": mapping, "split": index[0],
                          "stage": stage, **{q: values[q].ravel() for q in QUANTITIES},
                          "defined": values["defined"].ravel()})
    return frame


def _targets(R, halves, label):
    """Half means of a target's (stimulus, trial, bin, unit) responses; ValueError on a gap."""
    if halves is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean, half1, half2 = np.nanmean(R, axis=1), None, None
    else:
        mean, half1, half2 = _half_means(R, halves)
    missing = np.isnan(mean).any() or (half1 is not None and (np.isnan(half1).any() or np.isnan(half2).any()))
    if missing:
        raise ValueError(f"{label}: the temporally fixed map needs a value for every stimulus, bin and unit in "
                         f"all trials and both trial halves; {int(np.isnan(mean).sum())} (stimulus, bin, unit) "
                         "cells have no valid trial. Use the per-bin map, which scores each unit on the "
                         "stimuli it has.")
    return mean, half1, half2


def _time_coords(assembly):
    starts = assembly["time_bin"].values.astype(float)
    ends = (assembly["time_bin_end"].values.astype(float) if "time_bin_end" in assembly.coords
            else np.full(starts.size, np.nan))
    return starts, ends


# ---------------------------------------------------------------- inter-animal ceilings per bin

def temporal_interanimal(assembly, *, maps=TEMPORAL_MAPS, mappings=("ridge",), n_halves=20, n_splits=5,
                         train_frac=0.5, seed=0, alpha=1.0, n_components=25, mode="pooled",
                         scheduler=None, n_workers=1):
    """Inter-animal consistency per unit and bin: the ceilings over time (spec §4.2, Fig. 2.12b).

    Parameters
    ----------
    assembly : xarray.DataArray
        Time-resolved NeuralAssembly (stimulus, trial, time_bin, neuroid).
    maps : sequence of {"per_bin", "fixed"}
        Temporal map kinds (module docstring).
    mappings : sequence of str
        Per bin: any of the engine's fitted mappings; fixed: "ridge" or "pls".
    n_halves, n_splits, train_frac, seed, alpha, n_components, mode, scheduler, n_workers
        As for `pipeline.compare.consistency.interanimal` (the fixed map uses the pooled source).

    Returns
    -------
    pandas.DataFrame
        The engine's columns plus time_bin, time_bin_end (s) and temporal (the map kind); one
        row per (temporal, mapping, bin, neuroid, split).
    """
    _check(maps, mappings)
    assembly = check_time_resolved(assembly, "temporal_interanimal assembly")
    frames = []
    if "per_bin" in maps:
        def score_bin(single, b):
            return interanimal(single, mappings=mappings, n_halves=n_halves, n_splits=n_splits,
                               train_frac=train_frac, seed=seed, alpha=alpha, n_components=n_components,
                               mode=mode, scheduler=scheduler, n_workers=n_workers)
        frames += [f.assign(temporal="per_bin") for f in _per_bin(score_bin, assembly, "interanimal per bin")]
    if "fixed" in maps:
        frames.append(_fixed_interanimal(assembly, mappings, n_halves, n_splits, train_frac, seed, alpha,
                                         n_components))
    out = pd.concat(frames, ignore_index=True)
    if "stage" in out.columns:
        out = out.drop(columns="stage")
    return out


def _fixed_interanimal(assembly, mappings, n_halves, n_splits, train_frac, seed, alpha, n_components):
    """Pooled-source inter-animal rows of the temporally fixed map."""
    R = assembly.values.astype(np.float64)
    halves = trial_halves(R.shape[1], n_halves, seed) if R.shape[1] >= 2 else None
    splits = stimulus_splits(R.shape[0], n_splits, train_frac, seed)
    groups = animal_groups(assembly)
    ids = assembly["neuroid_id"].values.astype(str)
    starts, ends = _time_coords(assembly)
    means = {key: _targets(R[..., idx], halves, f"{key[0]}/{key[1]}") for key, idx in groups.items()}
    frames = []
    for (area, animal), idx in tqdm(groups.items(), desc="interanimal fixed map", unit="animal", disable=None):
        others = [key for key in groups if key[0] == area and key != (area, animal)]
        if not others:
            log.warning("temporal_interanimal: area %s has one animal; no fixed-map ceiling", area)
            continue
        source = tuple(None if means[others[0]][k] is None else
                       np.concatenate([means[o][k] for o in others], axis=-1) for k in range(3))
        for name in mappings:
            values = fixed_scores(FIXED_MAPPINGS[name](alpha, n_components), source, means[area, animal], splits)
            labels = {"area": area, "animal": animal, "source": "pooled"}
            frame = _fixed_frame(values, labels, ids[idx], starts, ends, name, "test")
            frame["n_source_units"] = source[0].shape[-1]
            frames.append(frame)
    out = pd.concat(frames, ignore_index=True).drop(columns="stage")
    out["mode"], out["noise_corrected"], out["temporal"] = "pooled", halves is not None, "fixed"
    return out


# ---------------------------------------------------------------- model predictivity per bin

def temporal_predictivity(sources, assembly, *, maps=TEMPORAL_MAPS, mappings=("ridge",), n_halves=20,
                          n_splits=5, train_frac=0.5, seed=0, alpha=1.0, n_components=25,
                          select_layers=True, scheduler=None, n_workers=1):
    """Model predictivity per unit and bin, per target animal (spec §4.2, eq. 2.14).

    Parameters
    ----------
    sources : dict of int to xarray.Dataset
        Bin index → the model's sources at that bin, one variable per layer (or pseudo-layer),
        dims (epoch, stimulus, unit...), one epoch (`pipeline.compare.model_time.bin_sources`).
        Bins without an entry (before the model's first step) are not scored.
    assembly : xarray.DataArray
        Time-resolved NeuralAssembly.
    maps, mappings, n_halves, n_splits, train_frac, seed, alpha, n_components
        As for `temporal_interanimal`.
    select_layers : bool
        Also score on validation splits inside each split's training stimuli (rows with stage
        "select"), so `pipeline.compare.temporal_summary` can choose layers without test data.
    scheduler, n_workers
        As for the engine.

    Returns
    -------
    pandas.DataFrame
        The engine's predictivity columns plus time_bin, time_bin_end and temporal.
    """
    _check(maps, mappings)
    assembly = check_time_resolved(assembly, "temporal_predictivity assembly")
    if not sources:
        raise ValueError("temporal_predictivity: no bin has a model source (check the time mapping's "
                         "offset against the assembly's bins)")
    frames = []
    if "per_bin" in maps:
        def score_bin(single, b):
            if b not in sources:
                return None
            return predictivity(sources[b], single, mappings=mappings, n_halves=n_halves, n_splits=n_splits,
                                train_frac=train_frac, seed=seed, alpha=alpha, n_components=n_components,
                                select_layers=select_layers, epochs="all", scheduler=scheduler,
                                n_workers=n_workers)
        frames += [f.assign(temporal="per_bin") for f in _per_bin(score_bin, assembly, "predictivity per bin")]
    if "fixed" in maps:
        frames.append(_fixed_predictivity(sources, assembly, mappings, n_halves, n_splits, train_frac, seed,
                                          alpha, n_components, select_layers))
    frames = [f for f in frames if f is not None]
    if not frames:
        raise ValueError("temporal_predictivity: nothing to score (the fixed map needs a layer with the same "
                         "units in every bin; `uniform` changes layers between bins)")
    # A source is one (layer, step) per bin: the engine's `time` column (step 0 of each static
    # source) says nothing here; which step fed a bin is the time mapping's (model_time).
    return pd.concat(frames, ignore_index=True).drop(columns="time", errors="ignore")


def _stacked_features(sources, bins, layer, order):
    """(stimulus, bin, feature) features of one layer over the scored bins, in assembly order."""
    parts = []
    for b in bins:
        var = select_epochs(sources[b], "final")[layer]
        parts.append(var.isel(epoch=0).values.reshape(var.sizes["stimulus"], -1)[order])
    return np.stack(parts, axis=1).astype(np.float64)


def _fixed_predictivity(sources, assembly, mappings, n_halves, n_splits, train_frac, seed, alpha, n_components,
                        select_layers):
    """Per target animal rows of the temporally fixed map for every layer shared by the scored bins."""
    bins = sorted(sources)
    layers = [name for name in sources[bins[0]].data_vars if all(name in sources[b] for b in bins)]
    sub = assembly.isel(time_bin=bins)
    R = sub.values.astype(np.float64)
    halves = trial_halves(R.shape[1], n_halves, seed) if R.shape[1] >= 2 else None
    splits = stimulus_splits(R.shape[0], n_splits, train_frac, seed)
    stages = [("test", splits)] + ([("select", inner_splits(splits, train_frac, seed))] if select_layers else [])
    groups = animal_groups(sub)
    ids = sub["neuroid_id"].values.astype(str)
    starts, ends = _time_coords(sub)
    order = _align_stimuli(sources[bins[0]], sub)
    epoch = int(select_epochs(sources[bins[0]], "final")["epoch"].values[0])
    targets = {key: _targets(R[..., idx], halves, f"{key[0]}/{key[1]}") for key, idx in groups.items()}
    frames = []
    for layer in tqdm(layers, desc="predictivity fixed map", unit="layer", disable=None):
        widths = {int(np.prod([sources[b][layer].sizes[d] for d in sources[b][layer].dims
                               if d not in ("epoch", "stimulus")])) for b in bins}
        if len(widths) > 1:
            # Different units in different bins (e.g. `uniform` layers): no unit keeps its identity
            # over time, so a map shared by the bins is undefined.
            log.info("fixed map: %s has %s units across bins; not scored", layer, sorted(widths))
            continue
        X = _stacked_features(sources, bins, layer, order)
        if not np.isfinite(X).all():
            raise ValueError(f"activations {layer!r}: features contain NaN or inf; expected finite values")
        source = (X, X[None], X[None])
        for (area, animal), idx in groups.items():
            labels = {"area": area, "animal": animal, "source": str(layer), "layer": str(layer),
                      "epoch": epoch}
            for name in mappings:
                for stage, stage_splits in stages:
                    values = fixed_scores(FIXED_MAPPINGS[name](alpha, n_components), source, targets[area, animal],
                                          stage_splits)
                    frame = _fixed_frame(values, labels, ids[idx], starts, ends, name, stage)
                    frame["n_source_units"] = X.shape[2]
                    frames.append(frame)
    if not frames:
        return None
    out = pd.concat(frames, ignore_index=True)
    out["mode"], out["noise_corrected"], out["temporal"] = "model", halves is not None, "fixed"
    return out
