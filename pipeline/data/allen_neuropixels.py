"""Allen Brain Observatory Visual Coding Neuropixels: download, NeuralAssembly, stimulus set.

Download (notes/data-sources.md §1): the brain_observatory_1.1 session NWB files of DANDI
000021, listed through the DANDI API and verified against their DANDI etag / sha256
(`pipeline.data.fetch.dandi`), and the natural-scene template TIFFs from the Allen warehouse,
listed by the RMA query AllenSDK's ``EcephysProjectWarehouseApi`` uses. ``manifest.json``
beside the files records what was fetched, from where and how it was verified; the assemble
and stimuli steps read only the files it lists.

Assembly (spec §2.1.1, §2.1.3, §2.1.4): reads session NWB files in the Allen layout (DANDI
000021; synthetic sessions use the same layout) with h5py: the units table (ragged spike_times,
quality, peak_channel_id), the electrodes table (id → location, the area acronym AllenSDK calls
ecephys_structure_acronym) and ``intervals/natural_scenes_presentations``. Spikes are counted in
10-ms bins over 0–250 ms of every non-blank presentation, then units, specimens and per-specimen
time windows are selected by split-half reliability per bin. When the session holds running
speed (``processing/running/running_speed``, as the DANDI 000021 files do), each unit's running
modulation at its preferred image (``run_pval``, `pipeline.data.running`) is computed too and
can filter units as the spec asks.
"""

from __future__ import annotations

import logging
import math
import re
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from pipeline.data.assembly import (
    ALLEN_AREAS,
    TIME_BINS,
    keep_specimens,
    stack_populations,
    time_average,
    time_bin_coords,
    validate_assembly,
    with_bin_reliability,
)
from pipeline.data.fetch.allensdk_cache import (adopt, ecephys_sessions, open_cache, read_report,
                                                register, scene_templates)
from pipeline.data.fetch.dandi import list_assets
from pipeline.data.fetch.download import (ChecksumError, DownloadError, Remote, fetch_all,
                                          http_settings, read_manifest, write_manifest)
from pipeline.data.fetch.remote import get_json
from pipeline.data.hdf5 import read, text
from pipeline.data.natural_scenes import (TEMPLATE_RE, natural_scene_ids, read_tiff_templates,
                                          stimulus_set)
from pipeline.data.reliability import split_half_reliability
from pipeline.data.running import presentation_speed, running_pvalue

log = logging.getLogger(__name__)

PRESENTATIONS = "intervals/natural_scenes_presentations"
ELECTRODES = "general/extracellular_ephys/electrodes"
RUNNING = "processing/running/running_speed"
SESSION_GLOB = "sub-*/sub-*_ses-*.nwb"
SESSION_RE = re.compile(r"_ses-(?P<session>\d+)\.nwb$")
ECEPHYS_PRODUCT_ID = 714914585
TEMPLATE_QUERY = ("criteria=model::WellKnownFile,rma::criteria,"
                  "well_known_file_type[name$eq'Stimulus'][attachable_type$eq'Product']"
                  "[attachable_id$eq{product_id}]")
# AllenSDK's default unit quality filter (ecephys ``UNIT_FILTER_DEFAULTS``), which
# EcephysProjectCache.get_session_data applies before any analysis sees `session.units`.
ALLEN_UNIT_QC = {"amplitude_cutoff_maximum": 0.1, "presence_ratio_minimum": 0.95,
                 "isi_violations_maximum": 0.5}
_read = partial(read, expected=f"an Allen Neuropixels session file (units, electrodes, "
                               f"{PRESENTATIONS})")


def largest_run(mask: np.ndarray) -> tuple[int, int] | None:
    """Start and stop (exclusive) of the longest run of True in `mask`; the earliest on ties.

    Returns None when `mask` has no True entry.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


def _unit_qc_mask(f: h5py.File, path, unit_qc: dict | None, n_units: int) -> np.ndarray:
    """Units passing AllenSDK-style quality thresholds (all True when `unit_qc` is None)."""
    keep = np.ones(n_units, dtype=bool)
    if not unit_qc:
        return keep
    checks = {"amplitude_cutoff_maximum": ("amplitude_cutoff", np.less_equal),
              "presence_ratio_minimum": ("presence_ratio", np.greater_equal),
              "isi_violations_maximum": ("isi_violations", np.less_equal)}
    for key, value in unit_qc.items():
        if key not in checks:
            raise ValueError(f"unit_qc: unknown key {key!r}; expected some of {sorted(checks)}")
        if value is None:
            continue
        column, compare = checks[key]
        keep &= compare(_read(f, f"units/{column}", path).astype(np.float64), value)
    return keep


def session_spike_counts(nwb_path, *, areas=ALLEN_AREAS, bin_size=0.01,
                         window=(0.0, 0.25), unit_qc: dict | None = None) -> xr.DataArray:
    """Spike counts per natural-scene presentation and time bin for one session.

    Parameters
    ----------
    nwb_path : path-like
        Allen session NWB file (not a ``_probe-`` file).
    areas : sequence of str
        Keep good-quality units whose peak channel lies in one of these areas.
    bin_size : float
        Bin width in seconds.
    window : (float, float)
        Counting window relative to presentation onset, in seconds.
    unit_qc : dict, optional
        Quality thresholds on the units table, keys ``amplitude_cutoff_maximum``,
        ``presence_ratio_minimum``, ``isi_violations_maximum`` (`ALLEN_UNIT_QC` holds
        AllenSDK's defaults); None applies none. Units whose peak channel has
        ``valid_data == False`` are always dropped, as AllenSDK's ``filter_by_validity`` does.

    Returns
    -------
    xarray.DataArray
        Counts (float32, NaN = missing trial) with dims (stimulus, trial, time_bin, neuroid).
        Coords: frame (int image index) on stimulus; time_bin (bin start, s); neuroid_id
        ("{session_id}_{unit_id}"), unit_id, area, animal (subject id), session_id on neuroid;
        running_speed (stimulus, trial; cm/s, mean over each presentation) when the file has
        ``processing/running/running_speed``. Blank presentations (frame -1) are dropped;
        trials are in presentation order.
    """
    path = Path(nwb_path)
    n_bins = int(round((window[1] - window[0]) / bin_size))
    if n_bins < 1 or not math.isclose(window[0] + n_bins * bin_size, window[1], abs_tol=1e-9):
        raise ValueError(f"session_spike_counts: window {window} must be a positive whole "
                         f"number of bins of {bin_size} s")
    with h5py.File(path, "r") as f:
        session_id = text(f, "general/session_id", path)
        animal = text(f, "general/subject/subject_id", path)
        unit_id = _read(f, "units/id", path)
        quality = _read(f, "units/quality", path)
        peak = _read(f, "units/peak_channel_id", path)
        index = _read(f, "units/spike_times_index", path).astype(np.int64)
        channel = _read(f, f"{ELECTRODES}/id", path)
        location = _read(f, f"{ELECTRODES}/location", path)
        start = _read(f, f"{PRESENTATIONS}/start_time", path)
        frame = _read(f, f"{PRESENTATIONS}/frame", path)
        # Area via the peak channel, as AllenSDK builds ecephys_structure_acronym.
        lookup = dict(zip(channel.tolist(), location.tolist()))
        missing = sorted(set(peak.tolist()) - set(lookup))
        if missing:
            raise ValueError(f"{path}: units/peak_channel_id {missing[0]} (and {len(missing) - 1} "
                             f"more) not among the {ELECTRODES} ids")
        area = np.array([lookup[c] for c in peak.tolist()], dtype=object)
        valid = np.ones(unit_id.size, dtype=bool)
        if f"{ELECTRODES}/valid_data" in f:
            valid_channels = set(channel[_read(f, f"{ELECTRODES}/valid_data", path)
                                         .astype(bool)].tolist())
            valid = np.array([c in valid_channels for c in peak.tolist()], dtype=bool)
        qc = _unit_qc_mask(f, path, unit_qc, unit_id.size)
        keep = np.flatnonzero((quality == "good") & np.isin(area, list(areas)) & valid & qc)
        bounds = np.concatenate([[0], index])
        if "units/spike_times" not in f:
            raise ValueError(f"{path}: NWB field 'units/spike_times' missing")
        times = f["units/spike_times"]
        spikes = [times[bounds[u]:bounds[u + 1]] for u in keep]
        stop = _read(f, f"{PRESENTATIONS}/stop_time", path)
        speed = None
        if f"{RUNNING}/data" in f:
            speed = presentation_speed(_read(f, f"{RUNNING}/timestamps", path),
                                       _read(f, f"{RUNNING}/data", path), start, stop)
    order = np.argsort(start[frame >= 0], kind="stable")
    if speed is not None:
        speed = speed[frame >= 0][order]
    start, frame = start[frame >= 0][order], frame[frame >= 0][order].astype(np.int64)
    if frame.size == 0:
        raise ValueError(f"{path}: {PRESENTATIONS} has no non-blank presentation")
    images, stim_index = np.unique(frame, return_inverse=True)
    # Trial number = rank of each presentation among those of its image, in time order.
    per_image = np.bincount(stim_index)
    rank = np.empty(frame.size, dtype=np.int64)
    by_image = np.argsort(stim_index, kind="stable")
    rank[by_image] = np.arange(frame.size) - np.repeat(np.cumsum(per_image) - per_image, per_image)
    edges = (start[:, None] + window[0] + bin_size * np.arange(n_bins + 1)).ravel()
    counts = np.full((images.size, per_image.max(), n_bins, keep.size), np.nan, dtype=np.float32)
    for j, t in enumerate(spikes):
        t = np.sort(t)
        cum = np.searchsorted(t, edges, side="left").reshape(frame.size, n_bins + 1)
        counts[stim_index, rank, :, j] = np.diff(cum, axis=1)
    log.info("%s: %d presentations of %d images, %d of %d units kept (good%s, in %s)",
             path.name, frame.size, images.size, keep.size, unit_id.size,
             ", passing unit QC" if unit_qc else "", ",".join(areas))
    coords = {"frame": ("stimulus", images),
              "time_bin": window[0] + bin_size * np.arange(n_bins),
              "neuroid_id": ("neuroid", [f"{session_id}_{u}" for u in unit_id[keep]]),
              "unit_id": ("neuroid", unit_id[keep]),
              "area": ("neuroid", area[keep].astype(str)),
              "animal": ("neuroid", np.full(keep.size, animal)),
              "session_id": ("neuroid", np.full(keep.size, session_id))}
    if speed is not None:
        per_trial = np.full(counts.shape[:2], np.nan)
        per_trial[stim_index, rank] = speed
        coords["running_speed"] = (("stimulus", "trial"), per_trial)
    return xr.DataArray(counts, dims=("stimulus", "trial", "time_bin", "neuroid"),
                        name="spike_count", coords=coords)


def select_window(rates: xr.DataArray, *, unit_threshold=0.5, median_threshold=0.3, n_boot=100,
                  seed=0, time_bins="mean") -> tuple[xr.DataArray, tuple[float, float]] | None:
    """Reliable units and time window of one specimen in one area (spec §2.1.3 steps 1–4).

    Parameters
    ----------
    rates : xarray.DataArray
        (stimulus, trial, time_bin, neuroid) responses of one specimen's units in one area.
    unit_threshold : float
        Keep units whose per-bin SB split-half reliability reaches this in at least one bin.
    median_threshold : float
        The specimen needs the median reliability over kept units to reach this in some bin.
    n_boot, seed : int
        Split-half resamples and their seed.
    time_bins : {"mean", "keep"}
        "keep" returns the kept units' every bin instead of their window mean.

    Returns
    -------
    (xarray.DataArray, (float, float)) or None
        Kept units averaged over the largest contiguous run of bins whose median reliability
        is >= median_threshold, dims (stimulus, trial, neuroid) (with "keep": all bins,
        (stimulus, trial, time_bin, neuroid)), and the window (start, stop) in seconds; None
        when no unit or no bin passes.
    """
    per_bin = split_half_reliability(rates, n_boot=n_boot, seed=seed)      # (time_bin, neuroid)
    best = per_bin.fillna(-np.inf).max("time_bin")
    kept = rates.isel(neuroid=np.flatnonzero((best >= unit_threshold).values))
    if kept.sizes["neuroid"] == 0:
        return None
    median = per_bin.isel(neuroid=np.flatnonzero((best >= unit_threshold).values))
    median = median.fillna(-np.inf).median("neuroid").values
    run = largest_run(median >= median_threshold)
    if run is None:
        return None
    time_bin = rates["time_bin"].values
    bin_size = time_bin[1] - time_bin[0] if time_bin.size > 1 else 0.0
    response = kept if time_bins == "keep" else kept.isel(time_bin=slice(*run)).mean(
        "time_bin", skipna=False)
    return response, (float(time_bin[run[0]]), float(time_bin[run[1] - 1] + bin_size))


def session_type_of(nwb_path) -> str | None:
    """The session's ``general/stimulus`` text (e.g. "brain_observatory_1.1"), or None."""
    with h5py.File(nwb_path, "r") as f:
        return text(f, "general/stimulus", nwb_path) if "general/stimulus" in f else None


def _running_filter(counts: xr.DataArray, path, *, threshold: float | None,
                    running_threshold: float) -> xr.DataArray:
    """Attach run_pval (NaN without running data); drop units with run_pval <= threshold."""
    if "running_speed" not in counts.coords:
        if threshold is not None:
            raise ValueError(f"{path}: the running filter needs NWB field '{RUNNING}', which "
                             f"is missing; set run_pval_threshold to null to skip it")
        pval = np.full(counts.sizes["neuroid"], np.nan)
    else:
        # Spike count over the whole counting window (0-250 ms: AllenSDK's trial_duration).
        pval = running_pvalue(counts.sum("time_bin", skipna=False), counts["running_speed"],
                              threshold=running_threshold, min_trials=2,
                              nan_is_stationary=True).values
    counts = counts.assign_coords(run_pval=("neuroid", pval))
    if threshold is None:
        return counts
    keep = ~(pval <= threshold)                       # NaN passes, as in the spec
    log.info("%s: %d of %d units pass the running filter (run_pval > %.3g or NaN)",
             Path(path).name, keep.sum(), keep.size, threshold)
    return counts.isel(neuroid=np.flatnonzero(keep))


def neuropixels_assembly(nwb_paths, stimulus_ids, *, areas=ALLEN_AREAS, bin_size=0.01,
                         window=(0.0, 0.25), unit_threshold=0.5, median_threshold=0.3,
                         specimen_quantile=None, n_boot=100, seed=0, run_pval_threshold=None,
                         running_threshold=1.0, unit_qc=None, session_type=None,
                         time_bins="mean") -> xr.DataArray:
    """NeuralAssembly (Hz) of Neuropixels sessions, with the spec's reliability selection.

    Per session and area (spec §2.1.3): drop units modulated by running (when
    `run_pval_threshold` is given); per-bin SB split-half reliability; keep units reaching
    `unit_threshold` in some bin; keep the specimen if the median over kept units reaches
    `median_threshold` in some bin; average over the largest contiguous run of such bins.
    Then (spec §2.1.4, when `specimen_quantile` is given) keep, per area, the specimens whose
    unit count is >= ceil(quantile of the per-specimen counts).

    Parameters
    ----------
    nwb_paths : sequence of path-like
        Session files, one per specimen.
    stimulus_ids : sequence of str
        stimulus_ids[frame] names image `frame`; fixes the stimulus dim of the result.
    areas : sequence of str
        Areas to assemble.
    bin_size, window : float, (float, float)
        Counting bins and window (s) relative to onset.
    unit_threshold, median_threshold : float
        The §2.1.3 thresholds.
    specimen_quantile : float or None
        The §2.1.4 quantile (0.75 in the thesis); None keeps every specimen.
    n_boot, seed : int
        Split-half resamples and seed, for the filters and the reported reliability.
    run_pval_threshold : float or None
        Keep units whose running-modulation p-value at their preferred image is above this,
        or NaN (spec: 0.05); None skips the filter (synthetic sessions have no running).
    running_threshold : float
        Speed (cm/s) from which a presentation counts as running (AllenSDK: 1).
    unit_qc : dict or None
        Unit quality thresholds passed to `session_spike_counts` (`ALLEN_UNIT_QC` for the
        AllenSDK defaults).
    session_type : str or None
        Skip sessions whose ``general/stimulus`` is present and differs (e.g.
        "brain_observatory_1.1").
    time_bins : {"mean", "keep"}
        "mean" averages each specimen's window; "keep" keeps the kept units' every bin of
        `window` as dim time_bin (coords time_bin, time_bin_end; bin_reliability per unit and
        bin), selected exactly as with "mean" (`time_average` of it is the "mean" assembly).

    Returns
    -------
    xarray.DataArray
        "response" (stimulus, trial, neuroid) in Hz, NaN-padded; coords stimulus_id and frame
        on stimulus; neuroid_id, animal, area, session_id, reliability (SB split-half of the
        windowed response), run_pval (NaN without running data), window_start, window_stop (s)
        on neuroid.
    """
    if time_bins not in TIME_BINS:
        raise ValueError(f"neuropixels_assembly: time_bins must be one of {TIME_BINS}; "
                         f"got {time_bins!r}")
    stimulus_ids = np.asarray(stimulus_ids, dtype=str)
    areas, window = tuple(areas), tuple(window)
    selected, units = [], {}
    totals = {area: [0, 0] for area in areas}   # units before / after the unit filters
    for path in nwb_paths:
        if session_type is not None and session_type_of(path) not in (None, session_type):
            log.info("%s: session type %r is not %r; skipped", Path(path).name,
                     session_type_of(path), session_type)
            continue
        counts = session_spike_counts(path, areas=areas, bin_size=bin_size, window=window,
                                      unit_qc=unit_qc)
        if counts["frame"].values.max(initial=-1) >= stimulus_ids.size:
            raise ValueError(f"{path}: frame {counts['frame'].values.max()} has no entry in "
                             f"stimulus_ids ({stimulus_ids.size} given)")
        n_before = {area: int((counts["area"].values == area).sum()) for area in areas}
        counts = _running_filter(counts, path, threshold=run_pval_threshold,
                                 running_threshold=running_threshold)
        rates = counts / bin_size
        for area in areas:
            in_area = rates.isel(neuroid=np.flatnonzero(rates["area"].values == area))
            totals[area][0] += n_before[area]
            if in_area.sizes["neuroid"] == 0:
                continue
            result = select_window(in_area, unit_threshold=unit_threshold,
                                   median_threshold=median_threshold, n_boot=n_boot, seed=seed,
                                   time_bins=time_bins)
            if result is None:
                log.info("%s %s: no unit/bin passes the reliability thresholds; specimen dropped",
                         Path(path).name, area)
                continue
            response, (start, stop) = result
            totals[area][1] += response.sizes["neuroid"]
            response = response.assign_coords(
                window_start=("neuroid", np.full(response.sizes["neuroid"], start)),
                window_stop=("neuroid", np.full(response.sizes["neuroid"], stop)))
            key = (str(response["animal"].values[0]), area)
            units[key] = units.get(key, 0) + response.sizes["neuroid"]
            selected.append((key, response))
    selected = keep_specimens(selected, units, specimen_quantile)
    for area in areas:
        kept = [r.sizes["neuroid"] for key, r in selected if key[1] == area]
        log.info("%s: %d units; %d pass the unit filters (running, >= %.2f in a bin); %d units "
                 "in %d specimens after the median (>= %.2f) and specimen-count filters", area,
                 totals[area][0], totals[area][1], unit_threshold, sum(kept), len(kept),
                 median_threshold)
    if not selected:
        raise ValueError(f"neuropixels_assembly: no unit in {list(map(str, nwb_paths))} passed the "
                         f"reliability selection for areas {list(areas)}")
    n_bins = int(round((window[1] - window[0]) / bin_size))
    assembly = stack_populations([r for _, r in selected], stimulus_ids,
                                 ("neuroid_id", "animal", "area", "session_id", "run_pval",
                                  "window_start", "window_stop"),
                                 time_bin_coords(window[0] + bin_size * np.arange(n_bins), bin_size))
    if time_bins == "keep":
        assembly = with_bin_reliability(assembly, n_boot, seed)
    reliability = split_half_reliability(time_average(assembly), n_boot=n_boot, seed=seed)
    assembly = assembly.assign_coords(reliability=("neuroid", reliability.values))
    assembly.attrs = {"units": "Hz", "bin_size": bin_size, "window": list(window),
                      "unit_threshold": unit_threshold, "median_threshold": median_threshold,
                      "specimen_quantile": specimen_quantile,
                      "run_pval_threshold": run_pval_threshold, "unit_qc": unit_qc or {}}
    if time_bins == "keep":
        assembly.attrs["time_bins"] = "keep"
    return validate_assembly(assembly, "neuropixels_assembly")


# ---------------------------------------------------------------------------- download

def template_remotes(api_url: str, product_id: int = ECEPHYS_PRODUCT_ID, *,
                     dataset: str, session=None, page_size: int = 50, **http) -> list[Remote]:
    """The natural-scene template TIFFs of the ecephys product, from the warehouse RMA API.

    Pages with ``rma::options[start_row][num_rows]`` until ``total_rows`` are read. Files are
    numbered by the ``.../<n>.tiff`` in their path (AllenSDK's ``scene_re``); the warehouse
    publishes no checksum, so they are verified by ``file_size`` when the record has it and by
    the announced Content-Length otherwise.
    """
    api_url = api_url.rstrip("/")
    query = TEMPLATE_QUERY.format(product_id=product_id)
    records, start, total = [], 0, None
    while total is None or start < total:
        url = (f"{api_url}/api/v2/data/query.json?{query},rma::options[start_row$eq{start}]"
               f"[num_rows$eq{page_size}][order$eq'id']")
        page = get_json(url, dataset=dataset, session=session, **http)
        if not isinstance(page, dict) or not page.get("success", False) or "msg" not in page:
            raise DownloadError(f"{dataset}: warehouse query {url} failed: "
                                f"{str(page)[:200]}")
        records += page["msg"]
        total = int(page.get("total_rows", len(records)))
        if not page["msg"]:
            break
        start += len(page["msg"])
    remotes = []
    for record in records:
        match = TEMPLATE_RE.match(record.get("path", ""))
        if match is None:
            continue                              # natural movies and other stimuli
        size = record.get("file_size")
        remotes.append(Remote(url=f"{api_url}{record['download_link']}",
                              path=f"natural_scene_templates/{int(match['num'])}.tiff",
                              size=size if isinstance(size, int) else None))
    if not remotes:
        raise DownloadError(f"{dataset}: the warehouse lists no natural-scene template for "
                            f"product {product_id} ({api_url})")
    log.info("%s: %d natural-scene templates listed", dataset, len(remotes))
    return sorted(remotes, key=lambda r: int(TEMPLATE_RE.match("/" + r.path)["num"]))


def neuropixels_session_assets(dandiset: str, version: str, *, api_url: str, sessions=None,
                               dataset: str, session=None, **http) -> list:
    """The DANDI session assets (no ``_probe-`` files) of a dandiset; `sessions` ids, or all."""
    assets = list_assets(dandiset, version, api_url=api_url, glob=SESSION_GLOB, dataset=dataset,
                         session=session, **http)
    assets = [a for a in assets if "_probe-" not in a.path and SESSION_RE.search(a.path)]
    if sessions is not None:
        wanted = {str(s) for s in sessions}
        found = {SESSION_RE.search(a.path)["session"] for a in assets}
        if wanted - found:
            raise DownloadError(f"{dataset}: sessions {sorted(wanted - found)} are not in "
                                f"dandiset {dandiset}/{version}")
        assets = [a for a in assets if SESSION_RE.search(a.path)["session"] in wanted]
    if not assets:
        raise DownloadError(f"{dataset}: no session file matches {SESSION_GLOB} in dandiset "
                            f"{dandiset}/{version}")
    return assets


def download_allen_neuropixels(out_dir, *, dandiset: str, version: str, api_url: str,
                               templates_url: str, sessions=None, retries: int, backoff: float,
                               timeout: float, backend: str = "dandi", allensdk_cache=None,
                               allensdk_cache_mode: str = "link", rma_timeout: float = 1200,
                               dataset: str = "allen_neuropixels",
                               manifest_name: str = "manifest.json") -> Path:
    """Fetch the selected sessions and the scene templates; write ``out_dir/manifest.json``.

    Parameters
    ----------
    out_dir : path-like
        The dataset's cache, ``data/raw/allen_neuropixels``; verified files already there are
        not downloaded again.
    dandiset, version, api_url, templates_url, sessions, retries, backoff, timeout
        The config block ``datasets.allen_neuropixels.download`` (sessions None = all).
    backend : {"dandi", "allensdk"}
        ``dandi``: DANDI listing and verified downloads. ``allensdk``: register what the rule
        ``fetch_allensdk`` fetched with AllenSDK (report ``out_dir/allensdk/fetched.json``).
    allensdk_cache : path-like or None
        With ``dandi``: an existing AllenSDK ``EcephysProjectCache`` folder (or its
        manifest.json). Its sessions (matched by id through its ``sessions.csv``) and scene
        templates are linked or copied in when they match DANDI's etag/sha256 or the
        warehouse's size (`pipeline.data.fetch.allensdk_cache.adopt`); the rest is downloaded.
    allensdk_cache_mode : {"link", "copy"}
        Symlink to the AllenSDK files, or copy them.
    rma_timeout : float
        ``EcephysProjectCache.from_warehouse(timeout=...)``: seconds one AllenSDK download may
        take before its HTTP engine aborts it (backend ``allensdk``; read by the fetch script).
    dataset, manifest_name : str
        Name in log lines and errors; file name of the manifest in `out_dir` (another name lets
        a partial download, e.g. one session, share the cache without replacing the pipeline's).

    Returns
    -------
    pathlib.Path
        The manifest: each session (with its session_id) and template file, where it came from
        and how it was verified.
    """
    out_dir = Path(out_dir)
    if backend == "allensdk":
        return _register_allensdk(out_dir, mode=allensdk_cache_mode, templates_url=templates_url,
                                  dataset=dataset, manifest_name=manifest_name)
    if backend != "dandi":
        raise ValueError(f"{dataset}: download.backend must be 'dandi' or 'allensdk'; "
                         f"got {backend!r}")
    http = http_settings(retries=retries, backoff=backoff, timeout=timeout)
    cache = open_cache(allensdk_cache, dataset=dataset) if allensdk_cache else None
    assets = neuropixels_session_assets(dandiset, version, api_url=api_url, sessions=sessions,
                                        dataset=dataset, **http)
    remotes = [a.remote() for a in assets]
    reused = {}
    if cache is not None:
        found = ecephys_sessions(cache, dataset=dataset)
        pairs = [(r, found.get(SESSION_RE.search(a.path)["session"]))
                 for a, r in zip(assets, remotes)]
        reused.update(adopt(pairs, out_dir, mode=allensdk_cache_mode, dataset=dataset).reused)
    results = fetch_all(remotes, out_dir, dataset=dataset, **http)
    files = [{"path": a.path, "role": "session", "url": a.download_url, "asset_id": a.asset_id,
              "session_id": SESSION_RE.search(a.path)["session"], "sha256": r.sha256,
              "size": r.size, "verified_by": r.verified_by} for a, r in zip(assets, results)]
    templates = template_remotes(templates_url, dataset=dataset, **http)
    if cache is not None:
        numbers = [int(TEMPLATE_RE.match("/" + t.path)["num"]) for t in templates]
        found = scene_templates(cache, numbers)
        reused.update(adopt([(t, found.get(n)) for t, n in zip(templates, numbers)], out_dir,
                            mode=allensdk_cache_mode, dataset=dataset).reused)
    for remote, result in zip(templates, fetch_all(templates, out_dir, dataset=dataset, **http)):
        files.append({"path": remote.path, "role": "template", "url": remote.url,
                      "sha256": result.sha256, "size": result.size,
                      "verified_by": result.verified_by})
    source = {"dandiset": dandiset, "version": version, "api_url": api_url,
              "templates_url": templates_url}
    if cache is not None:                       # absent otherwise: the default is unchanged
        source["allensdk_cache"] = str(cache.manifest)
        for entry in files:
            if entry["path"] in reused:
                entry["reused_from"] = str(reused[entry["path"]])
    manifest = out_dir / manifest_name
    write_manifest(manifest, dataset, source, files)
    log.info("%s: %d sessions and %d templates verified (%d from the AllenSDK cache); "
             "manifest %s", dataset, len(assets), len(templates), len(reused), manifest)
    return manifest


def _nwb_check(session_id: str):
    """A `register` check: the file opens as HDF5 and its general/session_id is `session_id`."""
    def check(path):
        try:
            with h5py.File(path, "r") as f:
                found = text(f, "general/session_id", path) if "general/session_id" in f else None
        except OSError as err:                    # HDF5 refuses a file shorter than its EOF
            raise ChecksumError(f"not a readable HDF5/NWB file ({err})") from err
        if found is not None and found != session_id:
            raise ChecksumError(f"general/session_id is {found!r}, expected {session_id!r}")
        return ["hdf5"] + (["session_id"] if found is not None else [])
    return check


def _tiff_check(path):
    """A `register` check: the template decodes as an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, UnidentifiedImageError) as err:
        raise ChecksumError(f"not a readable TIFF ({err})") from err
    return ["tiff"]


def _register_allensdk(out_dir: Path, *, mode: str, templates_url: str, dataset: str,
                       manifest_name: str) -> Path:
    """Manifest of the sessions and templates the allensdk backend fetched (same raw layout)."""
    report = read_report(out_dir / "allensdk" / "fetched.json", kind="ecephys", dataset=dataset)
    sessions = report["sessions"]
    if not sessions or not report["templates"]:
        raise DownloadError(f"{dataset}: the allensdk backend fetched {len(sessions)} sessions "
                            f"and {len(report['templates'])} templates; both are needed")
    items = [(f"sub-{s['specimen_id']}/sub-{s['specimen_id']}_ses-{s['session_id']}.nwb",
              s["path"], _nwb_check(s["session_id"])) for s in sessions]
    items += [(f"natural_scene_templates/{t['number']}.tiff", t["path"], _tiff_check)
              for t in sorted(report["templates"], key=lambda t: t["number"])]
    files = register(items, out_dir, mode=mode, dataset=dataset)
    for entry, s in zip(files, sessions):
        entry.update(role="session", session_id=s["session_id"])
    for entry in files[len(sessions):]:
        entry["role"] = "template"
    source = {"backend": "allensdk", "allensdk": report.get("allensdk"),
              "allensdk_manifest": report["manifest"], "templates_url": templates_url}
    manifest = out_dir / manifest_name
    write_manifest(manifest, dataset, source, files)
    log.info("%s: %d sessions and %d templates from AllenSDK registered; manifest %s", dataset,
             len(sessions), len(files) - len(sessions), manifest)
    return manifest


# ---------------------------------------------------------------------------- the pipeline's steps

def assemble_allen_neuropixels(manifest, **block) -> xr.DataArray:
    """`neuropixels_assembly` over the session files a download manifest lists.

    Parameters
    ----------
    manifest : path-like
        ``data/raw/allen_neuropixels/manifest.json`` (`download_allen_neuropixels`); every
        listed file is re-checked against its verification record first.
    **block
        The config block ``datasets.allen_neuropixels.assemble``: the keyword arguments of
        `neuropixels_assembly` (areas, session_type, bin_size, window, unit_qc, unit_threshold,
        median_threshold, specimen_quantile, running_threshold, run_pval_threshold, n_boot,
        seed, time_bins).

    Returns
    -------
    xarray.DataArray
        The NeuralAssembly; stimulus_ids are `natural_scene_ids` of the listed templates, so
        they match the stimulus set built from the same manifest.
    """
    _, files = read_manifest(manifest)
    sessions = [f["local"] for f in files if f.get("role") == "session"]
    n_templates = sum(f.get("role") == "template" for f in files)
    if not sessions or not n_templates:
        raise ValueError(f"{manifest}: lists {len(sessions)} sessions and {n_templates} "
                         f"templates; both are needed")
    return neuropixels_assembly(sessions, natural_scene_ids(n_templates), **block)


def allen_neuropixels_stimuli(manifest, *, name: str, stimulus_size: int) -> xr.Dataset:
    """The natural-scenes StimulusSet of the warehouse template TIFFs a manifest lists.

    Parameters
    ----------
    manifest : path-like
        ``data/raw/allen_neuropixels/manifest.json`` (files of role "template").
    name : str
        Stored as attrs["name"] (``allen_neuropixels_scenes``).
    stimulus_size : int
        Side in pixels after the spec's validation transform (`natural_scenes.stimulus_set`).
    """
    _, files = read_manifest(manifest, role="template")
    if not files:
        raise ValueError(f"{manifest}: lists no natural-scene template (role 'template')")
    return stimulus_set(read_tiff_templates([f["local"] for f in files]), name=name,
                        size=stimulus_size, attrs={"source": "Allen warehouse template TIFFs"})
