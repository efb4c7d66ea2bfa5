"""Split-half reliability of repeated trials (spec §1.1, §1.4): sync trial halves, SB-corrected r.

The data sources filter units by it, and the consistency engine splits trials with the same
`trial_halves`, so both live here, below both.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr


def trial_halves(n_trials, n_halves, seed=0):
    """Sync split-halves of the trials: one permutation per half-split, shared by all stimuli.

    As mouse-vision's ``splithalf_sync``. With an odd number of trials the last trial of the
    permutation is left out, so both halves hold ``n_trials // 2`` trials and the
    Spearman-Brown step (which assumes equal halves) applies.

    Parameters
    ----------
    n_trials : int
        Length of the trial dimension.
    n_halves : int
        Number of split-halves.
    seed : int
        Seed of ``RandomState``, drawn from once per split-half.

    Returns
    -------
    list of (ndarray, ndarray)
        ``(first, second)`` trial indices per split-half, each sorted.
    """
    if n_trials < 2:
        raise ValueError(f"split-halves need at least 2 trials; got {n_trials}.")
    if n_halves < 1:
        raise ValueError(f"n_halves must be a positive integer; got {n_halves!r}.")
    rng = np.random.RandomState(seed)
    half = n_trials // 2
    halves = []
    for _ in range(n_halves):
        order = rng.permutation(n_trials)
        halves.append((np.sort(order[:half]), np.sort(order[half:2 * half])))
    return halves


def split_half_masks(n_trial: int, n_boot: int, seed: int) -> np.ndarray:
    """Indicator matrices of random trial halves, shape (2, n_boot, n_trial).

    One permutation per resample, shared by all stimuli ("sync" splits, spec §1.1); halves
    hold n_trial // 2 trials each (an odd last trial is left out).
    """
    masks = np.zeros((2, n_boot, n_trial))
    for b, (first, second) in enumerate(trial_halves(n_trial, n_boot, seed)):
        masks[0, b, first] = 1.0
        masks[1, b, second] = 1.0
    return masks


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r over the last axis (stimulus), using the entries finite in both a and b."""
    ok = np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        if ok.all():
            a = a - a.mean(axis=-1, keepdims=True)
            b = b - b.mean(axis=-1, keepdims=True)
        else:
            n = ok.sum(axis=-1, keepdims=True)
            a, b = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
            a = np.where(ok, a - a.sum(axis=-1, keepdims=True) / n, 0.0)
            b = np.where(ok, b - b.sum(axis=-1, keepdims=True) / n, 0.0)
        cross = np.einsum("...s,...s->...", a, b)
        return cross / np.sqrt(np.einsum("...s,...s->...", a, a)
                               * np.einsum("...s,...s->...", b, b))


def _half_means(masks: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
    """Nan-means of `values` (trial, column) over the trials of each half: 2 × (boot, column)."""
    finite = np.isfinite(values)
    half = masks[0, 0].sum()
    if finite.all():
        first = masks[0] @ values
        # With every trial used by one half or the other, half 2 = total - half 1.
        second = (values.sum(axis=0) - first if 2 * half == values.shape[0]
                  else masks[1] @ values)
        return [first / half, second / half]
    filled = np.where(finite, values, 0.0)
    counts = finite.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [(m @ filled) / (m @ counts) for m in masks]


def split_half_reliability(x: xr.DataArray, n_boot=100, seed=0) -> xr.DataArray:
    """Spearman–Brown corrected split-half reliability over stimuli, averaged over resamples.

    Spec §1.4: per resample, the trials are split into two random halves (one permutation for
    all stimuli), each half is nan-averaged over trials, the two halves are Pearson-correlated
    across stimuli, and the correlation is corrected with SB(r) = 2r / (1 + r). The result is
    the nan-mean over resamples.

    Parameters
    ----------
    x : xarray.DataArray
        Dims include `stimulus` and `trial`; every other dim (e.g. time_bin, neuroid) gets its
        own reliability.
    n_boot : int
        Number of random split-halves.
    seed : int
        Seed of the trial permutations.

    Returns
    -------
    xarray.DataArray
        The remaining dims of `x`, with their coords; NaN where a unit does not vary.
    """
    for dim in ("stimulus", "trial"):
        if dim not in x.dims:
            raise ValueError(f"split_half_reliability: x needs dim {dim!r}; found {x.dims}")
    if x.sizes["trial"] < 2:
        raise ValueError(f"split_half_reliability: need >= 2 trials; found {x.sizes['trial']}")
    rest = [dim for dim in x.dims if dim not in ("stimulus", "trial")]
    # (trial, unit, stimulus): a chunk of units is then one contiguous block of columns.
    values = x.transpose("trial", *rest, "stimulus").values
    n_trial, n_stim = values.shape[0], values.shape[-1]
    flat = values.reshape(n_trial, -1, n_stim).astype(np.float64)
    n_rest = flat.shape[1]
    masks = split_half_masks(n_trial, n_boot, seed)
    out = np.empty(n_rest)
    # Half sums as one matrix product per chunk of units: (boot, trial) @ (trial, unit·stimulus).
    chunk = max(1, int(4e6 // max(1, n_boot * n_stim)))
    for start in range(0, n_rest, chunk):
        block = flat[:, start:start + chunk]
        halves = _half_means(masks, block.reshape(n_trial, -1))
        shape = (n_boot, block.shape[1], n_stim)
        r = _pearson(halves[0].reshape(shape), halves[1].reshape(shape))
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[start:start + chunk] = np.nanmean(2 * r / (1 + r), axis=0)
    template = x.isel(stimulus=0, trial=0, drop=True).transpose(*rest)
    return xr.DataArray(out.reshape([x.sizes[d] for d in rest]), dims=rest,
                        coords=template.coords, name="reliability")
