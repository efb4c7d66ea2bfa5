"""Inter-animal consistency and model predictivity (spec §1): the engine's public entry points.

`interanimal` scores each animal of an area from the other animals (pooled source, spec
§1.3 "holdout") or from each other animal in turn (pairwise); `predictivity` scores every
model layer and epoch, mapped separately onto each target animal, and also on a validation
split inside each split's training stimuli so that `pipeline.compare.aggregate.best_layer`
can choose a layer without the test data; `pipeline.compare.curves.interanimal_curve` is
the inter-animal consistency against the number of stimuli. The estimator is in
`pipeline.compare.scoring`, the kernel statistics in `pipeline.compare.sources`, the task
grid in `pipeline.compare.tasks`.

Every job is a dask task over the grid (layer, epoch, area, target animal[, source animal],
chunk of splits); resamples are seeded, so a job's result does not depend on the scheduler
or the number of workers.

Missing data: NaN in the assembly marks missing trials. Every unit is scored on the stimuli
it has; a stimulus without a value in a source unit or in a target unit is dropped from that
fit only, a unit without any valid trial gives NaN rows and leaves every source, and a
stimulus no unit has is removed before the splits are drawn (`pipeline.compare.scoring`,
"Missing data", has the full rule; `pipeline.compare.tasks.prepare` logs what is missing,
and each drop is logged). One unit's NaN never reaches another unit's number, and data
without a missing cell is scored with the clean arithmetic, unchanged. ±inf in an assembly
is refused (`pipeline.data.assembly.validate_assembly`), and NaN or inf in activations too
(`pipeline.compare.sources.layer_sources`, naming the layer, epoch, stimulus and unit).
"""

from __future__ import annotations

import logging
import operator

import dask
import numpy as np
import pandas as pd

from pipeline.compare.epochs import select_epochs
from pipeline.compare.mappings import FEATURE_MAPPINGS
from pipeline.compare.tasks import (
    animal_groups,
    area_responses,
    finish,
    interanimal_tasks,
    prepare,
    rsa_ceilings,
    run,
    score_task,
    split_chunks,
)
from pipeline.compare.sources import layer_sources, population, source_positions
from pipeline.compare.splits import inner_splits, stimulus_splits

log = logging.getLogger(__name__)

def interanimal(assembly, *, mappings=("ridge", "pls", "rsa"), n_halves=20, n_splits=5, train_frac=0.5,
                seed=0, alpha=1.0, n_components=25, alphas=None, rsa_compare="pearson", mode="pooled",
                equalize_sources=None, noise_correction=True, per_half=False, splits_per_task=None,
                scheduler=None, n_workers=1):
    """Inter-animal consistency, pooled or pairwise source (spec §1.3, §2.3).

    For every area and target animal, the source is the concatenation of all other
    animals' units in that area ("pooled", the thesis' "holdout" mode), or each other animal
    in turn ("pairwise"; rows carry the source animal, and `median_over_units` averages over
    sources per unit, spec §1.3). Areas with a single animal are skipped (logged).

    Parameters
    ----------
    assembly : xarray.DataArray
        NeuralAssembly, dims (stimulus, trial, neuroid), coords neuroid_id, animal, area;
        NaN trials are left out of the means, and units lacking stimuli are scored on the
        others (module docstring). With one trial per stimulus, only raw r.
    mappings : sequence of str
        From "ridge", "ridge_cv", "pls", "one_to_one" (fitted, per unit) and "rsa", "cka",
        "cka_unbiased" (one value per population).
    n_halves, n_splits : int
        Trial split-halves and train/test stimulus splits (spec: 100 and 10).
    train_frac : float
        Fraction of stimuli used to fit.
    seed : int
        Seed of the split-halves, the stimulus splits and the unit subsamples.
    alpha : float
        Ridge penalty.
    n_components : int
        PLS components (clipped to what the data support, logged).
    alphas : sequence of float, optional
        Candidate penalties of "ridge_cv" (leave-one-out on the training stimuli);
        `RIDGE_CV_ALPHAS` by default.
    rsa_compare : str
        RDM comparison of "rsa": "pearson" (spec), "spearman", "kendall_tau_a", "cosine", "dot".
    mode : {"pooled", "pairwise"}
    equalize_sources : None, int or "min"
        Subsample every source to this many units (seeded per target and source); "min":
        the smallest source of the area. None uses all units (spec §2.3).
    noise_correction : bool
        False: raw r only (r_full), as for single-trial data.
    per_half : bool
        One row per split-half (column ``half``) instead of their nan-mean.
    splits_per_task : int, optional
        Splits per dask task (finer parallel grain); all splits in one task by default.
        Fitted kernel maps then agree to rounding (about 1e-12), not bit for bit: a task's
        centred split kernels come from one matrix product over its splits, whose BLAS
        rounding depends on how many there are (`pipeline.compare.scoring._split_kernels`).
    scheduler : None or str
        None: a local pool of `n_workers` threads; "threads", "processes" or "synchronous"
        pick a local scheduler. Any other string is the address of a dask.distributed
        scheduler (`pipeline.compare.parallel.compute`).
    n_workers : int
        Local workers.

    Returns
    -------
    pandas.DataFrame
        Columns area, animal, source, neuroid_id, mapping, split (and half), the
        `QUANTITIES` (r, r_mapping, r_target, r_full, r_mapping_sb, r_target_sb, score,
        score_full, score_thesis, ceiling_brainscore, score_brainscore), defined (the score
        was defined in every split-half of the row; `pipeline.compare.scoring`, "Undefined
        splits"), nc_lower, nc_upper (rsatoolbox RSA noise-ceiling terms of the target
        animal; RSA rows only), mode, n_source_units (live units), noise_corrected. One row
        per (mapping, source, neuroid, split); RSA/CKA one per (target, source) with split
        0 and neuroid_id "". Rows of units without any valid trial are NaN.
    """
    maps, R, halves, assembly = prepare(
        assembly, "interanimal assembly", mappings=mappings, alpha=alpha, n_components=n_components, alphas=alphas,
        mode=mode, rsa_compare=rsa_compare, equalize_sources=equalize_sources, n_halves=n_halves, n_splits=n_splits,
        seed=seed, noise_correction=noise_correction)
    splits = stimulus_splits(R.shape[0], n_splits, train_frac, seed)
    tasks, ceilings = interanimal_tasks(
        R, animal_groups(assembly), assembly["neuroid_id"].values.astype(str), maps, halves, splits, mode=mode,
        equalize_sources=equalize_sources, seed=seed, rsa_compare=rsa_compare, per_half=per_half,
        splits_per_task=splits_per_task)
    log.info("interanimal (%s): %d tasks, %d neuroids, %d stimuli; mappings %s; %s x %d splits "
             "(train_frac %g, seed %d)", mode, len(tasks), R.shape[2], R.shape[0], list(maps),
             f"{n_halves} split-halves" if halves else "no split-halves", n_splits, train_frac, seed)
    frames, ceilings = run(tasks, ceilings, scheduler, n_workers, "interanimal")
    out = finish(frames, ceilings, ())
    out["mode"] = mode
    return out


# ---------------------------------------------------------------- model predictivity

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


class _Layer:
    """Holds one (possibly lazy, dask-backed) activations variable without dask seeing it.

    Passed to a task, a dask-backed DataArray would be computed whole before the call;
    wrapped, the task reads it chunk by chunk (`layer_sources`).
    """

    def __init__(self, var):
        self.var = var


def _read_layer(layer, order, projection, keep_features, label):
    with dask.config.set(scheduler="synchronous"):           # reads inside a worker stay in it
        return layer_sources(layer.var, order, projection=projection, keep_features=keep_features,
                             label=label)


def predictivity(activations, assembly, *, mappings=("ridge", "pls", "rsa"), n_halves=20, n_splits=5,
                 train_frac=0.5, seed=0, alpha=1.0, n_components=25, alphas=None, rsa_compare="pearson",
                 projection=None, select_layers=True, noise_correction=True, per_half=False,
                 splits_per_task=None, scheduler=None, n_workers=1, epochs="all"):
    """Neural predictivity of every model layer and epoch, mapped per target animal (spec §1.3).

    The model source is deterministic (A1 = A2 = Abar = features), so the RSA and CKA
    mapping terms are 1. Features are used raw (no z-scoring), in float64, read from the
    (lazily opened) activations chunk by chunk.

    Parameters
    ----------
    activations : xarray.Dataset
        One data var per layer, dims (epoch, stimulus, unit...), coord stimulus_id on stimulus;
        a recurrent model's layers have dims (epoch, time, stimulus, unit...), and each
        (layer, time step) is scored as a source of its own. Stimuli are matched to the
        assembly's by stimulus_id; extra ones are ignored.
    assembly : xarray.DataArray
        NeuralAssembly, as for `interanimal`.
    mappings, n_halves, n_splits, train_frac, seed, alpha, n_components, alphas, rsa_compare
        As for `interanimal`.
    projection : dict, optional
        ``{"method": "none" | "random" | "pca", "n_components": k, "seed": s}``: layers
        wider than k units are reduced first (`pipeline.compare.sources.layer_sources`);
        recorded in the ``projection`` column.
    select_layers : bool
        Also score the fitted maps on a validation split inside each split's training
        stimuli (rows with stage "select"; `splits.inner_splits`), which
        `pipeline.compare.aggregate.best_layer` uses to choose layers without test data.
    noise_correction, per_half, splits_per_task, scheduler, n_workers
        As for `interanimal`.
    epochs : "all", "final", "ends" or list of int
        Checkpoints to score (`select_epochs`): every stored epoch, the last, the first and
        last (untrained and trained), or the listed epoch numbers.

    Returns
    -------
    pandas.DataFrame
        The `interanimal` columns (source is the layer) plus layer, epoch, time (the model's
        time step; 0 for feedforward layers), stage ("test": held-out stimuli of the split;
        "select": the validation stimuli inside its training set) and projection; one row per
        (layer, epoch, time, mapping, neuroid, split, stage), RSA/CKA one per (layer, epoch,
        time, animal).
    """
    maps, R, halves, assembly = prepare(
        assembly, "predictivity assembly", mappings=mappings, alpha=alpha, n_components=n_components, alphas=alphas,
        mode="pooled", rsa_compare=rsa_compare, equalize_sources=None, n_halves=n_halves, n_splits=n_splits,
        seed=seed, noise_correction=noise_correction)
    activations = select_epochs(activations, epochs)
    order = _align_stimuli(activations, assembly)
    splits = stimulus_splits(R.shape[0], n_splits, train_frac, seed)
    inner = inner_splits(splits, train_frac, seed) if select_layers else None
    neuroid_ids = assembly["neuroid_id"].values.astype(str)
    groups = animal_groups(assembly)
    # Each target's responses are one graph literal; every job computes the target's half
    # means itself (milliseconds), so no job's population outlives it.
    targets = {key: dask.delayed(R[:, :, idx], pure=True) for key, idx in groups.items()}
    ceilings = {}
    if "rsa" in maps:
        for area in dict.fromkeys(a for a, _ in groups):
            R_area, animals, local = area_responses(R, groups, area)
            ceilings[area] = dask.delayed(rsa_ceilings)(R_area, [local[a] for a in animals], animals, rsa_compare)
    epochs = activations["epoch"].values if "epoch" in activations.coords else np.arange(activations.sizes["epoch"])
    keep_features = any(name in FEATURE_MAPPINGS for name in maps)
    tasks = []
    for layer in activations.data_vars:
        sources = dask.delayed(_read_layer)(_Layer(activations[layer]), order, projection, keep_features, layer)
        for e, position in enumerate(source_positions(activations[layer], epochs)):
            source = dask.delayed(operator.getitem)(sources, e)
            for (area, animal), idx in groups.items():
                labels = {"area": area, "animal": animal, "source": str(layer), "layer": str(layer),
                          **position}
                for first, (offset, chunk) in enumerate(split_chunks(splits, splits_per_task)):
                    tasks.append(dask.delayed(_predictivity_task)(
                        source, targets[area, animal], halves, maps, chunk, offset, labels, neuroid_ids[idx],
                        rsa_compare=rsa_compare, keep_halves=per_half,
                        inner=None if inner is None else inner[offset:offset + len(chunk)],
                        with_population=first == 0))
    log.info("predictivity: %d layers x %d epochs x %d target (area, animal) populations, %d neuroids, "
             "%d stimuli; mappings %s; %s x %d splits (train_frac %g, seed %d)%s",
             len(activations.data_vars), len(epochs), len(groups), R.shape[2], R.shape[0], list(maps),
             f"{n_halves} split-halves" if halves else "no split-halves", n_splits, train_frac, seed,
             "; layer choice on validation splits inside the training stimuli" if select_layers else "")
    frames, ceilings = run(tasks, ceilings, scheduler, n_workers, "predictivity")
    out = finish(frames, ceilings, ("layer", "epoch", "time"), ("projection",))
    if "stage" not in out.columns:
        out.insert(out.columns.get_loc("split") + 1, "stage", "test")
    out["mode"] = "model"
    return out


def _predictivity_task(source, R_target, halves, maps, splits, offset, labels, ids, **kwargs):
    """One layer-epoch source against one target animal: the target's population, then `score_task`."""
    target = population(R_target, halves, f"{labels['area']}/{labels['animal']}")
    frame = score_task(source, target, maps, splits, offset, labels, ids, **kwargs)
    frame["projection"] = source.projection
    return frame
