"""The task grid of the consistency engine: settings, one task per job, and their tidy frames.

`prepare` checks an analysis' settings and builds its mappings, responses and trial
split-halves. A job scores one source against one target population on a chunk of the
train/test splits (`score_task`; `pipeline.compare.scoring` does the estimator);
`interanimal_tasks` lays the inter-animal jobs out over areas, target animals and,
pairwise, source animals, as dask delayed tasks sharing each animal's kernel statistics
(`pipeline.compare.sources`). `run` computes the tasks (`pipeline.compare.parallel`) and
`finish` concatenates their frames in a fixed column order, with the rsatoolbox RSA
noise-ceiling terms of each area attached.

Missing data: `prepare` removes the stimuli that no unit has a value for (no valid trial
anywhere) before the splits are drawn, and logs, once per analysis, those stimuli, the dead
units (no valid trial at all) and the units with missing stimuli; every other drop is made
per fit by `pipeline.compare.scoring` (module docstring) and logged there. The RSA noise
ceilings of an area use the stimuli that every animal of the area has. Rows of dead target
units are NaN; no NaN of one unit reaches another unit's number.
"""

from __future__ import annotations

import logging

import dask
import numpy as np
import pandas as pd

from pipeline.compare import scoring
from pipeline.compare.mappings import FEATURE_MAPPINGS, MAPPINGS, RIDGE_CV_ALPHAS, PLSMap, RidgeCVMap, RidgeMap
from pipeline.compare.parallel import compute
from pipeline.compare.rsa import COMPARE_METHODS, rdm_from_gram, rsa_noise_ceiling
from pipeline.compare.scoring import POPULATION_MAPPINGS, QUANTITIES
from pipeline.compare.sources import concatenated, leave_out, pooled_kernels, population, restrict
from pipeline.compare.splits import unit_subset
from pipeline.data.assembly import validate_assembly
from pipeline.data.reliability import trial_halves

log = logging.getLogger(__name__)

MODES = ("pooled", "pairwise")
ALL_MAPPINGS = (*MAPPINGS, *FEATURE_MAPPINGS, *POPULATION_MAPPINGS)
METADATA = ("mode", "n_source_units", "noise_corrected")

# ---------------------------------------------------------------- settings

def _build_mappings(names, alpha, n_components, alphas):
    """Mapping objects by name; None for the population mappings (RSA, CKA), which fit nothing."""
    unknown = [name for name in names if name not in ALL_MAPPINGS]
    if unknown:
        raise ValueError(f"unknown mappings {unknown}; expected names from {sorted(ALL_MAPPINGS)}.")
    makers = {"ridge": lambda: RidgeMap(alpha), "pls": lambda: PLSMap(n_components),
              "ridge_cv": lambda: RidgeCVMap(RIDGE_CV_ALPHAS if alphas is None else tuple(alphas)),
              **{name: cls for name, cls in FEATURE_MAPPINGS.items()}}
    return {name: makers[name]() if name in makers else None for name in names}


def _check_settings(mode, rsa_compare, equalize_sources, n_halves, n_splits):
    """ValueError naming the first setting out of its range."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
    if rsa_compare not in COMPARE_METHODS:
        raise ValueError(f"rsa_compare must be one of {COMPARE_METHODS}; got {rsa_compare!r}.")
    if equalize_sources is not None and not (isinstance(equalize_sources, (int, np.integer))
                                             and equalize_sources >= 1 or equalize_sources == "min"):
        raise ValueError(f"equalize_sources must be None, 'min' or an int >= 1; got {equalize_sources!r}.")
    for name, value in (("n_halves", n_halves), ("n_splits", n_splits)):
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"{name} must be an int >= 1; got {value!r}.")


def prepare(assembly, label, *, mappings, alpha, n_components, alphas, mode, rsa_compare, equalize_sources,
            n_halves, n_splits, seed, noise_correction):
    """Checked settings, then the mapping objects, responses and trial split-halves of one analysis.

    Keywords as for `pipeline.compare.consistency.interanimal`; `label` names the assembly in
    messages.

    Returns
    -------
    maps : dict
        From `_build_mappings`.
    R : ndarray, shape (stimulus, trial, neuroid)
        From `_responses`, without the stimuli that no unit has a value for.
    halves : list of (ndarray, ndarray) or None
        From `_halves_or_none`.
    assembly : xarray.DataArray
        The assembly on the stimuli of `R` (the input itself when none was removed).
    """
    _check_settings(mode, rsa_compare, equalize_sources, n_halves, n_splits)
    maps = _build_mappings(mappings, alpha, n_components, alphas)
    R = _responses(assembly, label)
    R, assembly = _drop_empty(R, assembly, label)
    return maps, R, _halves_or_none(R, n_halves, seed, noise_correction, label), assembly


def _drop_empty(R, assembly, label):
    """Remove the stimuli with no valid trial in any unit; log what is missing (module docstring)."""
    valid = ~np.isnan(R)
    if valid.all():
        return R, assembly
    ids = assembly["stimulus_id"].values.astype(str)
    neuroids = assembly["neuroid_id"].values.astype(str)
    per_cell = valid.any(1)                                    # (stimulus, neuroid)
    dead = ~per_cell.any(0)
    partial = ~dead & ~per_cell.all(0)

    def some(names):
        return ", ".join(names[:5]) + (", ..." if names.size > 5 else "")

    if dead.any():
        log.warning("%s: %d units have no valid trial (%s): their rows are NaN and they leave every source",
                    label, int(dead.sum()), some(neuroids[dead]))
    if partial.any():
        log.warning("%s: %d units lack every trial of some stimuli (%s; %d (stimulus, unit) cells): each is "
                    "scored on the stimuli it has, and fits that use them as a source drop those stimuli",
                    label, int(partial.sum()), some(neuroids[partial]), int((~per_cell[:, partial]).sum()))
    empty = ~per_cell.any(1)
    if not empty.any():
        return R, assembly
    if empty.all():
        raise ValueError(f"{label}: every value is NaN; expected responses (NaN marks missing trials only).")
    log.warning("%s: %d stimuli have no valid trial in any unit (%s); removed before the splits are drawn",
                label, int(empty.sum()), some(ids[empty]))
    return R[~empty], assembly.isel(stimulus=np.flatnonzero(~empty))


def _responses(assembly, source):
    """Assembly as a float64 (stimulus, trial, neuroid) array, after validation."""
    validate_assembly(assembly, source)
    if "time_bin" in assembly.dims:
        raise ValueError(f"{source}: consistency needs responses averaged over time_bin; "
                         f"found dims {tuple(assembly.dims)}.")
    return assembly.transpose("stimulus", "trial", "neuroid").values.astype(np.float64)


def _halves_or_none(R, n_halves, seed, noise_correction, source):
    """Trial split-halves, or None for raw r (single-trial data or noise correction off)."""
    if not noise_correction:
        return None
    if R.shape[1] < 2:
        log.warning("%s has %d trial per stimulus: no split-halves, so only raw r (r_full) is "
                    "computed and rows say noise_corrected=False", source, R.shape[1])
        return None
    return trial_halves(R.shape[1], n_halves, seed)


def animal_groups(assembly):
    """Neuroid positions per (area, animal), in order of first appearance."""
    keys = pd.DataFrame({"area": assembly["area"].values.astype(str),
                         "animal": assembly["animal"].values.astype(str)})
    return {key: np.asarray(idx) for key, idx in keys.groupby(["area", "animal"], sort=False).indices.items()}


def split_chunks(splits, splits_per_task):
    """(index of the first split, splits) per task; all splits in one chunk when None."""
    size = len(splits) if not splits_per_task else max(1, int(splits_per_task))
    return [(start, splits[start:start + size]) for start in range(0, len(splits), size)]


# ---------------------------------------------------------------- one task

def _frame(values, labels, ids, mapping, split_offset, keep_halves):
    """Tidy rows from (split, unit) or (half, split, unit) arrays."""
    shape = values["r"].shape
    n_splits, n_units = shape[-2], shape[-1]
    n_halves = shape[0] if keep_halves else 1
    columns = {
        **labels,
        "neuroid_id": np.tile(ids, n_halves * n_splits),
        "mapping": mapping,
        "split": np.tile(np.repeat(np.arange(n_splits) + split_offset, n_units), n_halves),
    }
    if keep_halves:
        columns["half"] = np.repeat(np.arange(n_halves), n_splits * n_units)
    columns.update({q: values[q].ravel() for q in QUANTITIES})
    columns["defined"] = values["defined"].ravel()
    return pd.DataFrame(columns)


def score_task(source, target, maps, splits, split_offset, labels, ids, *, rsa_compare, keep_halves,
               inner=None, with_population=True):
    """All mappings for one (source, target population, chunk of splits), as a tidy frame.

    With `inner` (validation splits inside each split's training stimuli), the fitted maps
    are also scored there, as rows with stage "select"; the others have stage "test".
    """
    frames = {name: [] for name in maps}
    stages = [("test", splits)] + ([("select", inner)] if inner is not None else [])
    fitted = {name: mapping for name, mapping in maps.items() if name not in POPULATION_MAPPINGS}
    for stage, stage_splits in stages if fitted else ():
        values = scoring.score_fitted(fitted, source, target, stage_splits, keep_halves=keep_halves)
        for name in fitted:
            frames[name].append(_frame(values[name], labels, ids, name, split_offset, keep_halves))
            if inner is not None:
                frames[name][-1]["stage"] = stage
    for name in maps if with_population else ():
        if name in POPULATION_MAPPINGS:
            values = scoring.score_population(name, source, target, rsa_compare=rsa_compare,
                                              keep_halves=keep_halves)
            frames[name].append(_frame(values, labels, np.array([""]), name, 0, keep_halves))
            if inner is not None:
                frames[name][-1]["stage"] = "test"
    if not any(frames.values()):        # a later chunk of splits with population mappings only
        return None
    frame = pd.concat([f for name in maps for f in frames[name]], ignore_index=True)
    frame["n_source_units"] = int(source.n_units)
    frame["noise_corrected"] = target.has_halves
    return frame


def _interanimal_task(R, local, target, members, pooled, halves, maps, splits, split_offset, labels, ids, *,
                      equalize, seed, rsa_compare, keep_halves, with_population):
    """Pooled or pairwise source for one target animal (and, pairwise, one source animal).

    `R` holds the area's responses and `local` each animal's unit positions in it. The
    target's population is computed here; the source is the area's pooled kernels less the
    target's own (`pooled`), or, pairwise, the source animal's kernels, or, when a map needs
    source features or the source is subsampled, the concatenation of the members' means.
    """
    label = "/".join(str(v) for v in labels.values())
    own = population(R[:, :, local[target]], halves, label)
    needs_features = equalize is not None or any(name in FEATURE_MAPPINGS for name in maps)
    if needs_features:
        others = [population(R[:, :, local[a]], halves, f"{label}<-{a}") for a in members]
        units = None
        if equalize is not None:
            n_units = sum(pop.n_units for pop in others)
            if equalize > n_units:
                log.warning("%s: source has %d units, fewer than equalize_sources=%d; all are used",
                            label, n_units, equalize)
            units = unit_subset(n_units, equalize, label, seed)
        source = concatenated(others, units)
    elif pooled is not None:
        source = leave_out(pooled, own)
    else:
        source = pooled_kernels(R, [local[a] for a in members], halves, label)
    return score_task(source, own, maps, splits, split_offset, labels, ids, rsa_compare=rsa_compare,
                      keep_halves=keep_halves, with_population=with_population)


def rsa_ceilings(R, unit_groups, animals, method):
    """rsatoolbox-style per-animal lower/upper RSA noise-ceiling terms of one area (all-trial RDMs).

    Parameters
    ----------
    R : ndarray, shape (stimulus, trial, unit)
    unit_groups : list of ndarray of int
        Each animal's unit positions in `R`.
    animals : list of str
    method : str
        RDM comparison, as for `pipeline.compare.rsa.rsa_noise_ceiling`.
    """
    if len(unit_groups) < 2:
        return {}
    pops = [population(R[:, :, idx], None, animal, keep_features=False) for idx, animal in zip(unit_groups, animals)]
    if any(p.n_units == 0 for p in pops):                 # an animal without a live unit has no RDM
        live = [k for k, p in enumerate(pops) if p.n_units > 0]
        log.warning("RSA noise ceiling: animals %s have no live unit; left out (their terms are NaN)",
                    [animals[k] for k in range(len(pops)) if k not in live])
        out = rsa_ceilings(R, [unit_groups[k] for k in live], [animals[k] for k in live], method)
        return {animal: out.get(animal, (np.nan, np.nan)) for animal in animals}
    if any(p.missing is not None for p in pops):
        keep = np.logical_and.reduce([p.missing == 0 for p in pops if p.missing is not None])
        if keep.sum() < 4:
            log.warning("RSA noise ceiling: %d stimuli that every animal has (need 4): NaN", int(keep.sum()))
            return {animal: (np.nan, np.nan) for animal in animals}
        if not keep.all():
            log.info("RSA noise ceiling: %d of %d stimuli dropped (an animal lacks them)",
                     int((~keep).sum()), keep.size)
        pops = [restrict(p, keep) for p in pops]
    rdms = np.stack([rdm_from_gram(p.gram_mean, p.sum_mean, p.n_units, condensed=True) for p in pops])
    lower, upper = rsa_noise_ceiling(rdms, method, per_subject=True)
    return {animal: (lo, up) for animal, lo, up in zip(animals, lower, upper)}


def _attach_ceilings(frame, ceilings, keys):
    """nc_lower and nc_upper on RSA rows (NaN elsewhere), from `rsa_ceilings` dicts.

    `ceilings` maps the values of the columns `keys` (an area; a tuple when there are
    several, e.g. (area, n_stimuli)) to that group's per-animal `rsa_ceilings`.
    """
    frame["nc_lower"] = np.nan
    frame["nc_upper"] = np.nan
    for key, per_animal in ceilings.items():
        group = frame["mapping"] == "rsa"
        for column, value in zip(keys, key if isinstance(key, tuple) else (key,)):
            group &= frame[column] == value
        for animal, (lo, up) in per_animal.items():
            rows = group & (frame["animal"] == animal)
            frame.loc[rows, "nc_lower"] = lo
            frame.loc[rows, "nc_upper"] = up
    return frame


def finish(frames, ceilings, extra, trailing=(), ceiling_keys=("area",)):
    """One table from the task frames, RSA ceilings attached, columns in a fixed order.

    `ceilings` maps the values of the columns `ceiling_keys` to per-animal `rsa_ceilings`.
    """
    columns = ["area", "animal", "source", *extra, "neuroid_id", "mapping", "split", *QUANTITIES, "defined",
               "nc_lower", "nc_upper", *METADATA, *trailing]
    frames = [f for f in frames if f is not None]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    frame = _attach_ceilings(frame, ceilings, ceiling_keys)
    at = columns.index("split") + 1
    columns[at:at] = [c for c in ("half", "stage") if c in frame.columns]
    return frame.reindex(columns=columns)


def area_responses(R, groups, area, stimuli=None):
    """The area's responses (stimulus, trial, unit), its animals and their unit positions in it."""
    animals = [animal for a, animal in groups if a == area]
    positions = np.concatenate([groups[area, animal] for animal in animals])
    R_area = R[:, :, positions] if stimuli is None else R[stimuli][:, :, positions]
    bounds = np.cumsum([0] + [groups[area, animal].size for animal in animals])
    local = {animal: np.arange(lo, hi) for animal, lo, hi in zip(animals, bounds[:-1], bounds[1:])}
    return R_area, animals, local


def interanimal_tasks(R, groups, neuroid_ids, maps, halves, splits, *, mode, equalize_sources, seed,
                      rsa_compare, per_half, splits_per_task, stimuli=None, extra_labels=None):
    """Delayed tasks and per-area RSA-ceiling tasks of one inter-animal analysis.

    The area's responses are one graph literal shared by its jobs; each job computes its
    target's population itself, so at most a job's worth of half means is in memory per
    worker. In pooled mode the area's pooled kernels are one task (`sources.pooled_kernels`)
    and each target subtracts its own. `stimuli` restricts the analysis to a subset of the
    stimuli. One job per (area, target animal, source, chunk of splits); RSA/CKA rows come
    from the first chunk only.
    """
    needs_features = equalize_sources is not None or any(name in FEATURE_MAPPINGS for name in maps)
    extra_labels = extra_labels or {}
    tasks, ceilings = [], {}
    for area in dict.fromkeys(area for area, _ in groups):
        R_area, animals, local = area_responses(R, groups, area, stimuli)
        if len(animals) < 2:
            log.warning("interanimal: area %s has %d animal(s); skipped (needs at least 2)", area, len(animals))
            continue
        R_area = dask.delayed(R_area, pure=True)
        equalize = equalize_sources
        if equalize == "min":
            sizes = {a: local[a].size for a in animals}
            equalize = (min(sizes.values()) if mode == "pairwise"
                        else min(sum(sizes[b] for b in animals if b != a) for a in animals))
        pooled = (dask.delayed(pooled_kernels)(R_area, [local[a] for a in animals], halves, area)
                  if mode == "pooled" and not needs_features else None)
        if "rsa" in maps:
            ceilings[area] = dask.delayed(rsa_ceilings)(R_area, [local[a] for a in animals], animals, rsa_compare)
        for target in animals:
            sources = ([("pooled", [a for a in animals if a != target])] if mode == "pooled"
                       else [(a, [a]) for a in animals if a != target])
            for source_name, members in sources:
                labels = {"area": area, "animal": target, "source": source_name, **extra_labels}
                for first, (offset, chunk) in enumerate(split_chunks(splits, splits_per_task)):
                    tasks.append(dask.delayed(_interanimal_task)(
                        R_area, local, target, members, pooled, halves, maps, chunk, offset, labels,
                        neuroid_ids[groups[area, target]], equalize=equalize, seed=seed,
                        rsa_compare=rsa_compare, keep_halves=per_half, with_population=first == 0))
    return tasks, ceilings


def run(tasks, ceilings, scheduler, n_workers, desc):
    """Compute the scoring tasks and the per-area ceiling tasks in one pass; (frames, ceilings)."""
    areas = list(ceilings)
    results = compute(tasks + [ceilings[a] for a in areas], scheduler, n_workers, desc)
    return results[:len(tasks)], dict(zip(areas, results[len(tasks):]))
