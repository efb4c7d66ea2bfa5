"""Human fMRI (Horikawa & Kamitani 2017, "Generic Object Decoding"): download, assembly, stimuli.

The preprocessed data are one BData HDF5 file per subject on figshare (article 7387130;
notes/data-sources.md §5), listed through the figshare API, whose ``computed_md5`` and
``size`` verify each download. A BData file (KamitaniLab/bdpy ``bdata.py``) holds a matrix
``dataSet`` (samples × columns; ``dataset`` in newer files) and ``metaData`` (``metadata``)
with ``key``, ``description`` and ``value`` (keys × columns): a key marks the columns it
applies to with 1 (ROI_V1, ..., VoxelData, DataType, stimulus_id) or holds per-column values
(voxel_x, ...). The samples of one DataType (2: test images seen, 35 runs) become
(stimulus, trial) with trials ordered by run; each ROI's voxels become neuroids with
``area`` = ROI and ``animal`` = subject. One voxel in two ROIs is a neuroid of each.

The stimuli are ImageNet images that are not distributed with the data (they are shared on
request). `stimulus_set_from_folder` builds the stimulus set only from a folder the user
provides, finding each image by the ImageNet name its id encodes (``1518878.010042`` →
``n01518878_10042``); without it, only inter-subject RSA can run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import xarray as xr
from PIL import Image
from tqdm import tqdm

from pipeline.data.assembly import read_assembly, trial_index, validate_assembly
from pipeline.data.fetch.download import (DownloadError, Remote, fetch_all, http_settings,
                                          read_manifest, write_manifest)
from pipeline.data.fetch.remote import get_json
from pipeline.data.hdf5 import strings
from pipeline.data.natural_scenes import preprocess
from pipeline.data.reliability import split_half_reliability
from pipeline.data.stimuli import stimulus_set_sha256

log = logging.getLogger(__name__)

DATASET = "horikawa2017"
ROIS = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC")
LABEL_KEYS = ("stimulus_id", "Label")          # the older scripts name the label column Label


def figshare_files(api_url: str, article: int, *, dataset: str, session=None,
                   page_size: int = 100, **http) -> list[dict]:
    """Every file record of a figshare article (``GET /articles/{id}/files``, all pages)."""
    url = f"{api_url.rstrip('/')}/articles/{article}/files"
    records, page = [], 1
    while True:
        batch = get_json(url, params={"page": page, "page_size": page_size}, dataset=dataset,
                         session=session, **http)
        if not isinstance(batch, list):
            raise DownloadError(f"{dataset}: {url} did not return a list of files: "
                                f"{str(batch)[:200]}")
        new = [r for r in batch if r.get("id") not in {s.get("id") for s in records}]
        records += new
        if len(batch) < page_size or not new:
            return records
        page += 1


def subject_remotes(records: list[dict], subjects, *, dataset: str) -> list[Remote]:
    """Remotes of ``Subject{n}.h5`` for each wanted subject, with figshare's md5 and size."""
    by_name = {r.get("name"): r for r in records}
    remotes = []
    for subject in subjects:
        name = f"Subject{subject}.h5"
        record = by_name.get(name)
        if record is None:
            raise DownloadError(f"{dataset}: {name} is not among the article's files "
                                f"{sorted(n for n in by_name if n)}")
        md5 = record.get("computed_md5") or record.get("supplied_md5")
        remotes.append(Remote(url=record["download_url"], path=name, size=record.get("size"),
                              digests={"md5": md5} if md5 else {}))
    return remotes


def download_horikawa2017(out_dir, *, api_url: str, article: int, subjects, retries: int,
                          backoff: float, timeout: float, dataset: str = DATASET,
                          manifest_name: str = "manifest.json") -> Path:
    """Fetch the subjects' BData files, verified by md5 and size; write ``out_dir/manifest.json``.

    Parameters
    ----------
    out_dir : path-like
        The cache, ``data/raw/horikawa2017``.
    api_url, article, subjects, retries, backoff, timeout
        The config block ``datasets.horikawa2017.download``.
    dataset, manifest_name : str
        Name in log lines and errors; file name of the manifest in `out_dir`.

    Returns
    -------
    pathlib.Path
        The manifest: each subject file (role "subject", with its subject name) and its md5
        and size checks.
    """
    out_dir = Path(out_dir)
    http = http_settings(retries=retries, backoff=backoff, timeout=timeout)
    records = figshare_files(api_url, article, dataset=dataset, **http)
    wanted = subject_remotes(records, subjects, dataset=dataset)
    results = fetch_all(wanted, out_dir, dataset=dataset, **http)
    files = [{"path": r.path, "role": "subject", "subject": f"Subject{s}", "url": r.url,
              "sha256": result.sha256, "size": result.size, "verified_by": result.verified_by}
             for s, r, result in zip(subjects, wanted, results)]
    manifest = out_dir / manifest_name
    write_manifest(manifest, dataset, {"api_url": api_url, "article": article}, files)
    return manifest


# ---------------------------------------------------------------------------- BData

def read_bdata(path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The data matrix (sample, column) and metadata key → value per column of a BData file.

    Both capitalisations bdpy reads are accepted (``dataSet``/``metaData`` and
    ``dataset``/``metadata``).
    """
    with h5py.File(path, "r") as f:
        data_name = next((k for k in ("dataSet", "dataset") if k in f), None)
        meta_name = next((k for k in ("metaData", "metadata") if k in f), None)
        if data_name is None or meta_name is None:
            raise ValueError(f"{path}: not a BData file; expected datasets 'dataSet' and "
                             f"'metaData' (or 'dataset'/'metadata'); found {sorted(f)}")
        for field in ("key", "value"):
            if field not in f[meta_name]:
                raise ValueError(f"{path}: BData field '{meta_name}/{field}' missing")
        data = np.asarray(f[data_name], dtype=np.float64)
        keys = strings(f[meta_name]["key"][()]).tolist()
        values = np.asarray(f[meta_name]["value"], dtype=np.float64)
    if data.ndim != 2 or values.shape != (len(keys), data.shape[1]):
        raise ValueError(f"{path}: BData shapes disagree: {data_name} {data.shape}, "
                         f"{meta_name}/value {values.shape} for {len(keys)} keys")
    return data, dict(zip(keys, values))


def label_column(meta: dict, keys, path) -> int:
    """The one column a label key (e.g. DataType) marks with 1; the first of `keys` present."""
    key = next((k for k in keys if k in meta), None)
    if key is None:
        raise ValueError(f"{path}: BData has none of the metadata keys {list(keys)}")
    columns = np.flatnonzero(meta[key] == 1)
    if len(columns) != 1:
        raise ValueError(f"{path}: BData key {key!r} must mark one column; marks {len(columns)}")
    return int(columns[0])


def stimulus_id_text(value: float) -> str:
    """The GOD stimulus id as text, ``<WordNet number>.<6-digit image number>``."""
    return f"{value:.6f}"


def imagenet_name(stimulus_id: str) -> str:
    """ImageNet file stem of a GOD stimulus id: ``1518878.010042`` → ``n01518878_10042``."""
    synset, image = stimulus_id.split(".")
    return f"n{int(synset):08d}_{int(image)}"


def subject_responses(path, *, subject: str, rois, data_type: int = 2) -> xr.DataArray:
    """One subject's voxel responses (stimulus, trial, neuroid) for the samples of `data_type`.

    Trials of a stimulus are ordered by ``Run`` (sample order within a run); missing trials
    are NaN. Neuroid coords: neuroid_id ``{subject}_{roi}_{column}``, animal, area, column and
    voxel_x/y/z where the file has them.
    """
    data, meta = read_bdata(path)
    kind = data[:, label_column(meta, ("DataType",), path)]
    rows = np.flatnonzero(kind == data_type)
    if rows.size == 0:
        raise ValueError(f"{path}: no sample has DataType {data_type}; found "
                         f"{sorted(set(kind[np.isfinite(kind)].astype(int)))}")
    labels = data[rows, label_column(meta, LABEL_KEYS, path)]
    order = data[rows, label_column(meta, ("Run",), path)] if "Run" in meta else None
    ids, stimulus, trial = trial_index([stimulus_id_text(v) for v in labels], order)
    columns, areas = [], []
    for roi in rois:
        key = f"ROI_{roi}"
        if key not in meta:
            raise ValueError(f"{path}: BData has no ROI key {key!r}; ROI keys are "
                             f"{sorted(k for k in meta if k.startswith('ROI_'))}")
        marked = np.flatnonzero(meta[key] == 1)
        columns.append(marked)
        areas += [roi] * len(marked)
    columns = np.concatenate(columns)
    values = np.full((len(ids), trial.max() + 1, len(columns)), np.nan, dtype=np.float32)
    values[stimulus, trial] = data[np.ix_(rows, columns)]
    coords = {"stimulus_id": ("stimulus", ids),
              "neuroid_id": ("neuroid", [f"{subject}_{a}_{c}" for a, c in zip(areas, columns)]),
              "animal": ("neuroid", np.full(len(columns), subject)),
              "area": ("neuroid", np.asarray(areas)), "column": ("neuroid", columns)}
    coords.update({k: ("neuroid", meta[k][columns]) for k in ("voxel_x", "voxel_y", "voxel_z")
                   if k in meta})
    log.info("%s: %d stimuli, up to %d trials, %d voxels in %s", path, len(ids),
             values.shape[1], len(columns), list(rois))
    return xr.DataArray(values, dims=("stimulus", "trial", "neuroid"), coords=coords,
                        name="response")


def fmri_assembly(subjects: dict, *, rois, data_type: int = 2, n_boot: int = 100,
                  seed: int = 0) -> xr.DataArray:
    """All subjects in one NeuralAssembly: the union of their stimuli, NaN where one lacks any.

    Parameters
    ----------
    subjects : dict of str to path-like
        Subject name → BData file.
    rois, data_type :
        As in `subject_responses`.
    n_boot, seed : int
        Split-halves of the per-voxel reliability.
    """
    parts = [subject_responses(path, subject=name, rois=rois, data_type=data_type)
             for name, path in subjects.items()]
    ids = np.unique(np.concatenate([p["stimulus_id"].values for p in parts]))
    n_trial = max(p.sizes["trial"] for p in parts)
    parts = [_place(p, ids, n_trial) for p in parts]
    assembly = xr.concat(parts, dim="neuroid")
    reliability = split_half_reliability(assembly, n_boot=n_boot, seed=seed)
    assembly = assembly.assign_coords(reliability=("neuroid", reliability.values))
    assembly.attrs = {"data_type": int(data_type), "source": DATASET}
    return validate_assembly(assembly, DATASET)


def _place(part: xr.DataArray, ids: np.ndarray, n_trial: int) -> xr.DataArray:
    """`part` on the stimulus ids `ids` and `n_trial` trials, NaN where it has no response."""
    values = np.full((len(ids), n_trial, part.sizes["neuroid"]), np.nan, dtype=np.float32)
    values[np.searchsorted(ids, part["stimulus_id"].values), :part.sizes["trial"]] = part.values
    coords = {k: c for k, c in part.coords.items() if c.dims == ("neuroid",)}
    return xr.DataArray(values, dims=part.dims, name=part.name,
                        coords={"stimulus_id": ("stimulus", ids), **coords})


def assemble_horikawa2017(manifest, *, rois, data_type: int, n_boot: int,
                          seed: int) -> xr.DataArray:
    """`fmri_assembly` over the subject files a download manifest lists.

    The keyword arguments are the config block ``datasets.horikawa2017.assemble``, as in
    `fmri_assembly`.
    """
    _, files = read_manifest(manifest, role="subject")
    if not files:
        raise ValueError(f"{manifest}: lists no subject file")
    return fmri_assembly({f["subject"]: f["local"] for f in files}, rois=rois,
                         data_type=data_type, n_boot=n_boot, seed=seed)


# ---------------------------------------------------------------------------- stimuli

def find_images(folder, stimulus_ids) -> list[Path]:
    """The image file of each stimulus id in `folder` (searched recursively by ImageNet stem).

    Raises
    ------
    FileNotFoundError
        Naming the folder, how many images are missing and the first missing file name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; `images` must name a folder holding "
                                f"the ImageNet images of the stimulus ids (e.g. n01518878_10042"
                                f".JPEG)")
    by_stem = {p.stem: p for p in folder.rglob("*") if p.is_file()}
    stems = [imagenet_name(i) for i in stimulus_ids]
    missing = [s for s in stems if s not in by_stem]
    if missing:
        raise FileNotFoundError(f"{folder}: {len(missing)} of {len(stems)} stimulus images are "
                                f"missing (first: {missing[0]}.JPEG); the ImageNet images are not "
                                f"distributed with the fMRI data")
    return [by_stem[s] for s in stems]


def stimulus_set_from_folder(folder, stimulus_ids, *, name: str, size: int = 64) -> xr.Dataset:
    """A StimulusSet of the GOD stimuli from a user's folder of ImageNet images.

    Images are RGB, short side 256, centre crop 224, then `size` (the validation transform of
    `pipeline.data.natural_scenes.preprocess`). The WordNet id fills the three label levels
    (the set has one level of categories).
    """
    stimulus_ids = np.asarray(stimulus_ids).astype(str)
    images = []
    for path in tqdm(find_images(folder, stimulus_ids), desc=f"{name} images", unit="img",
                     disable=None):
        with Image.open(path) as img:
            images.append(preprocess(np.asarray(img.convert("RGB")), size))
    synsets = np.array([imagenet_name(i).split("_")[0] for i in stimulus_ids])
    ds = xr.Dataset({"image": (("stimulus", "y", "x", "channel"), np.stack(images))},
                    coords={"stimulus_id": ("stimulus", stimulus_ids),
                            "imagenet_file": ("stimulus", [imagenet_name(i)
                                                           for i in stimulus_ids]),
                            **{level: ("stimulus", synsets)
                               for level in ("superordinate", "basic", "subordinate")}})
    ds.attrs = {"name": name, "source": str(folder),
                "preprocessing": f"RGB, short side 256, centre crop 224, resize {size}"}
    ds.attrs["sha256"] = stimulus_set_sha256(ds)
    return ds


def horikawa2017_stimuli(neural, *, name: str, images, stimulus_size: int) -> xr.Dataset:
    """The StimulusSet of the assembly's stimulus ids, from the folder `images`.

    Parameters
    ----------
    neural : path-like
        ``results/neural/horikawa2017.zarr``, whose stimulus ids (in order) the set follows.
    name : str
        Stored as attrs["name"] (``horikawa2017_images``).
    images, stimulus_size
        The config block ``datasets.horikawa2017.stimuli``: the user's folder of ImageNet
        images and the side in pixels.

    Raises
    ------
    ValueError
        When `images` is None: the ImageNet stimuli are not distributed with the data.
    """
    if not images:
        raise ValueError(f"{DATASET}: `images` is null; the ImageNet stimuli are not distributed "
                         f"with the fMRI data, so point it at a folder holding them")
    ids = read_assembly(neural)["stimulus_id"].values
    return stimulus_set_from_folder(images, ids, name=name, size=stimulus_size)
