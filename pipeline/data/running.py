"""Running modulation of a unit's response at its preferred image (Allen `run_pval_ns`).

Both Allen analyses compare, at each unit's preferred image, the trials in which the mouse ran
(mean speed >= 1 cm/s over the response window) with the trials in which it sat still, by
Welch's t-test; the p-value is NaN when either group is too small. They differ in two details,
which are parameters here:

- Neuropixels (AllenSDK ``ecephys/stimulus_analysis/stimulus_analysis.py``,
  ``get_running_modulation``): at least 2 trials in each group, and a presentation without
  running samples (NaN speed) counts as stationary (``NaN >= 1`` is False).
- Two-photon (AllenSDK ``brain_observatory/natural_scenes.py``, ``get_peak``): more than 4 trials
  in each group, and a NaN speed belongs to neither group. Its ``p_run_ns`` is published as the
  cell metric ``p_run_mod_ns``.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from scipy import stats


def preferred_stimulus(response: xr.DataArray) -> np.ndarray:
    """Index along `stimulus` of each neuroid's largest trial-mean response (first on ties)."""
    mean = response.mean("trial", skipna=True).transpose("stimulus", "neuroid").values
    return np.argmax(np.where(np.isfinite(mean), mean, -np.inf), axis=0)


def running_pvalue(response: xr.DataArray, speed: xr.DataArray, *, threshold: float = 1.0,
                   min_trials: int = 2, nan_is_stationary: bool = True) -> xr.DataArray:
    """Welch t-test p-value of running vs stationary trials at each neuroid's preferred image.

    Parameters
    ----------
    response : xarray.DataArray
        (stimulus, trial, neuroid) per-trial responses (spike counts or mean ΔF/F); NaN marks a
        missing trial.
    speed : xarray.DataArray
        (stimulus, trial) mean running speed (cm/s) over each presentation.
    threshold : float
        A trial is running when its speed is >= threshold.
    min_trials : int
        Both groups need at least this many trials, else the p-value is NaN.
    nan_is_stationary : bool
        Count trials with NaN speed as stationary (Neuropixels) or drop them (two-photon).

    Returns
    -------
    xarray.DataArray
        "run_pval" along neuroid (with its coords); NaN when a group is too small or both
        groups are constant.
    """
    for name, da, dims in [("response", response, {"stimulus", "trial", "neuroid"}),
                           ("speed", speed, {"stimulus", "trial"})]:
        if set(da.dims) != dims:
            raise ValueError(f"running_pvalue: {name} must have dims {sorted(dims)}; "
                             f"found {da.dims}")
    values = response.transpose("stimulus", "trial", "neuroid").values.astype(np.float64)
    speeds = speed.transpose("stimulus", "trial").values.astype(np.float64)
    pref = preferred_stimulus(response)
    n_neuroid = values.shape[2]
    trials = values[pref, :, np.arange(n_neuroid)]               # (neuroid, trial)
    s = speeds[pref]                                              # (neuroid, trial)
    present = np.isfinite(trials)
    with np.errstate(invalid="ignore"):
        running = present & (s >= threshold)
        still = present & ((s < threshold) | (np.isnan(s) & nan_is_stationary))
    pvals = np.full(n_neuroid, np.nan)
    for n in range(n_neuroid):
        run, stat = trials[n, running[n]], trials[n, still[n]]
        if run.size >= min_trials and stat.size >= min_trials:
            with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                # Constant groups (e.g. no spikes) give NaN, which the filters keep.
                warnings.simplefilter("ignore", RuntimeWarning)
                pvals[n] = stats.ttest_ind(run, stat, equal_var=False).pvalue
    template = response.isel(stimulus=0, trial=0, drop=True)
    return xr.DataArray(pvals, dims=("neuroid",), coords=template.coords, name="run_pval")


def presentation_speed(times: np.ndarray, velocity: np.ndarray, start: np.ndarray,
                       stop: np.ndarray) -> np.ndarray:
    """Mean velocity of the samples whose time lies in [start, stop) of each presentation.

    NaN samples are skipped and a presentation without a finite sample gets NaN, as the pandas
    mean in AllenSDK's ``get_velocity_for_presentation`` does.
    """
    order = np.argsort(np.ravel(times), kind="stable")
    times = np.asarray(times, dtype=np.float64).ravel()[order]
    velocity = np.asarray(velocity, dtype=np.float64).ravel()[order]
    lo = np.searchsorted(times, start, side="left")
    hi = np.searchsorted(times, stop, side="left")
    finite = np.isfinite(velocity)
    total = np.concatenate([[0.0], np.cumsum(np.where(finite, velocity, 0.0))])
    count = np.concatenate([[0], np.cumsum(finite)])
    n = count[hi] - count[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (total[hi] - total[lo]) / n
    mean[n == 0] = np.nan
    return mean
