"""Representational development over training (P1; spec_ch5-6 C.1 and C.4).

Per model, layer and checkpoint, on one stimulus set:

- the RDM of the layer's (spatially flattened) responses: `pipeline.compare.rsa.rdm` (1 − Pearson r,
  Euclidean, ...) or "dot", the negated inner product −⟨x_i, x_j⟩ of two stimuli's patterns
  (P1's dot-product similarity, read as a dissimilarity so that larger means less alike);
- its correlation (`compare`, Pearson by default) with the category-model RDM of each level of the
  stimulus hierarchy (0 for two stimuli of one class, 1 otherwise) and with the layer's
  final-epoch RDM;
- the coarse-before-fine index: per level, the epoch at which that correlation first reaches half
  of its final value (`half_time`, linearly interpolated between checkpoints), its delay behind the
  first (coarsest) level, and percentile intervals of both from a bootstrap over stimuli (every
  draw resamples the stimuli with replacement and leaves out the pairs of a stimulus with its own
  copy; `rule_similarity.model_similarity`);
- the RSA similarity to every brain area: the model RDM compared with each animal's RDM of its
  trial-mean responses and averaged over animals (rsatoolbox's ``compare`` then the mean over
  subjects), with the lower and upper noise ceilings of `rsa.rsa_noise_ceiling` (rsatoolbox's
  ``boot_noise_ceiling``).

Predictivity over epochs is not recomputed here: the `development_predictivity` verb gathers the
predictivity tables (`median_over_units` per layer and scored epoch); every epoch is scored only
with ``compare.predictivity.epochs: all``.

`python -m pipeline <verb>` runs the rules of workflow/rules/development.smk
(`add_development_verbs` registers the verbs there).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from pipeline.compare.epochs import select_epochs
from pipeline.compare.geometry import layer_responses
from pipeline.compare.rsa import COMPARE_METHODS, compare_rdms, rdm, rsa_noise_ceiling, upper_tri
from pipeline.compare.rule_similarity import model_similarity

log = logging.getLogger(__name__)

METRICS = ("correlation", "euclidean", "dot", "spearman", "cosine")
LEVELS = ("superordinate", "basic", "subordinate")
BASELINES = ("zero", "initial")


def response_rdm(X, metric="correlation") -> np.ndarray:
    """Square RDM (stimulus, stimulus) of responses X (stimulus, unit).

    "dot" is −X Xᵀ (its diagonal is −‖x_i‖², not 0; only the upper triangle is ever compared);
    the others are `pipeline.compare.rsa.rdm`.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    if metric == "dot":
        X = np.asarray(X, dtype=np.float64)
        return -(X @ X.T)
    return rdm(X, metric)


def category_rdms(labels) -> np.ndarray:
    """Category-model RDMs (level, stimulus, stimulus): 1 where two stimuli's labels differ.

    Parameters
    ----------
    labels : array-like, shape (level, stimulus)
    """
    labels = np.asarray(labels)
    return (labels[:, :, None] != labels[:, None, :]).astype(np.float64)


def half_time(epochs, values, baseline="zero") -> np.ndarray:
    """Epoch at which each curve first reaches half-way from its baseline to its final value.

    Parameters
    ----------
    epochs : array-like, shape (epoch,)
        Increasing epoch numbers of the checkpoints.
    values : array-like, shape (..., epoch)
        Curves over those checkpoints (e.g. a level's correlation).
    baseline : {"zero", "initial"}
        "zero": the target is half of the final value; "initial": half-way from the first
        checkpoint's value to the final one (development counted from the untrained network).

    Returns
    -------
    ndarray, shape (...)
        Linear interpolation between the last checkpoint below the target and the first at or
        above it; the first epoch when the curve starts there. NaN when the final value does not
        exceed the baseline (the level's structure never grew) or a value is NaN.
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}; got {baseline!r}")
    epochs = np.asarray(epochs, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.shape[-1] != epochs.size or epochs.size == 0:
        raise ValueError(f"values must end in one entry per epoch ({epochs.size}); got shape {values.shape}")
    final = values[..., -1]
    base = np.zeros_like(final) if baseline == "zero" else values[..., 0]
    target = base + (final - base) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        first = np.asarray(np.argmax(values >= target[..., None], axis=-1))   # the final epoch at least
        previous = np.maximum(first - 1, 0)
        v_first = np.take_along_axis(values, first[..., None], -1)[..., 0]
        v_previous = np.take_along_axis(values, previous[..., None], -1)[..., 0]
        step = np.where(first > 0, (target - v_previous) / (v_first - v_previous), 0.0)
        t = epochs[previous] + step * (epochs[first] - epochs[previous])
        defined = (final > base) & ~np.isnan(values).any(-1)
    return np.where(defined, t, np.nan)


def _interval(boot, ci):
    """Central percentile interval over the first axis (NaN where no draw is defined)."""
    if len(boot) == 0:
        nan = np.full(np.shape(boot)[1:], np.nan)
        return nan, nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)           # all-NaN slices
        low, high = np.nanpercentile(boot, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2], axis=0)
    return low, high


@dataclass(frozen=True)
class LayerCurves:
    """One layer's development on all stimuli and per bootstrap draw.

    correlation : (epoch, level) with the category models; correlation_boot (boot, epoch, level).
    to_final : (epoch,) with the layer's final-epoch RDM; to_final_boot (boot, epoch).
    half : (level,) `half_time`; half_boot (boot, level).
    """

    correlation: np.ndarray
    correlation_boot: np.ndarray
    to_final: np.ndarray
    to_final_boot: np.ndarray
    half: np.ndarray
    half_boot: np.ndarray


def layer_curves(rdms, categories, epochs, *, compare="pearson", baseline="zero", draws=()) -> LayerCurves:
    """Correlations with the category models and the final RDM over epochs, and half-times.

    Parameters
    ----------
    rdms : ndarray, shape (epoch, stimulus, stimulus)
        One layer's RDMs at the checkpoints `epochs`.
    categories : ndarray, shape (level, stimulus, stimulus)
        `category_rdms`.
    compare : str
        RDM comparison (`pipeline.compare.rsa.COMPARE_METHODS`).
    draws : ndarray of int, shape (boot, stimulus)
        Stimulus indices of each bootstrap draw (none: no interval).
    """
    n = len(epochs)
    draws = np.asarray(draws, dtype=np.int64).reshape(-1, np.shape(rdms)[-1])
    point, boot = model_similarity(np.concatenate([rdms, categories]), compare, draws=draws)
    correlation, correlation_boot = point[:n, n:], boot[:, :n, n:]
    return LayerCurves(correlation, correlation_boot, point[:n, n - 1], boot[:, :n, n - 1],
                       half_time(epochs, correlation.T, baseline),
                       half_time(epochs, np.swapaxes(correlation_boot, 1, 2), baseline))


@dataclass(frozen=True)
class AreaRDMs:
    """Each animal's RDM of one area on the stimuli all of them have.

    positions : (stimulus,) the stimuli's positions in the activations.
    animals : names, one per row of `rdms`.
    rdms : (animal, pair) condensed RDMs of the trial-mean responses.
    """

    positions: np.ndarray
    animals: list
    rdms: np.ndarray


def area_rdms(assembly: xr.DataArray, stimulus_ids, metric="correlation", *, source="assembly"
              ) -> dict[str, AreaRDMs]:
    """Per area, every animal's RDM of its trial-mean (NaN-skipping) responses.

    Units without any response are left out; a stimulus that some live unit of some animal of the
    area lacks is left out of that area (logged), so all RDMs of an area share their stimuli.

    Parameters
    ----------
    assembly : xarray.DataArray
        NeuralAssembly (stimulus, trial, neuroid), averaged over time bins.
    stimulus_ids : array-like
        The activations' stimulus_id, in their order; must hold every stimulus of the assembly.
    source : str
        Names the assembly in errors.
    """
    from pipeline.data.assembly import validate_assembly

    validate_assembly(assembly, source)
    if "time_bin" in assembly.dims:
        raise ValueError(f"{source}: development needs responses averaged over time_bin; "
                         f"found dims {tuple(assembly.dims)}")
    want = assembly["stimulus_id"].values.astype(str)
    positions = pd.Index(np.asarray(stimulus_ids).astype(str)).get_indexer(want)
    if (positions < 0).any():
        missing = want[positions < 0]
        raise ValueError(f"{source}: {missing.size} stimulus_id values are not in the activations "
                         f"(first: {missing[0]!r}); the activations must be of the stimulus set the "
                         "animals were shown")
    values = assembly.transpose("stimulus", "trial", "neuroid").values.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)            # all-NaN cells stay NaN
        means = np.nanmean(values, axis=1)
    areas = assembly["area"].values.astype(str)
    animals = assembly["animal"].values.astype(str)
    out = {}
    for area in dict.fromkeys(areas):
        units = {animal: np.flatnonzero((areas == area) & (animals == animal) & np.isfinite(means).any(0))
                 for animal in dict.fromkeys(animals[areas == area])}
        units = {animal: idx for animal, idx in units.items() if idx.size}
        keep = np.logical_and.reduce([np.isfinite(means[:, idx]).all(1) for idx in units.values()]) \
            if units else np.zeros(len(want), bool)
        if keep.sum() < 3:
            log.warning("%s: area %s has %d stimuli with a response from every live unit (need 3); left out",
                        source, area, int(keep.sum()))
            continue
        if not keep.all():
            log.info("%s: area %s: %d of %d stimuli left out (some unit lacks them)",
                     source, area, int((~keep).sum()), keep.size)
        rdms = np.stack([upper_tri(response_rdm(means[keep][:, idx], metric)) for idx in units.values()])
        out[area] = AreaRDMs(positions[keep], list(units), rdms)
    return out


@dataclass(frozen=True)
class Development:
    """The tables of `development`; columns are listed there."""

    rdms: pd.DataFrame
    trajectory: pd.DataFrame
    halftimes: pd.DataFrame
    brain: pd.DataFrame


def _rdm_rows(key, rdm_square, ids, iu):
    return pd.DataFrame({**key, "stimulus_a": ids[iu[0]], "stimulus_b": ids[iu[1]],
                         "dissimilarity": rdm_square[iu].astype(np.float32)})


def _curve_rows(key, epochs, curves: LayerCurves, levels, ci):
    """Trajectory rows (layer, epoch, reference) and half-time rows (layer, level) of one layer."""
    low, high = _interval(curves.correlation_boot, ci)
    final_low, final_high = _interval(curves.to_final_boot, ci)
    trajectory = []
    for e, epoch in enumerate(epochs):
        for j, level in enumerate(levels):
            trajectory.append({**key, "epoch": epoch, "reference": level, "similarity": curves.correlation[e, j],
                               "ci_low": low[e, j], "ci_high": high[e, j]})
        trajectory.append({**key, "epoch": epoch, "reference": "final", "similarity": curves.to_final[e],
                           "ci_low": final_low[e], "ci_high": final_high[e]})
    half_low, half_high = _interval(curves.half_boot, ci)
    delay_boot = curves.half_boot - curves.half_boot[:, :1]          # paired over draws
    delay_low, delay_high = _interval(delay_boot, ci)
    defined = np.isfinite(curves.half_boot).mean(0) if len(curves.half_boot) else np.full(len(levels), np.nan)
    halftimes = [{**key, "level": level, "half_time": curves.half[j], "ci_low": half_low[j],
                  "ci_high": half_high[j], "delay": curves.half[j] - curves.half[0],
                  "delay_ci_low": delay_low[j], "delay_ci_high": delay_high[j], "boot_defined": defined[j],
                  "initial": curves.correlation[0, j], "final": curves.correlation[-1, j]}
                 for j, level in enumerate(levels)]
    return trajectory, halftimes


def development(activations: xr.Dataset, labels, assemblies=None, *, epochs="all", metric="correlation",
                compare="pearson", levels=LEVELS, baseline="zero", n_boot=1000, ci=0.95, seed=0) -> Development:
    """RDMs, hierarchy-level correlations, half-times and brain similarity of one model over training.

    Parameters
    ----------
    activations : xarray.Dataset
        One data var per layer, dims (epoch[, time], stimulus, unit...), coords epoch and
        stimulus_id (`pipeline.activations.extract`).
    labels : mapping of str to array-like
        Level -> class of each stimulus, in the activations' stimulus order (`stimulus_labels`).
    assemblies : mapping of str to xarray.DataArray, optional
        Dataset name -> NeuralAssembly recorded on these stimuli.
    epochs : "all", "final", "ends" or list of int
        Checkpoints analysed (`select_epochs`); half-times need the first and last of them.
    metric : {"correlation", "euclidean", "dot", "spearman", "cosine"}
        RDM dissimilarity (`response_rdm`), for the model and the animals alike.
    compare : str
        RDM comparison (`pipeline.compare.rsa.compare_rdms`): of the model RDM with the category
        models, its final RDM and the animals' RDMs, and of the noise ceilings.
    levels : sequence of str
        Label levels of `labels`, listed coarse to fine: each level's delay is counted from the
        first one's half-time.
    baseline : {"zero", "initial"}
        Half of the final correlation, or half-way from the first checkpoint's (`half_time`).
    n_boot, ci, seed : int, float, int
        Bootstrap draws over stimuli (0: no interval), interval coverage and the draws' seed (the
        same draws for every layer).

    Returns
    -------
    Development
        rdms: one row per (layer, epoch, time, stimulus pair): stimulus_a, stimulus_b,
        dissimilarity (condensed, row by row). trajectory: one row per (layer, epoch, time,
        reference), reference a level or "final" (the layer's final-epoch RDM): similarity,
        ci_low, ci_high. halftimes: one row per (layer, time, level): half_time, its ci_low and
        ci_high, delay (behind the first level) with delay_ci_low and delay_ci_high (paired over
        draws), boot_defined (share of draws with a defined half-time), initial and final
        correlation. brain: one row per (dataset, area, layer, epoch, time): similarity (mean over
        animals), similarity_sem, n_animals, nc_lower, nc_upper, n_stimuli. Every table has
        metric; all but rdms compare; trajectory and halftimes n_stimuli, n_boot, ci and baseline.
    """
    if compare not in COMPARE_METHODS:
        raise ValueError(f"compare must be one of {COMPARE_METHODS}; got {compare!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}; got {baseline!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    levels = list(levels)
    missing = [level for level in levels if level not in labels]
    if not levels or missing:
        raise ValueError(f"levels {missing or levels} have no labels; labels are given for {list(labels)}")
    n = activations.sizes["stimulus"]
    stacked = np.stack([np.asarray(labels[level]) for level in levels])
    if stacked.shape != (len(levels), n):
        raise ValueError(f"labels must have one entry per stimulus ({n}); got shape {stacked.shape[1:]}")
    categories = category_rdms(stacked)
    ids = activations["stimulus_id"].values.astype(str)
    areas = {name: area_rdms(assembly, ids, metric, source=name) for name, assembly in (assemblies or {}).items()}
    ceilings = {(name, area): (rsa_noise_ceiling(a.rdms, compare) if len(a.animals) > 1 else (np.nan, np.nan))
                for name, per_area in areas.items() for area, a in per_area.items()}
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    activations = select_epochs(activations, epochs)
    iu = np.triu_indices(n, k=1)
    rdm_rows, trajectory, halftimes, brain = [], [], [], []
    for layer in tqdm(list(activations.data_vars), desc="development", unit="layer", disable=None):
        per_time: dict[int, list] = {}
        for epoch, time, X in layer_responses(activations[layer]):
            square = response_rdm(X, metric)
            per_time.setdefault(time, []).append((epoch, square))
            key = {"layer": str(layer), "epoch": epoch, "time": time}
            rdm_rows.append(_rdm_rows(key, square, ids, iu))
            for (name, area), (lower, upper) in ceilings.items():
                a = areas[name][area]
                model = upper_tri(square[np.ix_(a.positions, a.positions)])
                similarity = compare_rdms(model[None], a.rdms, compare, condensed=True)
                brain.append({"dataset": name, "area": area, **key, "similarity": float(np.mean(similarity)),
                              "similarity_sem": float(np.std(similarity, ddof=1) / np.sqrt(similarity.size))
                              if similarity.size > 1 else np.nan,
                              "n_animals": similarity.size, "nc_lower": lower, "nc_upper": upper,
                              "n_stimuli": a.positions.size})
        for time, members in per_time.items():
            checkpoints, squares = zip(*members)
            curves = layer_curves(np.stack(squares), categories, checkpoints, compare=compare,
                                  baseline=baseline, draws=draws)
            rows = _curve_rows({"layer": str(layer), "time": time}, checkpoints, curves, levels, ci)
            trajectory += rows[0]
            halftimes += rows[1]
    settings = {"metric": metric, "compare": compare}
    boot = {"n_stimuli": n, "n_boot": n_boot, "ci": ci, "baseline": baseline}
    brain_columns = ["dataset", "area", "layer", "epoch", "time", "similarity", "similarity_sem", "n_animals",
                     "nc_lower", "nc_upper", "n_stimuli"]
    log.info("development: %d layers, epochs %s, %d draws, %d brain areas", len(activations.data_vars),
             [int(e) for e in activations["epoch"].values], n_boot, len(ceilings))
    return Development(
        rdms=pd.concat(rdm_rows, ignore_index=True).assign(metric=metric),
        trajectory=pd.DataFrame(trajectory).assign(**settings, **boot),
        halftimes=pd.DataFrame(halftimes).assign(**settings, **boot),
        brain=pd.DataFrame(brain, columns=brain_columns).assign(**settings))


def layer_kinds(model_dir) -> dict[str, str]:
    """"conv" or "dense" per compared layer of a run: whether its output keeps spatial dims.

    One forward pass of a blank image through the untrained backbone of the run's first checkpoint
    (batch[, time], channel, y, x) is "conv"; the figures show the last "conv" layer (P1's final
    convolutional layer).
    """
    import torch

    from pipeline.checkpoints import build_backbone, read_checkpoint, run_epochs
    from pipeline.models import layer_outputs

    checkpoint = read_checkpoint(next(iter(run_epochs(model_dir).values())))
    model = build_backbone(checkpoint).eval()
    size = checkpoint["input_size"]
    with torch.no_grad():
        outputs = layer_outputs(model, torch.zeros(1, 3, size, size))
    recurrent = int(getattr(model, "time_steps", None) is not None)
    return {name: "conv" if out.dim() - recurrent >= 4 else "dense" for name, out in outputs.items()}
