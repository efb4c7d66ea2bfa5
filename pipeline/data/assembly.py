"""The NeuralAssembly format: schema, validation, Zarr I/O and split-half reliability.

A NeuralAssembly is an `xr.DataArray` named "response" with dims (stimulus, trial, neuroid)
(optionally also time_bin), NaN for missing trials, and coords stimulus_id on stimulus and
neuroid_id, animal, area, reliability on neuroid.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import xarray as xr

from pipeline.compare.splits import trial_halves
from pipeline.io import read_zarr, write_zarr

log = logging.getLogger(__name__)

ALLEN_AREAS = ("VISp", "VISl", "VISal", "VISrl", "VISam", "VISpm")
REQUIRED_DIMS = ("stimulus", "trial", "neuroid")
OPTIONAL_DIMS = ("time_bin",)
REQUIRED_COORDS = {"stimulus_id": "stimulus", "neuroid_id": "neuroid", "animal": "neuroid",
                   "area": "neuroid", "reliability": "neuroid"}


def validate_assembly(da, source) -> xr.DataArray:
    """Check that `da` is a NeuralAssembly; return it unchanged.

    Parameters
    ----------
    da : xarray.DataArray
        Candidate assembly.
    source : str or path-like
        Where it came from; named in every error message.

    Raises
    ------
    ValueError
        Naming `source` and the missing or malformed dim or coord.
    """
    if not isinstance(da, xr.DataArray):
        raise ValueError(f"{source}: a NeuralAssembly must be an xarray.DataArray; "
                         f"got {type(da).__name__}")
    missing = [dim for dim in REQUIRED_DIMS if dim not in da.dims]
    extra = [dim for dim in da.dims if dim not in REQUIRED_DIMS + OPTIONAL_DIMS]
    if missing or extra:
        raise ValueError(f"{source}: NeuralAssembly dims must be {REQUIRED_DIMS} (optionally "
                         f"with {OPTIONAL_DIMS}); missing {missing}, unexpected {extra}, "
                         f"found {tuple(da.dims)}")
    for coord, dim in REQUIRED_COORDS.items():
        if coord not in da.coords:
            raise ValueError(f"{source}: NeuralAssembly has no coord {coord!r} "
                             f"(expected along dim {dim!r}); found coords {sorted(da.coords)}")
        if da.coords[coord].dims != (dim,):
            raise ValueError(f"{source}: coord {coord!r} must lie along ({dim!r},); "
                             f"found dims {da.coords[coord].dims}")
    for coord in ("stimulus_id", "neuroid_id"):
        values = da.coords[coord].values
        if np.unique(values).size != values.size:
            raise ValueError(f"{source}: coord {coord!r} must be unique; "
                             f"{values.size - np.unique(values).size} duplicate values")
    if not np.issubdtype(da.dtype, np.floating):
        raise ValueError(f"{source}: NeuralAssembly values must be float (NaN = missing "
                         f"trial); found dtype {da.dtype}")
    return da


def write_assembly(da: xr.DataArray, path) -> None:
    """Validate and write a NeuralAssembly to a Zarr store at `path` (atomically)."""
    validate_assembly(da, path)
    write_zarr(da.rename("response"), path, name="response")


def read_assembly(path) -> xr.DataArray:
    """Read a NeuralAssembly written by `write_assembly`: loaded into memory and validated."""
    ds = read_zarr(path)
    if "response" not in ds.data_vars:
        raise ValueError(f"{path}: no variable 'response' in the store; found {list(ds.data_vars)}")
    da = ds["response"].load()
    da.attrs = dict(ds.attrs)
    return validate_assembly(da, path)


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


def stack_populations(populations, stimulus_ids, coord_names) -> xr.DataArray:
    """One (stimulus, trial, neuroid) assembly from per-specimen arrays of any trial count.

    Each population's `frame` coord places its stimuli among `stimulus_ids`; stimuli or trials
    a specimen lacks are NaN. The `coord_names` neuroid coords are concatenated.
    """
    n_stimulus = len(stimulus_ids)
    n_trial = max(p.sizes["trial"] for p in populations)
    blocks = []
    for pop in populations:
        block = np.full((n_stimulus, n_trial, pop.sizes["neuroid"]), np.nan, dtype=np.float32)
        block[pop["frame"].values, :pop.sizes["trial"]] = pop.transpose("stimulus", "trial", "neuroid")
        blocks.append(block)
    coords = {name: ("neuroid", np.concatenate([p[name].values for p in populations]))
              for name in coord_names}
    return xr.DataArray(np.concatenate(blocks, axis=-1), dims=("stimulus", "trial", "neuroid"),
                        name="response",
                        coords={"stimulus_id": ("stimulus", np.asarray(stimulus_ids)),
                                "frame": ("stimulus", np.arange(n_stimulus)), **coords})
