"""Allen Brain Observatory two-photon experiments → NeuralAssembly (spec §2.1.1, §2.1.2, §2.1.4).

Reads the Visual Coding 2p NWB 1 files (h5py; layout of AllenSDK
``brain_observatory_nwb_data_set.py``) and computes, per natural-scene presentation, AllenSDK's
``NaturalScenes.mean_sweep_response``: the neuropil-corrected fluorescence F (demixed trace minus
r × neuropil from pipeline version 2.0 on; raw minus r × neuropil before) over the 2·sweeplength
frames from onset, as percent change from its mean over the 4·sweeplength frames before onset:
``100 · (mean F[on, on + 2 s) / mean F[on - 4 s, on) - 1)`` with s = sweeplength. That is the
mean of AllenSDK's per-frame ``100 · (F / baseline - 1)`` over the same window. Cells are kept
when their SB split-half reliability is >= 0.75 and their running modulation at the preferred
image is not significant (`pipeline.data.running`, AllenSDK's 2p rule), and specimens by the
75th-percentile unit-count rule.

`trial_mean_assembly` builds the single-trial variant for data published only as trial means
(e.g. ``load_psailamul``); its attrs carry ``trial_means_only = True`` so downstream code knows
that no split-halves exist.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from pipeline.data.allen_ecephys import specimens_by_quantile
from pipeline.data.allen_stimuli import natural_scene_ids, stimulus_set
from pipeline.data.assembly import (
    ALLEN_AREAS,
    split_half_reliability,
    stack_populations,
    validate_assembly,
)
from pipeline.data.running import running_pvalue

log = logging.getLogger(__name__)

PIPELINE = "processing/brain_observatory_pipeline"
FLUORESCENCE = f"{PIPELINE}/Fluorescence"
STIMULUS = "stimulus/presentation/natural_scenes_stimulus"
TEMPLATE_STACK = "stimulus/templates/natural_scenes_image_stack/data"


def _read(f: h5py.File, key: str, path) -> np.ndarray:
    if key not in f:
        raise ValueError(f"{path}: NWB field {key!r} missing; expected an Allen Visual Coding "
                         f"two-photon file (NWB 1, {PIPELINE})")
    values = f[key][()]
    if isinstance(values, bytes):
        return np.asarray(values.decode())
    values = np.asarray(values)
    if values.dtype.kind in "OS":
        values = np.array([v.decode() if isinstance(v, bytes) else str(v)
                           for v in np.atleast_1d(values)]).reshape(values.shape)
    return values


def _text(f: h5py.File, key: str, path, default=None):
    if key not in f:
        if default is not None:
            return str(default)
        raise ValueError(f"{path}: NWB field {key!r} missing")
    return str(_read(f, key, path).item())


def corrected_fluorescence(f: h5py.File, path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and neuropil-corrected traces (cell, frame), as AllenSDK computes them.

    Pipeline 2.0 files hold ``imaging_plane_1_demixed_signal`` and
    ``imaging_plane_1_neuropil_response`` (with ``r``); older files hold the neuropil as
    ``imaging_plane_1/neuropil_traces`` and ``imaging_plane_1/r``.
    """
    timestamps = _read(f, f"{FLUORESCENCE}/imaging_plane_1/timestamps", path)
    demixed = f"{FLUORESCENCE}/imaging_plane_1_demixed_signal/data"
    raw = _read(f, demixed if demixed in f else f"{FLUORESCENCE}/imaging_plane_1/data", path)
    neuropil_group = f"{FLUORESCENCE}/imaging_plane_1_neuropil_response"
    if f"{neuropil_group}/data" in f:
        neuropil, r = (_read(f, f"{neuropil_group}/data", path),
                       _read(f, f"{neuropil_group}/r", path))
    else:
        neuropil, r = (_read(f, f"{FLUORESCENCE}/imaging_plane_1/neuropil_traces", path),
                       _read(f, f"{FLUORESCENCE}/imaging_plane_1/r", path))
    if raw.shape != neuropil.shape or raw.shape[1] != timestamps.size:
        raise ValueError(f"{path}: fluorescence {raw.shape}, neuropil {neuropil.shape} and "
                         f"{timestamps.size} timestamps do not line up (cells × frames)")
    return timestamps, raw.astype(np.float64) - neuropil * np.ravel(r)[:, None]


def running_speed(f: h5py.File, path, timestamps: np.ndarray) -> np.ndarray:
    """Running speed (cm/s) per imaging frame, NaN where not recorded (AllenSDK alignment)."""
    group = f"{PIPELINE}/BehavioralTimeSeries/running_speed"
    speed = _read(f, f"{group}/data", path).astype(np.float64)
    speed = speed[:, 0] if speed.ndim == 2 else speed           # v0.9 files: N × 1
    times = _read(f, f"{group}/timestamps", path)
    out = np.full(timestamps.size, np.nan)
    offset = int(np.argmin(np.abs(timestamps - times[0]))) if times.size else 0
    n = min(speed.size, timestamps.size - offset)
    out[offset:offset + n] = speed[:n]
    return out


def _window_means(values: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Mean of values[..., s:s+length] for each start s (NaN outside the recording)."""
    n = values.shape[-1]
    finite = np.isfinite(values)
    total = np.concatenate([np.zeros(values.shape[:-1] + (1,)),
                            np.cumsum(np.where(finite, values, 0.0), axis=-1)], axis=-1)
    bad = np.concatenate([np.zeros(values.shape[:-1] + (1,)),
                          np.cumsum(~finite, axis=-1)], axis=-1)
    inside = (starts >= 0) & (starts + length <= n)
    lo = np.clip(starts, 0, n)
    hi = np.clip(starts + length, 0, n)
    with np.errstate(invalid="ignore"):
        mean = (total[..., hi] - total[..., lo]) / length
    mean[..., ~inside | ((bad[..., hi] - bad[..., lo]) > 0)] = np.nan
    return mean


def experiment_responses(nwb_path, *, metadata: dict | None = None) -> xr.DataArray:
    """Per-trial mean ΔF/F (%) to every natural scene of one two-photon experiment.

    Parameters
    ----------
    nwb_path : path-like
        ``ophys_experiment_data/{id}.nwb`` (a three_session_B experiment).
    metadata : dict, optional
        Fallbacks (``area``, ``specimen``, ``container_id``) for files that lack
        ``general/optophysiology/imaging_plane_1/location``, ``general/specimen_name`` or
        ``general/experiment_container_id``, e.g. from ``ophys_experiments.json``.

    Returns
    -------
    xarray.DataArray
        (stimulus, trial, neuroid) float32, NaN for missing trials; coords frame (stimulus),
        running_speed (stimulus, trial; cm/s over the response window), neuroid_id
        (cell_specimen_id as text), cell_specimen_id, area, animal (specimen name),
        experiment_id, container_id (neuroid). attrs sweeplength (frames).
    """
    path = Path(nwb_path)
    metadata = metadata or {}
    with h5py.File(path, "r") as f:
        timestamps, traces = corrected_fluorescence(f, path)
        speed = running_speed(f, path, timestamps)
        cells = _read(f, f"{PIPELINE}/ImageSegmentation/cell_specimen_ids", path).astype(np.int64)
        frame = _read(f, f"{STIMULUS}/data", path).astype(np.int64).ravel()
        duration = _read(f, f"{STIMULUS}/frame_duration", path)
        experiment = _text(f, "general/session_id", path, metadata.get("id"))
        area = _text(f, "general/optophysiology/imaging_plane_1/location", path,
                     metadata.get("area"))
        animal = _text(f, "general/specimen_name", path, metadata.get("specimen"))
        container = _text(f, "general/experiment_container_id", path,
                          metadata.get("container_id"))
    if cells.size != traces.shape[0]:
        raise ValueError(f"{path}: {cells.size} cell_specimen_ids for {traces.shape[0]} traces")
    if duration.shape != (frame.size, 2):
        raise ValueError(f"{path}: {STIMULUS}/frame_duration must be ({frame.size}, 2) "
                         f"(start, end imaging frames); found {duration.shape}")
    order = np.argsort(duration[:, 0], kind="stable")
    start, end, frame = (duration[order, 0].astype(np.int64), duration[order, 1].astype(np.int64),
                         frame[order])
    sweeplength = int(end[1] - start[1])          # AllenSDK: the table's second row
    interlength = 4 * sweeplength
    baseline = _window_means(traces, start - interlength, interlength)
    with np.errstate(invalid="ignore", divide="ignore"):
        msr = 100.0 * (_window_means(traces, start, 2 * sweeplength) / baseline - 1.0)
    dx = _window_means(speed, start, 2 * sweeplength)
    shown = frame >= 0                                         # -1 is the blank
    images, stim_index = np.unique(frame[shown], return_inverse=True)
    per_image = np.bincount(stim_index)
    rank = np.empty(stim_index.size, dtype=np.int64)
    by_image = np.argsort(stim_index, kind="stable")
    rank[by_image] = np.arange(stim_index.size) - np.repeat(np.cumsum(per_image) - per_image,
                                                            per_image)
    values = np.full((images.size, per_image.max(), cells.size), np.nan, dtype=np.float32)
    values[stim_index, rank] = msr[:, shown].T
    run = np.full((images.size, per_image.max()), np.nan)
    run[stim_index, rank] = dx[shown]
    if np.unique(cells).size != cells.size:
        raise ValueError(f"{path}: cell_specimen_ids are not unique")
    log.info("%s: %d cells, %d presentations of %d images (sweeplength %d frames)", path.name,
             cells.size, shown.sum(), images.size, sweeplength)
    return xr.DataArray(
        values, dims=("stimulus", "trial", "neuroid"), name="response",
        coords={"frame": ("stimulus", images), "running_speed": (("stimulus", "trial"), run),
                "neuroid_id": ("neuroid", cells.astype(str)),
                "cell_specimen_id": ("neuroid", cells),
                "area": ("neuroid", np.full(cells.size, area)),
                "animal": ("neuroid", np.full(cells.size, animal)),
                "experiment_id": ("neuroid", np.full(cells.size, experiment)),
                "container_id": ("neuroid", np.full(cells.size, container))},
        attrs={"sweeplength": sweeplength})


def assemble_ophys(nwb_paths, stimulus_ids, *, areas=ALLEN_AREAS, reliability_threshold=0.75,
                   run_pval_threshold=0.05, running_threshold=1.0, min_running_trials=5,
                   specimen_quantile=0.75, n_boot=900, seed=0, metadata=None) -> xr.DataArray:
    """NeuralAssembly (% ΔF/F, per trial) of two-photon experiments with the spec's selection.

    Spec §2.1.2: keep a cell when its SB split-half reliability (over stimuli, `n_boot`
    resamples) is >= `reliability_threshold` and its running p-value is > `run_pval_threshold`
    or NaN. Spec §2.1.4: per area, keep specimens whose count of kept cells is >= ceil of the
    `specimen_quantile` of the counts of all specimens recorded in that area (mouse-vision's
    calcium rule counts specimens left with no cell too).

    Parameters
    ----------
    nwb_paths : sequence of path-like
        Experiment files.
    stimulus_ids : sequence of str
        stimulus_ids[frame] names image `frame`.
    areas : sequence of str
        Areas to keep (the thesis drops calcium VISrl, spec §2.1.6: leave it out here).
    reliability_threshold, run_pval_threshold : float
        The §2.1.2 thresholds; run_pval_threshold None skips the running filter.
    running_threshold : float
        Speed (cm/s) from which a trial counts as running.
    min_running_trials : int
        Trials needed in each of the running and stationary groups (AllenSDK 2p: 5).
    specimen_quantile : float or None
        None keeps every specimen.
    n_boot, seed : int
        Split-half resamples and seed.
    metadata : sequence of dict, optional
        Per-file fallbacks for `experiment_responses`.

    Returns
    -------
    xarray.DataArray
        "response" (stimulus, trial, neuroid), NaN-padded; coords stimulus_id, frame;
        neuroid_id, animal, area, experiment_id, container_id, reliability (the value the
        filter used), run_pval.
    """
    stimulus_ids = np.asarray(stimulus_ids, dtype=str)
    metadata = list(metadata) if metadata is not None else [None] * len(nwb_paths)
    selected, counts = [], {}
    for path, meta in zip(nwb_paths, metadata):
        responses = experiment_responses(path, metadata=meta)
        area = str(responses["area"].values[0]) if responses.sizes["neuroid"] else None
        if area not in areas:
            log.info("%s: area %s not selected; skipped", Path(path).name, area)
            continue
        if responses["frame"].values.max(initial=-1) >= stimulus_ids.size:
            raise ValueError(f"{path}: frame {responses['frame'].values.max()} has no entry in "
                             f"stimulus_ids ({stimulus_ids.size} given)")
        reliability = split_half_reliability(responses, n_boot=n_boot, seed=seed).values
        pval = running_pvalue(responses, responses["running_speed"], threshold=running_threshold,
                              min_trials=min_running_trials, nan_is_stationary=False).values
        keep = reliability >= reliability_threshold
        if run_pval_threshold is not None:
            keep &= ~(pval <= run_pval_threshold)
        key = (str(responses["animal"].values[0]), area)
        counts[key] = counts.get(key, 0) + int(keep.sum())
        log.info("%s (%s, %s): %d of %d cells kept (reliability >= %.2f: %d; running p-value "
                 "NaN: %d, <= %s: %d)", Path(path).name, key[0], area, keep.sum(), keep.size,
                 reliability_threshold, (reliability >= reliability_threshold).sum(),
                 np.isnan(pval).sum(), run_pval_threshold,
                 0 if run_pval_threshold is None else (pval <= run_pval_threshold).sum())
        if keep.any():
            kept = responses.isel(neuroid=np.flatnonzero(keep)).assign_coords(
                reliability=("neuroid", reliability[keep]), run_pval=("neuroid", pval[keep]))
            selected.append((key, kept))
    if specimen_quantile is not None and counts:
        chosen = specimens_by_quantile(counts, specimen_quantile)
        selected = [(key, r) for key, r in selected if key in chosen]
    for area in areas:
        kept = {key: counts[key] for key in counts if key[1] == area}
        final = [r.sizes["neuroid"] for key, r in selected if key[1] == area]
        log.info("%s: %d specimens recorded; %d cells in %d specimens after the specimen-count "
                 "rule", area, len(kept), sum(final), len({k for k, _ in selected
                                                             if k[1] == area}))
    if not selected:
        raise ValueError(f"assemble_ophys: no cell in {len(nwb_paths)} experiments passed the "
                         f"selection for areas {list(areas)}")
    assembly = stack_populations([r for _, r in selected], stimulus_ids,
                                 ("neuroid_id", "animal", "area", "experiment_id", "container_id",
                                  "reliability", "run_pval"))
    assembly.attrs = {"units": "percent dF/F (mean_sweep_response)",
                      "reliability_threshold": reliability_threshold,
                      "run_pval_threshold": run_pval_threshold,
                      "specimen_quantile": specimen_quantile, "n_boot": n_boot,
                      "trial_means_only": False}
    return validate_assembly(assembly, "assemble_ophys")


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


def load_psailamul(directory) -> tuple[xr.DataArray, xr.Dataset]:
    """The psailamul/Allen_Brain_Observatory VISp trial means and their 31×31 scenes.

    Reads ``allen_ns_ordered_derived.npz`` (see the folder's README): 212 cells of experiment
    501498760 (container 511510667, Cux2 VISp, 275 µm) × 118 scenes in Allen order, mean
    ``mean_sweep_response`` over ~50 repeats (percent ΔF/F), and the scenes downsampled to
    31×31.

    Returns
    -------
    (xarray.DataArray, xarray.Dataset)
        The trial-mean NeuralAssembly (`trial_mean_assembly`; stimulus coord ``psailamul_split``
        holds the repository's train/test split) and its StimulusSet
        ``allen_natural_scenes_31`` (images as given, 3 channels).
    """
    path = Path(directory) / "allen_ns_ordered_derived.npz"
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
    stimuli = stimulus_set(images, name="allen_natural_scenes_31", size=None,
                           attrs={"source": str(path)})
    return assembly, stimuli


def assemble_allen_ophys(manifest, settings: dict) -> xr.DataArray:
    """`assemble_ophys` over the experiments a download manifest lists.

    Parameters
    ----------
    manifest : path-like
        ``data/raw/allen_ophys/manifest.json``; listed files are re-checked first.
    settings : dict
        The dataset's config block (areas, reliability_threshold, run_pval_threshold,
        running_threshold, min_running_trials, specimen_quantile, reliability_boot, seed).
    """
    from pipeline.data.download import read_manifest

    _, files = read_manifest(manifest, role="experiment")
    if not files:
        raise ValueError(f"{manifest}: lists no two-photon experiment")
    with h5py.File(files[0]["local"], "r") as f:
        n_scenes = f[TEMPLATE_STACK].shape[0] if TEMPLATE_STACK in f else None
    if n_scenes is None:
        raise ValueError(f"{files[0]['local']}: NWB field {TEMPLATE_STACK!r} missing; it fixes "
                         f"the number of natural scenes")
    s = settings
    return assemble_ophys(
        [f["local"] for f in files], natural_scene_ids(n_scenes), areas=tuple(s["areas"]),
        reliability_threshold=s["reliability_threshold"],
        run_pval_threshold=s["run_pval_threshold"], running_threshold=s["running_threshold"],
        min_running_trials=s["min_running_trials"], specimen_quantile=s["specimen_quantile"],
        n_boot=s["reliability_boot"], seed=s["seed"],
        metadata=[{k: f.get(k) for k in ("id", "area", "specimen", "container_id")}
                  for f in files])
