"""MEC open-field recordings (DANDI 000053, 000582): download, spatial rate-map NeuralAssembly.

Download: the NWB assets of each configured dandiset are listed through the DANDI API and
fetched into ``data/raw/mec_openfield/{dandiset}/`` with `pipeline.data.fetch.download.fetch`
(``.part`` + rename, resume, retries, verified against DANDI's etag / sha256 and size);
``manifest.json`` lists what was verified.

Assembly: each session file is read with h5py in either upstream layout (notes/data-sources.md
§3): ``/units`` (ragged ``spike_times``, labels ``cell_id`` in 000053 or ``unit_name`` +
``histology`` in 000582) and a 2-column SpatialSeries under ``/processing/behavior/Position``
(``position`` in 000053; ``SpatialSeriesLED1`` and optionally ``SpatialSeriesLED2``, averaged,
in 000582), converted to cm with its ``unit`` and ``conversion`` attributes. The arena size is
parsed from the description text ("arena size (cm): [75.]", "a 1 x 1 meter enclosure"). Rate
maps (`pipeline.mec.ratemaps`) are computed on a grid of 5-cm bins centred on the tracked
extent. The stimuli of the assembly are the bins, the two trials the split-halves of the
session, the neuroids every kept unit.

One assembly holds one arena size, as the spec treats each arena as its own dataset (§3.1,
§3.2: 20 × 20 bins for 100 cm, 30 × 30 for 150 cm): sessions of another size are skipped when
``arena_cm`` is set, and a mix of sizes is an error when it is not. Bins unvisited in any kept
session or half are dropped for all (spec §3.2, ``nan_filter``), so the assembly has no NaN.
"""

from __future__ import annotations

import logging
import re
from fnmatch import fnmatch
from pathlib import Path

import h5py
import numpy as np
import xarray as xr
from tqdm import tqdm

from pipeline.data.assembly import validate_assembly
from pipeline.data.fetch.dandi import list_assets
from pipeline.data.fetch.download import (DownloadError, fetch_all, http_settings, read_manifest,
                                          write_manifest)
from pipeline.data.hdf5 import strings, text
from pipeline.data.reliability import split_half_reliability
from pipeline.mec.ratemaps import BinGrid, rate_maps

log = logging.getLogger(__name__)

POSITION = "processing/behavior/Position"
UNIT_LABELS = ("cell_id", "unit_name")          # 000053, 000582
UNIT_EXTRA = ("histology", "hemisphere", "depth")
CM_PER = {"m": 100.0, "meter": 100.0, "meters": 100.0, "metre": 100.0, "metres": 100.0,
          "cm": 1.0, "centimeter": 1.0, "centimeters": 1.0, "centimetre": 1.0,
          "centimetres": 1.0, "mm": 0.1, "millimeter": 0.1, "millimeters": 0.1}
ARENA_CM_RE = re.compile(r"arena size \(cm\):\s*\[([0-9.,\s]+)\]", re.I)
ARENA_BOX_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:x|×|by)\s*(\d+(?:\.\d+)?)\s*"
                          r"(m|meters?|metres?|cm|centimeters?|centimetres?)\b", re.I)


# ---------------------------------------------------------------------------- reading

def parse_arena_cm(*texts: str) -> tuple[float, float] | None:
    """Arena (width, height) in cm from NWB description text; None when no text states it."""
    for text in texts:
        match = ARENA_CM_RE.search(text or "")
        if match:
            sides = [float(v) for v in re.split(r"[,\s]+", match[1].strip()) if v]
            return (sides[0], sides[-1])
        match = ARENA_BOX_RE.search(text or "")
        if match:
            scale = 1.0 if match[3].lower().startswith("c") else 100.0
            return (float(match[1]) * scale, float(match[2]) * scale)
    return None


def _series_times(series: h5py.Group, n: int, path) -> np.ndarray:
    if "timestamps" in series:
        return np.asarray(series["timestamps"][()], dtype=np.float64)
    if "starting_time" in series:
        start = series["starting_time"]
        return float(start[()]) + np.arange(n) / float(start.attrs["rate"])
    raise ValueError(f"{path}: {series.name} has neither timestamps nor starting_time")


def _series_cm(series: h5py.Group, path, position_unit: str | None) -> np.ndarray:
    data = series["data"]
    unit = (position_unit or strings([data.attrs.get("unit", "")])[0]).strip().lower()
    if unit not in CM_PER:
        raise ValueError(f"{path}: {series.name}/data has unit {unit!r}; expected one of "
                         f"{sorted(set(CM_PER))} (set the dataset's position_unit to override)")
    conversion = 1.0 if position_unit else float(data.attrs.get("conversion", 1.0))
    return np.asarray(data[()], dtype=np.float64) * conversion * CM_PER[unit]


def read_position(f: h5py.File, path, position_unit: str | None = None):
    """Times (s) and 2D positions (cm) of a session, or None when it has no 2D position.

    ``position`` (000053) or ``SpatialSeriesLED1`` (000582, averaged with ``SpatialSeriesLED2``
    where both LEDs are tracked); any single 2-column SpatialSeries otherwise.
    """
    if POSITION not in f:
        return None
    group = f[POSITION]
    names = [n for n in ("position", "SpatialSeriesLED1") if n in group] or list(group)
    if not names:
        return None
    series = group[names[0]]
    xy = _series_cm(series, path, position_unit)
    if xy.ndim != 2 or xy.shape[1] != 2:
        return None
    t = _series_times(series, len(xy), path)
    if names[0] == "SpatialSeriesLED1" and "SpatialSeriesLED2" in group:
        other = _series_cm(group["SpatialSeriesLED2"], path, position_unit)
        if other.shape == xy.shape:
            both = np.isfinite(xy).all(axis=1) & np.isfinite(other).all(axis=1)
            xy = np.where(both[:, None], (xy + other) / 2, xy)
    return t, xy


def read_units(f: h5py.File, path) -> dict:
    """Spike times per unit and the unit columns of ``/units`` (index cast from uint16)."""
    for key in ("units/spike_times", "units/spike_times_index"):
        if key not in f:
            raise ValueError(f"{path}: NWB field {key!r} missing; expected a units table")
    times = np.asarray(f["units/spike_times"][()], dtype=np.float64)
    ends = np.asarray(f["units/spike_times_index"][()], dtype=np.int64)
    spikes = np.split(times, ends[:-1])
    ids = np.asarray(f["units/id"][()], dtype=np.int64) if "units/id" in f \
        else np.arange(len(ends))
    label = next((k for k in UNIT_LABELS if f"units/{k}" in f), None)
    labels = strings(f[f"units/{label}"][()]) if label else ids.astype(str)
    extra = {k: strings(f[f"units/{k}"][()]) if f[f"units/{k}"].dtype.kind in "OS"
             else np.asarray(f[f"units/{k}"][()]) for k in UNIT_EXTRA if f"units/{k}" in f}
    return {"spikes": spikes, "unit_id": ids, "unit_label": labels, **extra}


def read_session(path, *, position_unit: str | None = None) -> dict | None:
    """One MEC session: subject, session name, arena (cm), times, positions (cm), units.

    Returns None (with a log line) when the file holds no 2D position, e.g. the virtual
    linear-track sessions of 000053.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        position = read_position(f, path, position_unit)
        if position is None:
            log.info("%s: no 2D position under %s; not an open-field session, skipped", path,
                     POSITION)
            return None
        arena = parse_arena_cm(text(f, "general/experiment_description", path, default=""),
                               text(f, "session_description", path, default=""))
        subject = text(f, "general/subject/subject_id", path, default="")
        units = read_units(f, path)
    if not subject:
        match = re.search(r"sub-([^/_]+)", path.as_posix())
        subject = match[1] if match else path.stem
    return {"path": path, "session": path.stem, "subject": subject, "arena": arena,
            "t": position[0], "xy": position[1], **units}


# ---------------------------------------------------------------------------- assembling

def session_grid(session: dict, arena: tuple[float, float], bin_size: float) -> BinGrid:
    """Bins of `arena` (cm) centred on the middle of the session's tracked extent."""
    xy = session["xy"][np.isfinite(session["xy"]).all(axis=1)]
    if not len(xy):
        raise ValueError(f"{session['path']}: no finite position sample")
    centre = (xy.min(axis=0) + xy.max(axis=0)) / 2
    return BinGrid(arena[0], arena[1], bin_size,
                   origin=(centre[0] - arena[0] / 2, centre[1] - arena[1] / 2))


def _choose_arena(sessions: list[dict], arena_cm) -> tuple[float, float]:
    found = {}
    for s in sessions:
        found.setdefault(s["arena"], []).append(s["session"])
    if None in found:
        raise ValueError(f"{found[None][0]}: no arena size in the NWB descriptions; set the "
                         f"dataset's arena_cm")
    if arena_cm is None:
        if len(found) > 1:
            raise ValueError(f"sessions come from arenas of {sorted(found)} cm; one assembly "
                             f"holds one arena (spec §3.2): set the dataset's arena_cm to one "
                             f"of them")
        return next(iter(found))
    wanted = (float(arena_cm), float(arena_cm))
    for size, names in found.items():
        if size != wanted:
            log.info("skipping %d sessions of a %s cm arena (arena_cm %s): %s", len(names),
                     size, arena_cm, names)
    if wanted not in found:
        raise ValueError(f"no session of a {arena_cm} cm arena; found arenas {sorted(found)} cm")
    return wanted


def rate_map_assembly(nwb_paths, *, arena_cm=None, bin_size=5.0, speed_threshold=2.0,
                      speed_window=0.25, max_gap=1.0, min_occupancy=0.1, sigma=1.0, half_block=60.0,
                      min_spikes=100, min_coverage=0.6, one_session_per_animal=True,
                      position_unit=None, labels: dict | None = None) -> xr.DataArray:
    """Spatial rate maps of MEC sessions as one NeuralAssembly (stimulus = 5-cm bin).

    Parameters
    ----------
    nwb_paths : sequence of path-like
        Session files in the 000053 or 000582 layout.
    arena_cm : float, optional
        Arena side to assemble; sessions of other sizes are skipped. None: all sessions must
        share one size.
    bin_size, speed_threshold, speed_window, max_gap, min_occupancy, sigma, half_block
        Rate-map settings (`pipeline.mec.ratemaps.rate_maps`; cm, cm/s, s, s, s, bins, s).
    min_spikes : int
        Units with fewer speed-filtered spikes in either half are dropped.
    min_coverage : float
        Sessions whose maps cover less than this fraction of the arena's bins in either half
        are dropped, so one short session cannot empty the common grid.
    one_session_per_animal : bool
        Keep only the session with the most units of each animal, so cells recorded again on
        another day are not counted twice.
    position_unit : str, optional
        Unit of the stored positions when the files' ``unit`` attribute is wrong.
    labels : dict, optional
        Path → extra neuroid labels (e.g. the dandiset id) to attach to that session's units.

    Returns
    -------
    xarray.DataArray
        Dims (stimulus, trial, neuroid): rates (Hz) per bin and split-half; coords stimulus_id
        (``x{i}_y{j}``), x, y (bin centres, cm from the arena corner), neuroid_id
        (``{session}_{unit}``), animal, area ("MEC"), session, unit_label, reliability (SB
        split-half over bins), n_spikes.
    """
    sessions = [s for s in (read_session(p, position_unit=position_unit)
                            for p in tqdm(list(nwb_paths), desc="read MEC sessions",
                                          unit="file", disable=None)) if s is not None]
    if not sessions:
        raise ValueError("no open-field MEC session among the files")
    arena = _choose_arena(sessions, arena_cm)
    sessions = [s for s in sessions if s["arena"] == arena]
    if one_session_per_animal:
        best = {}
        for s in sessions:
            if s["subject"] not in best or len(s["spikes"]) > len(best[s["subject"]]["spikes"]):
                best[s["subject"]] = s
        dropped = [s["session"] for s in sessions if best[s["subject"]] is not s]
        if dropped:
            log.info("one session per animal: %d sessions left out: %s", len(dropped), dropped)
        sessions = list(best.values())
    populations, grid = [], None
    for s in tqdm(sessions, desc="MEC rate maps", unit="session", disable=None):
        grid = session_grid(s, arena, bin_size)
        maps = rate_maps(s["t"], s["xy"], s["spikes"], grid, speed_threshold=speed_threshold,
                         speed_window=speed_window, max_gap=max_gap, min_occupancy=min_occupancy,
                         sigma=sigma, half_block=half_block)
        coverage = float((maps.occupancy >= max(min_occupancy, 1e-12)).mean("stimulus").min())
        if coverage < min_coverage:
            log.info("%s: maps cover %.0f%% of the arena in one half (< %.0f%%); session "
                     "dropped", s["session"], 100 * coverage, 100 * min_coverage)
            continue
        n_spikes = maps.spike_count.values.min(axis=0)
        kept = n_spikes >= min_spikes
        log.info("%s (animal %s): %d of %d units with >= %d spikes per half; coverage %.0f%%",
                 s["session"], s["subject"], int(kept.sum()), kept.size, min_spikes,
                 100 * coverage)
        if not kept.any():
            continue
        n = int(kept.sum())
        coords = {"neuroid_id": np.array([f"{s['session']}_{u}" for u in s["unit_label"][kept]]),
                  "animal": np.full(n, s["subject"]), "session": np.full(n, s["session"]),
                  "unit_label": s["unit_label"][kept],
                  "n_spikes": maps.spike_count.values.sum(axis=0)[kept]}
        coords.update({k: np.asarray(s[k])[kept].astype(str) for k in ("histology",) if k in s})
        coords.update({k: np.full(n, str(v))
                       for k, v in (labels or {}).get(str(s["path"]), {}).items()})
        populations.append((maps.rate.values[:, kept].transpose(2, 0, 1), coords))
    if not populations:
        raise ValueError(f"no session passes min_coverage {min_coverage} with a unit of "
                         f">= {min_spikes} spikes per half")
    names = list(dict.fromkeys(k for _, coords in populations for k in coords))
    assembly = xr.DataArray(
        np.concatenate([values for values, _ in populations], axis=2),
        dims=("stimulus", "trial", "neuroid"),
        coords={name: ("neuroid", np.concatenate([
            coords.get(name, np.full(values.shape[2], "")) for values, coords in populations]))
            for name in names})
    assembly = assembly.assign_coords(grid.coords())
    visited = np.isfinite(assembly.values).all(axis=(1, 2))
    log.info("%d of %d bins visited in every session and half; the others are dropped",
             int(visited.sum()), visited.size)
    assembly = assembly.isel(stimulus=visited)
    flat = assembly.std("stimulus").min("trial") > 0
    if not flat.all():
        log.info("dropping %d units with a flat map in one half", int((~flat).sum()))
        assembly = assembly.isel(neuroid=flat.values)
    assembly = assembly.assign_coords(
        area=("neuroid", np.full(assembly.sizes["neuroid"], "MEC")),
        trial=np.arange(assembly.sizes["trial"]))
    assembly = assembly.assign_coords(
        reliability=("neuroid", split_half_reliability(assembly, n_boot=1).values))
    assembly.attrs = {"units": "Hz", "arena_width_cm": arena[0], "arena_height_cm": arena[1],
                      "bin_size_cm": bin_size,
                      "speed_threshold_cm_s": speed_threshold, "min_occupancy_s": min_occupancy,
                      "sigma_bins": sigma, "half_block_s": half_block,
                      "trial": "split-halves of the session (alternating blocks of half_block s)"}
    log.info("MEC assembly: %d units from %d animals, %d bins", assembly.sizes["neuroid"],
             len(set(assembly.animal.values)), assembly.sizes["stimulus"])
    return validate_assembly(assembly.astype(np.float32), "rate_map_assembly")


# ---------------------------------------------------------------------------- download

def select_assets(assets, source: dict, *, dataset: str) -> list:
    """The NWB assets of one dandiset entry: glob, explicit sessions, size cap, count cap."""
    chosen = [a for a in assets if a.path.endswith(".nwb")
              and fnmatch(a.path, source.get("path_glob") or "*")]
    wanted = source.get("sessions")
    if wanted is not None:
        missing = sorted(set(wanted) - {a.path for a in chosen})
        if missing:
            raise DownloadError(f"{dataset}: sessions {missing} are not NWB assets of dandiset "
                                f"{source['dandiset']}/{source['version']}")
        chosen = [a for a in chosen if a.path in set(wanted)]
    cap = source.get("max_file_mb")
    if cap is not None:
        large = [a.path for a in chosen if a.size > cap * 2**20]
        if large:
            log.info("%s: %d assets of %s over %s MB left out (first: %s)", dataset, len(large),
                     source["dandiset"], cap, large[0])
        chosen = [a for a in chosen if a.size <= cap * 2**20]
    chosen = sorted(chosen, key=lambda a: a.path)[:source.get("max_sessions")]
    if not chosen:
        raise DownloadError(f"{dataset}: no NWB asset of dandiset {source['dandiset']}/"
                            f"{source['version']} matches {source.get('path_glob')!r}")
    return chosen


def download_mec_openfield(out_dir, *, api_url: str, dandisets: list[dict], retries: int,
                           backoff: float, timeout: float, dataset: str = "mec_openfield",
                           manifest_name: str = "manifest.json") -> Path:
    """Fetch the selected sessions of each dandiset into ``out_dir/{dandiset}/``, and a manifest.

    Parameters
    ----------
    out_dir : path-like
        The cache, ``data/raw/mec_openfield``; verified files already there are not
        downloaded again.
    api_url, dandisets, retries, backoff, timeout
        The config block ``datasets.mec_openfield.download``; each dandiset entry holds
        dandiset, version, path_glob, sessions, max_file_mb, max_sessions.
    dataset, manifest_name : str
        Name in log lines and errors; file name of the manifest (another name lets a partial
        download share the cache).

    Returns
    -------
    pathlib.Path
        The manifest: each session file with its dandiset, version, asset id and verification
        record.
    """
    out_dir = Path(out_dir)
    http = http_settings(retries=retries, backoff=backoff, timeout=timeout)
    files = []
    for source in dandisets:
        assets = list_assets(source["dandiset"], source["version"], api_url=api_url,
                             dataset=dataset, **http)
        chosen = select_assets(assets, source, dataset=dataset)
        remotes = [a.remote(f"{source['dandiset']}/{a.path}") for a in chosen]
        results = fetch_all(remotes, out_dir, dataset=dataset, **http)
        files += [{"path": r.path, "role": "session", "dandiset": source["dandiset"],
                   "version": source["version"], "asset_id": a.asset_id, "url": a.download_url,
                   "sha256": res.sha256, "size": res.size, "verified_by": res.verified_by}
                  for a, r, res in zip(chosen, remotes, results)]
    manifest = out_dir / manifest_name
    write_manifest(manifest, dataset, {"api_url": api_url, "dandisets": dandisets}, files)
    log.info("%s: %d sessions verified; manifest %s", dataset, len(files), manifest)
    return manifest


# ---------------------------------------------------------------------------- the pipeline's steps

def assemble_mec_openfield(manifest, **block) -> xr.DataArray:
    """`rate_map_assembly` over the session files a download manifest lists (re-verified first).

    `block` is the config block ``datasets.mec_openfield.assemble``: the rate-map and
    selection keyword arguments of `rate_map_assembly`.
    """
    _, files = read_manifest(manifest, role="session")
    if not files:
        raise ValueError(f"{manifest}: lists no session file")
    labels = {str(f["local"]): {"dandiset": f["dandiset"]} for f in files}
    return rate_map_assembly([f["local"] for f in files], labels=labels, **block)
