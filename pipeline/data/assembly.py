"""The NeuralAssembly format: schema, validation, Zarr I/O, and the steps every source shares.

A NeuralAssembly is an `xr.DataArray` named "response" with dims (stimulus, trial, neuroid)
(optionally also time_bin), NaN for missing trials, and coords stimulus_id on stimulus and
neuroid_id, animal, area, reliability on neuroid. The sources build one from per-specimen
arrays (`stack_populations`), presentations (`trial_index`) and the specimen rule of spec
§2.1.4 (`specimens_by_quantile`).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.io import load_zarr, write_zarr

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


def write_assembly(da: xr.DataArray, path) -> None:
    """Validate and write a NeuralAssembly to a Zarr store at `path` (atomically)."""
    validate_assembly(da, path)
    write_zarr(da.rename("response"), path, name="response")


def read_assembly(path) -> xr.DataArray:
    """Read a NeuralAssembly written by `write_assembly`: loaded into memory and validated."""
    ds = load_zarr(path)
    if "response" not in ds.data_vars:
        raise ValueError(f"{path}: no variable 'response' in the store; found {list(ds.data_vars)}")
    da = ds["response"].load()
    da.attrs = dict(ds.attrs)
    return validate_assembly(da, path)


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
