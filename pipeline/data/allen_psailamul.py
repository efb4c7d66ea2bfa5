"""The psailamul/Allen_Brain_Observatory snapshot: VISp trial means and their 31×31 scenes.

A folder (config ``datasets.allen_psailamul.path``, e.g.
``../shared/data/real/allen_natural_scenes_psailamul``) holding ``allen_ns_ordered_derived.npz``:
212 cells of one two-photon experiment, the mean ``mean_sweep_response`` over the ~50 repeats
of each of the 118 natural scenes, and the scenes downsampled to 31×31. Only trial means are
published, so the assembly has one "trial" and is flagged ``trial_means_only``: no split-half
reliability or noise ceiling can be computed from it, only raw predictivity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from pipeline.data.assembly import validate_assembly
from pipeline.data.natural_scenes import natural_scene_ids, stimulus_set


def trial_mean_assembly(mean_response, stimulus_ids, *, neuroid_ids, animal, area,
                        source: str, attrs: dict | None = None) -> xr.DataArray:
    """A NeuralAssembly from trial-averaged responses only: one "trial", flagged as such.

    Parameters
    ----------
    mean_response : array-like
        (stimulus, neuroid) trial-mean responses.
    stimulus_ids, neuroid_ids : sequence of str
    animal, area : str or sequence of str
        One value for all neuroids, or one per neuroid.
    source : str
        Where the numbers came from (stored in attrs and named in errors).
    attrs : dict, optional
        Extra provenance.

    Returns
    -------
    xarray.DataArray
        (stimulus, trial=1, neuroid) with NaN reliability; attrs ``trial_means_only = True``:
        split-half reliabilities and noise ceilings cannot be computed from it.
    """
    values = np.asarray(mean_response, dtype=np.float32)
    if values.ndim != 2 or values.shape != (len(stimulus_ids), len(neuroid_ids)):
        raise ValueError(f"{source}: trial means must be (stimulus, neuroid) = "
                         f"({len(stimulus_ids)}, {len(neuroid_ids)}); got {values.shape}")
    n = values.shape[1]
    assembly = xr.DataArray(
        values[:, None, :], dims=("stimulus", "trial", "neuroid"), name="response",
        coords={"stimulus_id": ("stimulus", np.asarray(stimulus_ids, dtype=str)),
                "neuroid_id": ("neuroid", np.asarray(neuroid_ids, dtype=str)),
                "animal": ("neuroid", np.broadcast_to(np.asarray(animal, dtype=str), n)),
                "area": ("neuroid", np.broadcast_to(np.asarray(area, dtype=str), n)),
                "reliability": ("neuroid", np.full(n, np.nan))})
    assembly.attrs = {"trial_means_only": True, "source": source, **(attrs or {})}
    return validate_assembly(assembly, source)


def assemble_allen_psailamul(path) -> tuple[xr.DataArray, xr.Dataset]:
    """The psailamul/Allen_Brain_Observatory VISp trial means and their 31×31 scenes.

    Reads ``allen_ns_ordered_derived.npz`` (see the folder's README): 212 cells of experiment
    501498760 (container 511510667, Cux2 VISp, 275 µm) × 118 scenes in Allen order, mean
    ``mean_sweep_response`` over ~50 repeats (percent ΔF/F), and the scenes downsampled to
    31×31.

    Parameters
    ----------
    path : path-like
        The folder (config ``datasets.allen_psailamul.path``).

    Returns
    -------
    (xarray.DataArray, xarray.Dataset)
        The trial-mean NeuralAssembly (`trial_mean_assembly`; stimulus coord ``psailamul_split``
        holds the repository's train/test split) and its StimulusSet
        ``allen_psailamul_scenes`` (images as given, 3 channels).
    """
    path = Path(path) / "allen_ns_ordered_derived.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; expected the psailamul natural-scenes "
                                f"snapshot (see its README.md)")
    with np.load(path) as data:
        missing = {"images", "mean_dff", "scene_index", "train_scene_index",
                   "test_scene_index"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: arrays {sorted(missing)} missing; found {data.files}")
        images, mean_dff = data["images"], data["mean_dff"]
        order, train = data["scene_index"], data["train_scene_index"]
    if not np.array_equal(order, np.arange(len(order))):
        raise ValueError(f"{path}: scene_index must be 0..{len(order) - 1} (Allen order)")
    ids = natural_scene_ids(len(order))
    split = np.where(np.isin(np.arange(len(order)), train), "train", "test")
    assembly = trial_mean_assembly(
        mean_dff, ids, neuroid_ids=[f"501498760_cell{j:03d}" for j in range(mean_dff.shape[1])],
        animal="container_511510667", area="VISp", source=str(path),
        attrs={"units": "percent dF/F (mean_sweep_response, trial mean)",
               "caveat": "cell columns were sliced 1:213 of AllenSDK's response array; whether "
                         "that skips a cell or includes the running column is unverified"})
    assembly = assembly.assign_coords(psailamul_split=("stimulus", split))
    stimuli = stimulus_set(images, name="allen_psailamul_scenes", size=None,
                           attrs={"source": str(path)})
    return assembly, stimuli
