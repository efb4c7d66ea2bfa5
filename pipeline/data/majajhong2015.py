"""Macaque V4/IT multi-unit data (Majaj, Hong et al. 2015): download, NeuralAssembly, stimuli.

Brain-Score ("brainio") publishes the public half of the set as three files in the bucket
``brainscore-storage/brainio-brainscore`` (notes/data-sources.md §4): the neural assembly
``assy_dicarlo_MajajHong2015_public.nc`` (netCDF, dims presentation × neuroid × time_bin, every
MultiIndex level stored as a plain coordinate) and the stimulus set ``stimulus_hvm-public.csv``
(one row per image; ``filename`` is the image's path in the zip) with
``stimulus_hvm-public.zip``. Each is verified against the sha1 the Brain-Score catalog
publishes. The assembly's presentations become (stimulus, trial) with trials ordered by
``repetition``, its time bins are kept or averaged over a window (spec §4.2: 70–170 ms in the
public file, 10 ms bins in the temporal variant), ``region`` becomes ``area`` and every neuroid
gets its SB split-half reliability.
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image
from tqdm import tqdm

from pipeline.data.assembly import trial_index, validate_assembly, with_bin_reliability
from pipeline.data.fetch.download import (Remote, fetch_all, http_settings, read_manifest,
                                          write_manifest)
from pipeline.data.reliability import split_half_reliability
from pipeline.data.stimuli import stimulus_set_sha256

log = logging.getLogger(__name__)

DATASET = "majajhong2015"
# Presentation coordinates that vary within an image, so they are not stimulus labels.
PER_PRESENTATION = {"repetition", "presentation", "stimulus", "id"}
STIMULUS_DIMS = ("stimulus", "y", "x", "channel")


def brainio_file_name(identifier: str, ext: str) -> str:
    """File name of a Brain-Score catalog entry (brain-score/core ``brainio/s3.py``).

    ``assy_`` + identifier with dots as underscores + ``.nc`` for assemblies, ``stimulus_`` for
    the ``.csv`` and ``.zip`` of stimulus sets.
    """
    prefix = "assy_" if ext == "nc" else "stimulus_"
    return f"{prefix}{identifier.replace('.', '_')}.{ext}"


def remotes(base_url: str, assembly: dict, stimulus_set: dict) -> dict[str, Remote]:
    """The assembly, stimulus CSV and stimulus zip of the catalog entries, by role, with sha1s."""
    base = base_url.rstrip("/")
    files = {"assembly": (brainio_file_name(assembly["identifier"], "nc"), assembly["sha1"]),
             "stimulus_csv": (brainio_file_name(stimulus_set["identifier"], "csv"),
                              stimulus_set["csv_sha1"]),
             "stimulus_zip": (brainio_file_name(stimulus_set["identifier"], "zip"),
                              stimulus_set["zip_sha1"])}
    return {role: Remote(url=f"{base}/{name}", path=name, digests={"sha1": sha1})
            for role, (name, sha1) in files.items()}


def download_majajhong2015(out_dir, *, base_url: str, assembly: dict, stimulus_set: dict,
                           retries: int, backoff: float, timeout: float, dataset: str = DATASET,
                           manifest_name: str = "manifest.json") -> Path:
    """Fetch and sha1-verify the assembly and the stimulus set; write ``out_dir/manifest.json``.

    Parameters
    ----------
    out_dir : path-like
        The cache, ``data/raw/majajhong2015``; verified files there are not fetched again.
    base_url, assembly, stimulus_set, retries, backoff, timeout
        The config block ``datasets.majajhong2015.download``: the bucket folder, the catalog
        entries ({identifier, sha1} and {identifier, csv_sha1, zip_sha1}) and the retry
        settings.
    dataset, manifest_name : str
        Name in log lines and errors; file name of the manifest in `out_dir`.

    Returns
    -------
    pathlib.Path
        The manifest: the assembly, stimulus CSV and zip by role, with their sha1 checks.
    """
    out_dir = Path(out_dir)
    wanted = remotes(base_url, assembly, stimulus_set)
    results = fetch_all(wanted.values(), out_dir, dataset=dataset,
                        **http_settings(retries=retries, backoff=backoff, timeout=timeout))
    files = [{"path": remote.path, "role": role, "url": remote.url, "sha256": result.sha256,
              "size": result.size, "verified_by": result.verified_by}
             for (role, remote), result in zip(wanted.items(), results)]
    source = {"base_url": base_url, "assembly": assembly, "stimulus_set": stimulus_set}
    manifest = out_dir / manifest_name
    write_manifest(manifest, dataset, source, files)
    return manifest


def _manifest_file(manifest, role: str) -> Path:
    _, files = read_manifest(manifest, role=role)
    if len(files) != 1:
        raise ValueError(f"{manifest}: expected one file with role {role!r}; found {len(files)}")
    return files[0]["local"]


# ---------------------------------------------------------------------------- the assembly

def _netcdf_engine(path: Path) -> str:
    """h5netcdf for netCDF-4 (HDF5) files, scipy for netCDF-3 classic, by the file's magic."""
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic.startswith(b"\x89HDF"):
        return "h5netcdf"
    if magic.startswith(b"CDF"):
        return "scipy"
    raise ValueError(f"{path}: not a netCDF file (first bytes {magic!r}); expected a Brain-Score "
                     f"assembly (.nc)")


def read_brainscore_assembly(path) -> xr.DataArray:
    """A Brain-Score netCDF assembly as a DataArray (presentation, neuroid[, time_bin]).

    Files written by brainio's ``write_netcdf`` hold one variable ``data``; older ones hold one
    variable named after the assembly. A legacy ``image_id`` coordinate is renamed
    ``stimulus_id``, as Brain-Score's own loaders do.
    """
    path = Path(path)
    with xr.open_dataset(path, engine=_netcdf_engine(path)) as ds:
        names = list(ds.data_vars)
        if "data" in names:
            name = "data"
        elif len(names) == 1:
            name = names[0]
        else:
            raise ValueError(f"{path}: expected one data variable (or one named 'data'); "
                             f"found {names}")
        da = ds[name].load()
    if "stimulus_id" not in da.coords and "image_id" in da.coords:
        da = da.rename({"image_id": "stimulus_id"})
    for dim, coords in (("presentation", ("stimulus_id",)),
                        ("neuroid", ("neuroid_id", "animal", "region"))):
        if dim not in da.dims:
            raise ValueError(f"{path}: assembly has no dim {dim!r}; found {da.dims}")
        for coord in coords:
            if coord not in da.coords or da.coords[coord].dims != (dim,):
                raise ValueError(f"{path}: assembly needs coord {coord!r} along {dim!r}; found "
                                 f"coords {sorted(da.coords)}")
    return da


def _plain(values: pd.Series) -> np.ndarray:
    """A column as a numpy array that Zarr stores: numbers as they are, anything else as str."""
    array = values.to_numpy()
    return array if array.dtype.kind in "biuf" else array.astype(str)


def stimulus_labels(coords: dict, stimulus: np.ndarray, n_stimulus: int) -> dict:
    """Presentation coordinates that are constant within each stimulus, one value per stimulus."""
    labels = {}
    for name, values in coords.items():
        frame = pd.DataFrame({"stimulus": stimulus, "value": values})
        if (frame.groupby("stimulus")["value"].nunique(dropna=False) > 1).any():
            continue
        first = frame.drop_duplicates("stimulus").set_index("stimulus")["value"]
        labels[name] = ("stimulus", _plain(first.reindex(np.arange(n_stimulus))))
    return labels


def _time_window(da: xr.DataArray, window, source) -> xr.DataArray:
    """The time bins lying inside `window` (seconds), as (…, time_bin) with bins in seconds."""
    if "time_bin" not in da.dims:
        return da.expand_dims(time_bin=1, axis=-1)
    start = np.asarray(da["time_bin_start"].values, dtype=float) / 1000.0
    end = np.asarray(da["time_bin_end"].values, dtype=float) / 1000.0
    inside = (start >= window[0] - 1e-9) & (end <= window[1] + 1e-9)
    if not inside.any():
        bins = ", ".join(f"[{a:g}, {b:g})" for a, b in zip(start, end))
        raise ValueError(f"{source}: no time bin lies inside window {list(window)} s; the file's "
                         f"bins are {bins}")
    da = da.isel(time_bin=np.flatnonzero(inside)).drop_vars(["time_bin_start", "time_bin_end"])
    return da.assign_coords(time_bin=("time_bin", start[inside]),
                            time_bin_end=("time_bin", end[inside]))


def neural_assembly(raw: xr.DataArray, *, areas, window=(0.07, 0.17), time_bins: str = "mean",
                    variations=None, n_boot: int = 900, seed: int = 0,
                    source: str = DATASET) -> xr.DataArray:
    """A Brain-Score assembly → NeuralAssembly (stimulus, trial, neuroid[, time_bin]).

    Parameters
    ----------
    raw : xarray.DataArray
        From `read_brainscore_assembly`.
    areas : sequence of str
        ``region`` values to keep (V4, IT), in this order.
    window : (float, float)
        Seconds after onset; only bins inside it are used.
    time_bins : {"mean", "keep"}
        "mean" averages the window's bins; "keep" keeps them as dim ``time_bin`` (coords
        time_bin and time_bin_end: bin edges in s) with a per-bin reliability
        ``bin_reliability`` (neuroid, time_bin), for the temporal stage (spec §4.2: 25 bins of
        10 ms; `read_assembly` gives time-averaged analyses the mean over the bins).
    variations : sequence of int, optional
        Keep only presentations of these HvM variation levels (coord ``variation``).
    n_boot, seed : int
        Split-halves of the reliability (spec §4.2: 900) and their seed.
    source : str
        Named in errors.

    Returns
    -------
    xarray.DataArray
        NaN where a stimulus has fewer repetitions than the most repeated one; coords
        stimulus_id (+ the stimulus-level presentation coords), neuroid_id, animal, area
        (+ the file's other neuroid coords), reliability (of the window mean); attrs window.
    """
    if time_bins not in ("mean", "keep"):
        raise ValueError(f"{source}: time_bins must be 'mean' or 'keep'; got {time_bins!r}")
    region = raw["region"].values.astype(str)
    unknown = sorted(set(areas) - set(region))
    if unknown:
        raise ValueError(f"{source}: areas {unknown} not in the assembly's regions "
                         f"{sorted(set(region))}")
    keep = np.concatenate([np.flatnonzero(region == area) for area in areas])
    da = raw.isel(neuroid=keep)
    if variations is not None:
        if "variation" not in da.coords:
            raise ValueError(f"{source}: `variations` set but the assembly has no coord "
                             f"'variation'")
        da = da.isel(presentation=np.flatnonzero(np.isin(da["variation"].values,
                                                         list(variations))))
        if da.sizes["presentation"] == 0:
            raise ValueError(f"{source}: no presentation has variation in {list(variations)}")
    da = _time_window(da, window, source).transpose("presentation", "neuroid", "time_bin")
    order = da["repetition"].values if "repetition" in da.coords else None
    ids, stimulus, trial = trial_index(da["stimulus_id"].values, order)
    values = np.full((len(ids), trial.max() + 1, da.sizes["neuroid"], da.sizes["time_bin"]),
                     np.nan, dtype=np.float32)
    values[stimulus, trial] = da.values
    presentation_coords = {name: c.values for name, c in da.coords.items()
                           if c.dims == ("presentation",) and name != "stimulus_id"
                           and name not in PER_PRESENTATION}
    neuroid_coords = {name: ("neuroid", c.values) for name, c in da.coords.items()
                      if c.dims == ("neuroid",) and name not in ("region", "neuroid_id", "animal")}
    assembly = xr.DataArray(
        values, dims=("stimulus", "trial", "neuroid", "time_bin"), name="response",
        coords={"stimulus_id": ("stimulus", ids),
                **stimulus_labels(presentation_coords, stimulus, len(ids)),
                **neuroid_coords, "area": ("neuroid", region[keep]),
                "neuroid_id": ("neuroid", da["neuroid_id"].values.astype(str)),
                "animal": ("neuroid", da["animal"].values.astype(str)),
                **{name: c for name, c in da.coords.items() if c.dims == ("time_bin",)}})
    mean = assembly.mean("time_bin", skipna=False)
    reliability = split_half_reliability(mean, n_boot=n_boot, seed=seed)
    if time_bins == "mean":
        assembly = mean
    else:
        assembly = with_bin_reliability(assembly, n_boot, seed)
    assembly = assembly.assign_coords(reliability=("neuroid", reliability.values))
    assembly.attrs = {"window": [float(w) for w in window], "time_bins": time_bins,
                      "source": source}
    log.info("%s: %d stimuli x %d trials (max) x %d neuroids (%s), %d time bins in %s s",
             source, *assembly.shape[:3], ", ".join(f"{a} {np.sum(region[keep] == a)}"
                                                    for a in areas),
             len(da["time_bin"]), list(window))
    return validate_assembly(assembly, source)


def assemble_majajhong2015(manifest, *, areas, window, time_bins: str, variations=None,
                           n_boot: int, seed: int) -> xr.DataArray:
    """`neural_assembly` of the netCDF file a download manifest lists.

    The keyword arguments are the config block ``datasets.majajhong2015.assemble``, as in
    `neural_assembly`.
    """
    path = _manifest_file(manifest, "assembly")
    return neural_assembly(read_brainscore_assembly(path), areas=tuple(areas),
                           window=tuple(window), time_bins=time_bins, variations=variations,
                           n_boot=n_boot, seed=seed, source=str(path))


# ---------------------------------------------------------------------------- stimuli

def read_stimulus_table(path) -> pd.DataFrame:
    """A Brain-Score stimulus CSV: ``stimulus_id`` (or legacy ``image_id``) and ``filename``."""
    table = pd.read_csv(path)
    if "stimulus_id" not in table and "image_id" in table:
        table = table.rename(columns={"image_id": "stimulus_id"})
    for column in ("stimulus_id", "filename"):
        if column not in table:
            raise ValueError(f"{path}: stimulus CSV needs a column {column!r}; found "
                             f"{list(table.columns)}")
    table["stimulus_id"] = table["stimulus_id"].astype(str)
    if table["stimulus_id"].duplicated().any():
        raise ValueError(f"{path}: stimulus_id values must be unique; "
                         f"{int(table['stimulus_id'].duplicated().sum())} repeat")
    return table.sort_values("stimulus_id", kind="stable").reset_index(drop=True)


def _zip_members(archive: zipfile.ZipFile, filenames, source) -> list[str]:
    """Zip member of each CSV ``filename``: the name itself, or under one top folder."""
    members = [m for m in archive.namelist() if not m.endswith("/")]
    by_name = {m: m for m in members}
    by_name.update({m.split("/", 1)[1]: m for m in members if "/" in m})
    missing = [f for f in filenames if f not in by_name]
    if missing:
        raise ValueError(f"{source}: {len(missing)} CSV filenames are not in the zip (first: "
                         f"{missing[0]!r})")
    extra = len(members) - len(set(filenames))
    if extra:
        log.warning("%s: %d zip members are not listed in the CSV; ignored", source, extra)
    return [by_name[f] for f in filenames]


def load_image(data: bytes, size: int | None) -> np.ndarray:
    """RGB uint8 (size, size, 3) of an image file's bytes (bilinear with antialiasing)."""
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def label_coords(table: pd.DataFrame, labels: dict, source) -> dict:
    """Stimulus coords: the label levels mapped from CSV columns, and every other CSV column."""
    coords = {}
    for level, column in labels.items():
        if column not in table:
            raise ValueError(f"{source}: label level {level!r} maps to CSV column {column!r}, "
                             f"which is missing; columns are {list(table.columns)}")
        coords[level] = ("stimulus", table[column].to_numpy(dtype=str))
    for column in table.columns:
        if column in coords or column in STIMULUS_DIMS or column in ("image", "filename"):
            continue
        coords[column] = ("stimulus", _plain(table[column]))
    return coords


def stimulus_set_from_files(csv_path, zip_path, *, name: str, size: int | None = 64,
                            labels: dict | None = None) -> xr.Dataset:
    """A StimulusSet from a Brain-Score stimulus CSV and its zip of images.

    Parameters
    ----------
    csv_path, zip_path : path-like
        The catalog's CSV (one row per image) and zip (members named by ``filename``).
    name : str
        Stored as attrs["name"].
    size : int or None
        Output side in pixels (square images, resized without cropping); None keeps them.
    labels : dict, optional
        Label level → CSV column, e.g. {"superordinate": "category_name", "basic":
        "object_name", "subordinate": "object_name"}.

    Returns
    -------
    xarray.Dataset
        ``image`` (stimulus, y, x, channel) uint8 RGB, sorted by stimulus_id; coords
        stimulus_id, the label levels and the CSV's other columns; attrs name, sha256,
        preprocessing, source.
    """
    table = read_stimulus_table(csv_path)
    with zipfile.ZipFile(zip_path) as archive:
        members = _zip_members(archive, table["filename"].tolist(), zip_path)
        images = [load_image(archive.read(m), size)
                  for m in tqdm(members, desc=f"{name} images", unit="img", disable=None)]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"{zip_path}: images differ in shape {sorted(shapes)}; set a "
                         f"stimulus_size to resize them")
    ds = xr.Dataset({"image": (STIMULUS_DIMS, np.stack(images))},
                    coords={"stimulus_id": ("stimulus", table["stimulus_id"].to_numpy(dtype=str)),
                            **label_coords(table.drop(columns="stimulus_id"), labels or {},
                                           csv_path)})
    ds.attrs = {"name": name, "source": f"{Path(csv_path).name} + {Path(zip_path).name}",
                "preprocessing": "as given" if size is None else f"RGB, resize {size}"}
    ds.attrs["sha256"] = stimulus_set_sha256(ds)
    return ds


def majajhong2015_stimuli(manifest, *, name: str, stimulus_size: int | None,
                          labels: dict) -> xr.Dataset:
    """The HvM StimulusSet of a download manifest (config ``datasets.majajhong2015.stimuli``).

    As `stimulus_set_from_files`, with `stimulus_size` the side in pixels and `labels` the label
    level → CSV column map.
    """
    return stimulus_set_from_files(_manifest_file(manifest, "stimulus_csv"),
                                   _manifest_file(manifest, "stimulus_zip"), name=name,
                                   size=stimulus_size, labels=labels)
