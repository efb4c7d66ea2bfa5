"""Small files in the Brain-Score packaging of Majaj, Hong et al. 2015, and a server for them.

`write_brainscore_assembly` writes a netCDF assembly the way brainio's ``write_netcdf`` does
(MultiIndex levels as plain coordinates, one zlib-compressed variable ``data``; or, legacy, one
variable named after the assembly with ``image_id`` for ``stimulus_id``), with the real
coordinate names. Responses are a shared 2-D latent per image, read out by each neuroid, times
a per-bin gain, plus noise, so any two animals predict each other up to noise.
`write_stimulus_set` writes the CSV and the zip of small grayscale PNGs.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image

from pipeline.data.majajhong2015 import brainio_file_name

ASSEMBLY_ID = "dicarlo.MajajHong2015.public"
STIMULUS_SET_ID = "hvm-public"
ANIMALS = ("Chabo", "Tito")
AREAS = ("V4", "IT")
UNITS = 3                                   # per animal and area
BINS_MS = ((50, 70), (70, 120), (120, 170))
GAINS = (0.2, 1.0, 1.5)
OBJECTS = {"animals": ("bear", "cow"), "cars": ("astra", "beetle")}
N_STIMULI = 24
REPS = {0: 3, 3: 4}                         # repetitions by variation level


def stimulus_table(n_stimuli: int = N_STIMULI) -> pd.DataFrame:
    """One row per image: ids, object, category, variation (every 4th image is level 0)."""
    objects = [(cat, obj) for cat, objs in OBJECTS.items() for obj in objs]
    rows = []
    for i in range(n_stimuli):
        category, obj = objects[i % len(objects)]
        stimulus_id = hashlib.sha1(f"hvm{i}".encode()).hexdigest()[:16]
        rows.append({"id": i, "stimulus_id": stimulus_id, "object_name": obj,
                     "category_name": category, "variation": 0 if i % 4 == 0 else 3,
                     "s": 1.0 + 0.01 * i, "rxy_semantic": float(i % 7),
                     "filename": f"{obj}_{stimulus_id}_16x16.png"})
    return pd.DataFrame(rows)


def neuroid_table() -> pd.DataFrame:
    rows = []
    for area in AREAS:
        for animal in ANIMALS:
            for k in range(UNITS):
                arr = "M" if area == "V4" else "A"
                rows.append({"neuroid_id": f"{animal}_L_{arr}_{k}_{k + 1}", "arr": arr,
                             "col": k, "row": k + 1, "hemisphere": "L",
                             "subregion": "V4" if area == "V4" else "cIT", "animal": animal,
                             "x": 0.4 * k, "y": -0.4 * k, "region": area})
    return pd.DataFrame(rows)


def _array(column: pd.Series) -> np.ndarray:
    """A column as a plain numpy array (text as fixed-width str, as netCDF writers need)."""
    values = column.to_numpy()
    return values.astype(str) if values.dtype == object else values


def brainscore_assembly(seed: int = 0, noise: float = 2.0, shared: bool = True) -> xr.DataArray:
    """The fixture assembly (presentation, neuroid, time_bin), presentations shuffled.

    `shared` False gives each animal its own latent, so animals do not predict each other.
    """
    rng = np.random.default_rng(seed)
    stimuli, neuroids = stimulus_table(), neuroid_table()
    latent = {a: rng.standard_normal((len(stimuli), 2)) * 10 for a in ANIMALS}
    if shared:
        latent = {a: latent[ANIMALS[0]] for a in ANIMALS}
    weights = rng.standard_normal((2, len(neuroids)))
    signal = np.stack([latent[a] @ weights[:, n] for n, a in enumerate(neuroids["animal"])], -1)
    rows = [(s, r) for s, v in enumerate(stimuli["variation"]) for r in range(REPS[v])]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    stim = np.array([s for s, _ in rows])
    data = (np.asarray(GAINS)[None, None, :] * signal[stim][:, :, None] + 20
            + noise * rng.standard_normal((len(rows), len(neuroids), len(GAINS))))
    presentation = {"stimulus_id": _array(stimuli["stimulus_id"])[stim],
                    "repetition": np.array([r for _, r in rows]),
                    "stimulus": np.arange(len(rows)), "id": _array(stimuli["id"])[stim],
                    **{c: _array(stimuli[c])[stim] for c in ("object_name", "category_name",
                                                             "variation", "s", "rxy_semantic")}}
    return xr.DataArray(
        data.astype(np.float32), dims=("presentation", "neuroid", "time_bin"),
        coords={**{k: ("presentation", v) for k, v in presentation.items()},
                **{c: ("neuroid", _array(neuroids[c])) for c in neuroids.columns},
                "time_bin_start": ("time_bin", np.array([a for a, _ in BINS_MS])),
                "time_bin_end": ("time_bin", np.array([b for _, b in BINS_MS]))})


def write_brainscore_assembly(path, *, legacy: bool = False, **kwargs) -> Path:
    """Write the fixture assembly as brainio does (or as a legacy uncompressed DataArray)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    da = brainscore_assembly(**kwargs)
    attrs = {"identifier": ASSEMBLY_ID, "stimulus_set_identifier": STIMULUS_SET_ID}
    if legacy:
        da = da.rename({"stimulus_id": "image_id"}).rename(ASSEMBLY_ID)
        da.attrs = attrs
        da.to_netcdf(path, engine="h5netcdf")
    else:
        ds = da.to_dataset(name="data")
        ds.attrs = attrs
        ds.to_netcdf(path, engine="h5netcdf",
                     encoding={"data": {"zlib": True, "complevel": 9}})
    return path


def image(i: int, side: int = 16) -> np.ndarray:
    """A distinct grayscale test image: a gradient whose slope depends on i."""
    yy, xx = np.mgrid[:side, :side]
    return ((xx * (i + 1) + yy * 3) % 256).astype(np.uint8)


def write_stimulus_set(folder) -> tuple[Path, Path]:
    """The stimulus CSV and the zip of 16 × 16 grayscale PNGs, named as the catalog names them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = stimulus_table()
    csv = folder / brainio_file_name(STIMULUS_SET_ID, "csv")
    table.to_csv(csv, index=False)
    archive = folder / brainio_file_name(STIMULUS_SET_ID, "zip")
    with zipfile.ZipFile(archive, "w") as z:
        for i, name in enumerate(table["filename"]):
            buffer = io.BytesIO()
            Image.fromarray(image(i)).save(buffer, format="PNG")
            z.writestr(name, buffer.getvalue())
    return csv, archive


def sha1(path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def serve_macaque(server, folder, *, legacy: bool = False) -> dict:
    """Write the three files, serve them under ``/brainio-brainscore/``; returns a config block."""
    folder = Path(folder)
    assembly = write_brainscore_assembly(folder / brainio_file_name(ASSEMBLY_ID, "nc"),
                                         legacy=legacy)
    csv, archive = write_stimulus_set(folder)
    for path in (assembly, csv, archive):
        server.add_file(f"/brainio-brainscore/{path.name}", path.read_bytes())
    return {"base_url": server.url("/brainio-brainscore"),
            "assembly": {"identifier": ASSEMBLY_ID, "sha1": sha1(assembly)},
            "stimulus_set": {"identifier": STIMULUS_SET_ID, "csv_sha1": sha1(csv),
                             "zip_sha1": sha1(archive)},
            "retries": 1, "backoff": 0.0, "timeout": 10}
