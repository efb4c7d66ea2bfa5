"""The NeuralAssembly format: schema, validation, Zarr I/O, and the steps every source shares.

A NeuralAssembly is an `xr.DataArray` named "response" with dims (stimulus, trial, neuroid)
(optionally also time_bin), NaN for missing trials, and coords stimulus_id on stimulus and
neuroid_id, animal, area, reliability on neuroid. The sources build one from per-specimen
arrays (`stack_populations`), presentations (`trial_index`) and the specimen rule of spec
§2.1.4 (`specimens_by_quantile`).

Time-resolved assemblies (``time_bins: keep``) hold dim time_bin with coords time_bin (bin
start, s) and time_bin_end on it, and bin_reliability (neuroid, time_bin), the SB split-half
reliability per unit and bin (`with_bin_reliability`). `read_assembly` returns their time
average unless asked to keep the bins (`time_average`), so every time-averaged analysis reads
such a store as it reads a time-averaged one; the temporal analyses
(`pipeline.compare.temporal`) keep them.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.data.reliability import split_half_reliability
from pipeline.io import load_zarr, write_zarr

log = logging.getLogger(__name__)

ALLEN_AREAS = ("VISp", "VISl", "VISal", "VISrl", "VISam", "VISpm")
REQUIRED_DIMS = ("stimulus", "trial", "neuroid")
OPTIONAL_DIMS = ("time_bin",)
REQUIRED_COORDS = {"stimulus_id": "stimulus", "neuroid_id": "neuroid", "animal": "neuroid",
                   "area": "neuroid", "reliability": "neuroid"}
TIME_BINS = ("mean", "keep")


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
        Naming `source` and the missing or malformed dim or coord, or, for a value of ±inf,
        the coordinates (stimulus_id, trial, neuroid_id) of the first. NaN is allowed: it
        marks a missing trial (`pipeline.compare` scores every unit on the stimuli it has).
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
    if "time_bin" in da.dims:
        _validate_time_bins(da, source)
    for coord in ("stimulus_id", "neuroid_id"):
        values = da.coords[coord].values
        if np.unique(values).size != values.size:
            raise ValueError(f"{source}: coord {coord!r} must be unique; "
                             f"{values.size - np.unique(values).size} duplicate values")
    if not np.issubdtype(da.dtype, np.floating):
        raise ValueError(f"{source}: NeuralAssembly values must be float (NaN = missing "
                         f"trial); found dtype {da.dtype}")
    infinite = np.isinf(np.asarray(da.values))
    if infinite.any():
        first = dict(zip(da.dims, np.argwhere(infinite)[0]))
        where = ", ".join(
            f"{name}={da.coords[name].values[first[dim]].item()!r}"
            if name in da.coords and da.coords[name].dims == (dim,) else f"{dim}={int(first[dim])}"
            for name, dim in (("stimulus_id", "stimulus"), ("trial", "trial"), ("neuroid_id", "neuroid"),
                              ("time_bin", "time_bin")) if dim in first)
        raise ValueError(f"{source}: NeuralAssembly values must be finite or NaN (NaN = missing trial); "
                         f"found {int(infinite.sum())} infinite values, the first "
                         f"{da.values[tuple(first.values())]} at {where}")
    return da


def _validate_time_bins(da, source) -> None:
    """time_bin needs increasing bin starts as its coord (and, if given, ends after them)."""
    if "time_bin" not in da.coords or da.coords["time_bin"].dims != ("time_bin",):
        raise ValueError(f"{source}: a NeuralAssembly with dim 'time_bin' needs coord 'time_bin' "
                         f"(bin start in s) along it; found coords {sorted(da.coords)}")
    start = np.asarray(da["time_bin"].values, dtype=float)
    if start.size > 1 and not (np.diff(start) > 0).all():
        raise ValueError(f"{source}: coord 'time_bin' must increase (bin starts in s); found "
                         f"{start.tolist()}")
    if "time_bin_end" in da.coords and not (np.asarray(da["time_bin_end"].values) > start).all():
        raise ValueError(f"{source}: coord 'time_bin_end' must exceed 'time_bin' in every bin")


def time_bin_coords(start, bin_size) -> dict:
    """Coords of a time_bin dim: bin starts ``time_bin`` and ends ``time_bin_end`` (s)."""
    start = np.asarray(start, dtype=np.float64)
    return {"time_bin": ("time_bin", start), "time_bin_end": ("time_bin", start + bin_size)}


def with_bin_reliability(assembly: xr.DataArray, n_boot: int, seed: int) -> xr.DataArray:
    """The assembly with coord bin_reliability (neuroid, time_bin): SB split-half reliability
    per unit and bin (spec §4.2 noise ceiling per bin; bootstrapped, `split_half_reliability`)."""
    per_bin = split_half_reliability(assembly, n_boot=n_boot, seed=seed)
    return assembly.assign_coords(bin_reliability=(
        ("neuroid", "time_bin"), per_bin.transpose("neuroid", "time_bin").values))


def time_average(assembly: xr.DataArray) -> xr.DataArray:
    """The time-averaged assembly of a time-resolved one (unchanged without time_bin).

    Each neuroid is averaged over the bins of its own window when the assembly has coords
    window_start and window_stop on neuroid (the Neuropixels selection of spec §2.1.3, so the
    result equals the ``time_bins: mean`` assembly), else over every bin; NaN trials stay NaN.
    Coords along time_bin are dropped, the neuroid's reliability (already of the window mean)
    is kept.
    """
    if "time_bin" not in assembly.dims:
        return assembly
    start = assembly["time_bin"].values
    if "window_start" in assembly.coords and "window_stop" in assembly.coords:
        lo, hi = assembly["window_start"].values, assembly["window_stop"].values
        inside = (start[None, :] >= lo[:, None] - 1e-9) & (start[None, :] < hi[:, None] - 1e-9)
    else:
        inside = np.ones((assembly.sizes["neuroid"], start.size), dtype=bool)
    stripped = assembly.drop_vars([name for name, c in assembly.coords.items()
                                   if "time_bin" in c.dims])
    parts = []
    for pattern in np.unique(inside, axis=0):
        units = np.flatnonzero((inside == pattern).all(1))
        part = stripped.isel(neuroid=units, time_bin=np.flatnonzero(pattern))
        parts.append((units, part.mean("time_bin", skipna=False)))
    order = np.argsort(np.concatenate([u for u, _ in parts]), kind="stable")
    mean = xr.concat([p for _, p in parts], dim="neuroid").isel(neuroid=order)
    mean = mean.transpose("stimulus", "trial", "neuroid")
    mean.attrs = dict(assembly.attrs, time_bins="mean")
    return mean


def write_assembly(da: xr.DataArray, path) -> None:
    """Validate and write a NeuralAssembly to a Zarr store at `path` (atomically)."""
    validate_assembly(da, path)
    write_zarr(da.rename("response"), path, name="response")


def read_assembly(path, time_bins: str = "mean") -> xr.DataArray:
    """Read a NeuralAssembly written by `write_assembly`: loaded into memory and validated.

    Parameters
    ----------
    path : path-like
        The Zarr store.
    time_bins : {"mean", "keep"}
        A time-resolved store is returned time-averaged (`time_average`; what every
        time-averaged analysis reads) or with its time_bin dim ("keep"). Stores without
        time_bin are returned as stored either way.
    """
    if time_bins not in TIME_BINS:
        raise ValueError(f"read_assembly: time_bins must be one of {TIME_BINS}; got {time_bins!r}")
    ds = load_zarr(path)
    if "response" not in ds.data_vars:
        raise ValueError(f"{path}: no variable 'response' in the store; found {list(ds.data_vars)}")
    da = ds["response"].load()
    da.attrs = dict(ds.attrs)
    da = validate_assembly(da, path)
    return da if time_bins == "keep" else time_average(da)


def stack_populations(populations, stimulus_ids, coord_names, time_coords=None) -> xr.DataArray:
    """One (stimulus, trial, neuroid) assembly from per-specimen arrays of any trial count.

    Each population's `frame` coord places its stimuli among `stimulus_ids`; stimuli or trials
    a specimen lacks are NaN. The `coord_names` neuroid coords are concatenated. Populations
    with a time_bin dim (all the same bins) give (stimulus, trial, time_bin, neuroid), with
    `time_coords` (`time_bin_coords`) on time_bin.
    """
    n_stimulus = len(stimulus_ids)
    n_trial = max(p.sizes["trial"] for p in populations)
    dims = ("stimulus", "trial", "time_bin", "neuroid") if "time_bin" in populations[0].dims \
        else ("stimulus", "trial", "neuroid")
    blocks = []
    for pop in populations:
        shape = (n_stimulus, n_trial, *[pop.sizes[d] for d in dims[2:]])
        block = np.full(shape, np.nan, dtype=np.float32)
        block[pop["frame"].values, :pop.sizes["trial"]] = pop.transpose(*dims)
        blocks.append(block)
    coords = {name: ("neuroid", np.concatenate([p[name].values for p in populations]))
              for name in coord_names}
    if "time_bin" in dims:
        coords.update(time_coords or {})
    return xr.DataArray(np.concatenate(blocks, axis=-1), dims=dims,
                        name="response",
                        coords={"stimulus_id": ("stimulus", np.asarray(stimulus_ids)),
                                "frame": ("stimulus", np.arange(n_stimulus)), **coords})


def trial_index(stimulus_ids, order=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stimulus and trial position of each presentation.

    Stimuli are the sorted unique ids; a stimulus' presentations are numbered 0, 1, ... in the
    order of `order` (e.g. repetition or run), ties in the given order.

    Returns
    -------
    (ids, stimulus, trial)
        The unique stimulus ids, and per presentation its stimulus position and trial number.
    """
    ids, stimulus = np.unique(np.asarray(stimulus_ids).astype(str), return_inverse=True)
    order = np.zeros(len(stimulus)) if order is None else np.asarray(order)
    frame = pd.DataFrame({"stimulus": stimulus, "order": order,
                          "position": np.arange(len(stimulus))})
    frame = frame.sort_values(["stimulus", "order", "position"], kind="stable")
    trial = np.empty(len(stimulus), dtype=np.int64)
    trial[frame["position"].values] = frame.groupby("stimulus").cumcount().values
    return ids, stimulus, trial


def specimens_by_quantile(units: dict[tuple[str, str], int], quantile: float) -> set:
    """(animal, area) pairs whose unit count reaches ceil(quantile) of their area's counts.

    Spec §2.1.4 (mouse-vision ``_gen_spec_map``: ``ceil(np.percentile(counts, 75))``).
    """
    keep = set()
    for area in {a for _, a in units}:
        counts = {key: n for key, n in units.items() if key[1] == area}
        threshold = math.ceil(np.quantile(list(counts.values()), quantile))
        keep |= {key for key, n in counts.items() if n >= threshold}
    return keep


def keep_specimens(selected: list, counts: dict, quantile: float | None) -> list:
    """The (key, population) pairs of `selected` whose specimen passes `specimens_by_quantile`.

    `counts` maps each (animal, area) key to its count of kept units; None keeps all.
    """
    if quantile is None or not counts:
        return selected
    keep = specimens_by_quantile(counts, quantile)
    return [(key, population) for key, population in selected if key in keep]
