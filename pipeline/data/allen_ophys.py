"""Allen Brain Observatory Visual Coding two-photon: download, NeuralAssembly, stimulus set.

Download (notes/data-sources.md §2): the experiment table ``ophys_experiments.json`` and the
NWB 1 files ``ophys_experiment_data/{id}.nwb`` of the public S3 bucket, verified against the
size and ETag of the bucket's own listing; ``manifest.json`` lists what was verified.

Assembly (spec §2.1.1, §2.1.2, §2.1.4): reads the Visual Coding 2p NWB 1 files (h5py; layout of
AllenSDK ``brain_observatory_nwb_data_set.py``) and computes, per natural-scene presentation,
AllenSDK's ``NaturalScenes.mean_sweep_response``: the neuropil-corrected fluorescence F (demixed
trace minus r × neuropil from pipeline version 2.0 on; raw minus r × neuropil before) over the
2·sweeplength frames from onset, as percent change from its mean over the 4·sweeplength frames
before onset: ``100 · (mean F[on, on + 2 s) / mean F[on - 4 s, on) - 1)`` with s = sweeplength.
That is the mean of AllenSDK's per-frame ``100 · (F / baseline - 1)`` over the same window.
Cells are kept when their SB split-half reliability is >= 0.75 and their running modulation at
the preferred image is not significant (`pipeline.data.running`, AllenSDK's 2p rule), and
specimens by the 75th-percentile unit-count rule.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from pipeline.data.assembly import (
    ALLEN_AREAS,
    keep_specimens,
    stack_populations,
    validate_assembly,
)
from pipeline.data.fetch.allensdk_cache import (adopt, open_cache, ophys_experiments, read_report,
                                                register)
from pipeline.data.fetch.download import (ChecksumError, DownloadError, Remote, fetch, fetch_all,
                                          http_settings, read_manifest, write_manifest)
from pipeline.data.fetch.remote import get_text, head
from pipeline.data.hdf5 import read, text
from pipeline.data.natural_scenes import natural_scene_ids, stimulus_set
from pipeline.data.reliability import split_half_reliability
from pipeline.data.running import running_pvalue

log = logging.getLogger(__name__)

PIPELINE = "processing/brain_observatory_pipeline"
FLUORESCENCE = f"{PIPELINE}/Fluorescence"
STIMULUS = "stimulus/presentation/natural_scenes_stimulus"
TEMPLATE_STACK = "stimulus/templates/natural_scenes_image_stack/data"
S3_2P_PREFIX = "visual-coding-2p"
NATURAL_SCENES_SESSION = "three_session_B"
_read = partial(read, expected=f"an Allen Visual Coding two-photon file (NWB 1, {PIPELINE})")


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
        experiment = text(f, "general/session_id", path, default=metadata.get("id"))
        area = text(f, "general/optophysiology/imaging_plane_1/location", path,
                    default=metadata.get("area"))
        animal = text(f, "general/specimen_name", path, default=metadata.get("specimen"))
        container = text(f, "general/experiment_container_id", path,
                         default=metadata.get("container_id"))
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


def ophys_assembly(nwb_paths, stimulus_ids, *, areas=ALLEN_AREAS, reliability_threshold=0.75,
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
    areas = tuple(areas)
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
    selected = keep_specimens(selected, counts, specimen_quantile)
    for area in areas:
        kept = {key: counts[key] for key in counts if key[1] == area}
        final = [r.sizes["neuroid"] for key, r in selected if key[1] == area]
        log.info("%s: %d specimens recorded; %d cells in %d specimens after the specimen-count "
                 "rule", area, len(kept), sum(final), len({k for k, _ in selected
                                                             if k[1] == area}))
    if not selected:
        raise ValueError(f"ophys_assembly: no cell in {len(nwb_paths)} experiments passed the "
                         f"selection for areas {list(areas)}")
    assembly = stack_populations([r for _, r in selected], stimulus_ids,
                                 ("neuroid_id", "animal", "area", "experiment_id", "container_id",
                                  "reliability", "run_pval"))
    assembly.attrs = {"units": "percent dF/F (mean_sweep_response)",
                      "reliability_threshold": reliability_threshold,
                      "run_pval_threshold": run_pval_threshold,
                      "specimen_quantile": specimen_quantile, "n_boot": n_boot,
                      "trial_means_only": False}
    return validate_assembly(assembly, "ophys_assembly")


# ---------------------------------------------------------------------------- download

def s3_list(base_url: str, prefix: str, *, dataset: str, session=None,
            **http) -> dict[str, tuple[int, str]]:
    """Key → (size, ETag) of every object under `prefix` (S3 ListObjectsV2, all pages)."""
    base_url = base_url.rstrip("/")
    objects, token = {}, None
    while True:
        params = {"list-type": "2", "prefix": prefix}
        if token:
            params["continuation-token"] = token
        text = get_text(f"{base_url}/", params=params, dataset=dataset, session=session, **http)
        try:
            root = ET.fromstring(text)
        except ET.ParseError as err:
            raise DownloadError(f"{dataset}: S3 listing of {base_url}/{prefix} is not XML "
                                f"({err})") from err
        for element in root.iter():                 # drop the S3 namespace
            element.tag = element.tag.rpartition("}")[2]
        for item in root.iter("Contents"):
            objects[item.findtext("Key")] = (int(item.findtext("Size")),
                                             item.findtext("ETag", "").strip('"'))
        if root.findtext("IsTruncated") != "true":
            break
        token = root.findtext("NextContinuationToken")
        if not token:
            raise DownloadError(f"{dataset}: truncated S3 listing of {prefix} without a "
                                f"NextContinuationToken")
    log.info("%s: %d objects listed under %s/%s", dataset, len(objects), base_url, prefix)
    return objects


def s3_index(base_url: str, prefix: str, keys, *, dataset: str, session=None,
             **http) -> dict[str, tuple[int, str]]:
    """Size and ETag of `keys`: from the bucket listing, or from HEAD when listing is refused.

    Anonymous ListObjectsV2 on the Allen bucket is unverified; a 403 falls back to one HEAD
    request per object (Content-Length and ETag).
    """
    try:
        return s3_list(base_url, prefix, dataset=dataset, session=session, **http)
    except DownloadError as err:
        if "HTTP 403" not in str(err):
            raise
        log.warning("%s: the bucket refuses listing (%s); asking each object with HEAD",
                    dataset, err)
    out = {}
    for key in keys:
        headers = head(f"{base_url.rstrip('/')}/{key}", dataset=dataset, session=session, **http)
        if "Content-Length" not in headers:
            raise DownloadError(f"{dataset}: HEAD {base_url}/{key} sent no Content-Length")
        out[key] = (int(headers["Content-Length"]), headers.get("ETag", "").strip('"'))
    return out


def _s3_remote(base_url: str, key: str, listing: dict, path: str, dataset: str) -> Remote:
    if key not in listing:
        raise DownloadError(f"{dataset}: {key} is not in the bucket listing of {base_url}")
    size, etag = listing[key]
    return Remote(url=f"{base_url.rstrip('/')}/{key}", path=path, size=size,
                  digests={"s3-etag": etag} if etag else {})


def _experiment_fields(record: dict) -> dict:
    """The fields the selection needs, from a raw RMA or a simplified AllenSDK record."""
    structure = record.get("targeted_structure")
    if isinstance(structure, dict):
        structure = structure.get("acronym")
    specimen = record.get("specimen") if isinstance(record.get("specimen"), dict) else {}
    container = record.get("experiment_container")
    failed = record.get("failed", False) or (isinstance(container, dict)
                                             and container.get("failed", False))
    return {"id": int(record["id"]), "area": structure,
            "session_type": record.get("stimulus_name", record.get("session_type")),
            "container_id": record.get("experiment_container_id"),
            "specimen": specimen.get("name", record.get("specimen_name")),
            "failed": bool(failed)}


def select_experiments(records: list[dict], *, areas, session_type=NATURAL_SCENES_SESSION,
                       experiments=None) -> list[dict]:
    """Experiments with natural scenes in the wanted areas, failed containers excluded."""
    chosen = []
    wanted = None if experiments is None else {int(e) for e in experiments}
    for record in records:
        fields = _experiment_fields(record)
        if wanted is not None and fields["id"] not in wanted:
            continue
        if fields["failed"] or fields["session_type"] != session_type:
            continue
        if fields["area"] not in areas:
            continue
        chosen.append(fields)
    if wanted is not None and wanted - {e["id"] for e in chosen}:
        raise DownloadError(f"experiments {sorted(wanted - {e['id'] for e in chosen})} are not "
                            f"{session_type} experiments in {list(areas)}")
    return sorted(chosen, key=lambda e: e["id"])


def download_allen_ophys(out_dir, *, s3_url: str, session_type: str, experiments=None, areas,
                         retries: int, backoff: float, timeout: float, backend: str = "s3",
                         allensdk_cache=None, allensdk_cache_mode: str = "link",
                         warehouse_url: str = "https://api.brain-map.org",
                         dataset: str = "allen_ophys",
                         manifest_name: str = "manifest.json") -> Path:
    """Fetch the experiment table and the selected NWB files; write ``out_dir/manifest.json``.

    Parameters
    ----------
    out_dir : path-like
        The dataset's cache, ``data/raw/allen_ophys``.
    s3_url, session_type, experiments, areas, retries, backoff, timeout
        The config block ``datasets.allen_ophys.download`` (experiments None = every
        `session_type` experiment in `areas`).
    backend : {"s3", "allensdk"}
        ``s3``: the public bucket, each file verified against its listing. ``allensdk``:
        register what the rule ``fetch_allensdk`` fetched with
        BrainObservatoryCache (report ``out_dir/allensdk/fetched.json``).
    allensdk_cache : path-like or None
        With the S3 path: an existing ``BrainObservatoryCache`` folder (or its manifest.json);
        experiments its ``ophys_experiments.json`` lists are linked or copied in when they
        match the bucket's size and ETag; the rest is downloaded.
    allensdk_cache_mode : {"link", "copy"}
    warehouse_url : str
        Warehouse host BrainObservatoryCache queries (backend ``allensdk``).
    dataset, manifest_name : str
        Name in log lines and errors; file name of the manifest in `out_dir`.

    Returns
    -------
    pathlib.Path
        The manifest: the experiment table and each experiment file with its table fields (id,
        area, specimen, container_id) and verification record.
    """
    out_dir = Path(out_dir)
    if backend == "allensdk":
        return _register_allensdk(out_dir, mode=allensdk_cache_mode, areas=areas,
                                  session_type=session_type, experiments=experiments,
                                  warehouse_url=warehouse_url, dataset=dataset,
                                  manifest_name=manifest_name)
    if backend != "s3":
        raise ValueError(f"{dataset}: download.backend must be 's3' or 'allensdk'; "
                         f"got {backend!r}")
    http = http_settings(retries=retries, backoff=backoff, timeout=timeout)
    cache = open_cache(allensdk_cache, dataset=dataset) if allensdk_cache else None
    table_key = f"{S3_2P_PREFIX}/ophys_experiments.json"
    table_remote = _s3_remote(s3_url, table_key,
                              s3_index(s3_url, table_key, [table_key], dataset=dataset, **http),
                              "ophys_experiments.json", dataset)
    table = fetch(table_remote, out_dir, dataset=dataset, **http)
    try:
        records = json.loads(table.path.read_text())
    except ValueError as err:
        raise DownloadError(f"{table.path}: not JSON ({err})") from err
    chosen = select_experiments(records, areas=areas, session_type=session_type,
                                experiments=experiments)
    if not chosen:
        raise DownloadError(f"{dataset}: no {session_type} experiment in {areas} in "
                            f"{table.path}")
    prefix = f"{S3_2P_PREFIX}/ophys_experiment_data/"
    listing = s3_index(s3_url, prefix, [f"{prefix}{e['id']}.nwb" for e in chosen],
                       dataset=dataset, **http)
    remotes = [_s3_remote(s3_url, f"{prefix}{e['id']}.nwb", listing,
                          f"ophys_experiment_data/{e['id']}.nwb", dataset) for e in chosen]
    reused = {}
    if cache is not None:
        found = ophys_experiments(cache, dataset=dataset)
        reused = adopt([(r, found.get(str(e["id"]))) for e, r in zip(chosen, remotes)], out_dir,
                       mode=allensdk_cache_mode, dataset=dataset).reused
    results = fetch_all(remotes, out_dir, dataset=dataset, **http)
    files = [{"path": table_remote.path, "role": "experiment_table", "url": table_remote.url,
              "sha256": table.sha256, "size": table.size, "verified_by": table.verified_by}]
    files += [{"path": r.path, "role": "experiment", "url": r.url, "sha256": res.sha256,
               "size": res.size, "verified_by": res.verified_by, **e,
               **({"reused_from": str(reused[r.path])} if r.path in reused else {})}
              for e, r, res in zip(chosen, remotes, results)]
    source = {"s3_url": s3_url, "prefix": S3_2P_PREFIX}
    if cache is not None:                       # absent otherwise: the default is unchanged
        source["allensdk_cache"] = str(cache.manifest)
    manifest = out_dir / manifest_name
    write_manifest(manifest, dataset, source, files)
    log.info("%s: %d experiments verified (%d from the AllenSDK cache); manifest %s", dataset,
             len(chosen), len(reused), manifest)
    return manifest


def _nwb1_check(path):
    """A `register` check: the file opens as HDF5 (a truncated file does not) with the 2p data."""
    try:
        with h5py.File(path, "r") as f:
            if f"{FLUORESCENCE}" not in f or STIMULUS not in f:
                raise ChecksumError(f"no {FLUORESCENCE} or {STIMULUS}; not a Visual Coding 2p "
                                    f"natural-scenes file")
    except OSError as err:
        raise ChecksumError(f"not a readable HDF5/NWB file ({err})") from err
    return ["hdf5"]


def _register_allensdk(out_dir: Path, *, mode: str, areas, session_type: str, experiments,
                       warehouse_url: str, dataset: str, manifest_name: str) -> Path:
    """Manifest of the experiments the allensdk backend fetched (same raw layout)."""
    report = read_report(out_dir / "allensdk" / "fetched.json", kind="ophys", dataset=dataset)
    try:
        records = json.loads(Path(report["table"]).read_text())
    except (OSError, ValueError) as err:
        raise DownloadError(f"{dataset}: the AllenSDK experiment table {report['table']} "
                            f"cannot be read ({err})") from err
    chosen = {e["id"]: e for e in select_experiments(records, areas=areas,
                                                     session_type=session_type,
                                                     experiments=experiments)}
    fetched = {int(e["experiment_id"]): e["path"] for e in report["experiments"]}
    missing = sorted(set(chosen) - set(fetched))
    if missing or not chosen:
        raise DownloadError(f"{dataset}: the allensdk backend did not fetch experiments "
                            f"{missing or '(none chosen)'} of {session_type} in {list(areas)}")
    ids = sorted(chosen)
    items = [("ophys_experiments.json", report["table"], lambda p: ["json"])]
    items += [(f"ophys_experiment_data/{i}.nwb", fetched[i], _nwb1_check) for i in ids]
    files = register(items, out_dir, mode=mode, dataset=dataset)
    files[0]["role"] = "experiment_table"
    for entry, i in zip(files[1:], ids):
        entry.update(role="experiment", **chosen[i])
    source = {"backend": "allensdk", "allensdk": report.get("allensdk"),
              "allensdk_manifest": report["manifest"], "warehouse_url": warehouse_url}
    manifest = out_dir / manifest_name
    write_manifest(manifest, dataset, source, files)
    log.info("%s: %d experiments from AllenSDK registered; manifest %s", dataset, len(ids),
             manifest)
    return manifest


# ---------------------------------------------------------------------------- the pipeline's steps

def _experiment_files(manifest) -> list[dict]:
    """The experiment entries of a manifest, each file re-checked; at least one."""
    _, files = read_manifest(manifest, role="experiment")
    if not files:
        raise ValueError(f"{manifest}: lists no two-photon experiment")
    return files


def assemble_allen_ophys(manifest, **block) -> xr.DataArray:
    """`ophys_assembly` over the experiments a download manifest lists.

    Parameters
    ----------
    manifest : path-like
        ``data/raw/allen_ophys/manifest.json``; listed files are re-checked first.
    **block
        The config block ``datasets.allen_ophys.assemble``: the keyword arguments of
        `ophys_assembly` (areas, reliability_threshold, run_pval_threshold, running_threshold,
        min_running_trials, specimen_quantile, n_boot, seed).
    """
    files = _experiment_files(manifest)
    with h5py.File(files[0]["local"], "r") as f:
        n_scenes = f[TEMPLATE_STACK].shape[0] if TEMPLATE_STACK in f else None
    if n_scenes is None:
        raise ValueError(f"{files[0]['local']}: NWB field {TEMPLATE_STACK!r} missing; it fixes "
                         f"the number of natural scenes")
    return ophys_assembly(
        [f["local"] for f in files], natural_scene_ids(n_scenes),
        metadata=[{k: f.get(k) for k in ("id", "area", "specimen", "container_id")}
                  for f in files], **block)


def allen_ophys_stimuli(manifest, *, name: str, stimulus_size: int) -> xr.Dataset:
    """The natural-scenes StimulusSet of the template stack in the first listed experiment.

    Parameters
    ----------
    manifest : path-like
        ``data/raw/allen_ophys/manifest.json``.
    name : str
        Stored as attrs["name"] (``allen_ophys_scenes``).
    stimulus_size : int
        Side in pixels after the spec's validation transform (`natural_scenes.stimulus_set`).
    """
    path = _experiment_files(manifest)[0]["local"]
    with h5py.File(path, "r") as f:
        images = _read(f, TEMPLATE_STACK, path)
    return stimulus_set(images, name=name, size=stimulus_size,
                        attrs={"source": f"{path.name}:{TEMPLATE_STACK}"})
