"""The synthetic_mec dataset: virtual MEC animals recorded as DANDI 000582-style open-field NWB.

Each virtual animal explores a square arena along a simulated trajectory (the spec's rat motion
model, `pipeline.mec.trajectories.simulate_session`) or a recorded one (``trajectory_file``: an
``.npz`` with ``t`` in s and ``pos`` in m from the arena corner, e.g. the Sargolini et al. 2006
path RatInABox republishes; each animal replays it under one of the square's 8 symmetries). Its
cells fire inhomogeneous Poisson spikes at

    rate = baseline + peak · spatial(x) · hd(θ) · speed(v)

with spatial(x) a normalised mixture of a grid (three plane waves 60° apart; modules of
spacing ``spacing_cm`` · ``spacing_ratio``^m and a shared orientation, small per-cell jitter),
a border (exp(−distance to one wall / 5 cm)), random Gaussian bumps and a constant; hd(θ) a von
Mises bump exp(κ (cos(θ − θ_pref) − 1)); speed(v) = 1 + g · min(v, 50) / 50. Cell types set
the mixture: ``grid``, ``border`` and ``head_direction`` cells are pure; ``heterogeneous`` cells
mix bumps with weaker grid and border parts and a weak HD and speed gain. The grid modules are
shared by every animal (one population code, so the pooled animals predict each other).

Sessions are written in the DANDI 000582 layout the real loader reads
(`pipeline.data.mec_openfield.read_session`): positions of two LEDs in metres, centred on the
arena, 5 cm apart along the head direction (their mean is the position, their difference the
head direction, `read_head_direction`); a ``units`` table with ``unit_name`` and ``histology``;
the arena in the descriptions. Truth (`truth.zarr`): every cell's type and parameters, the
trajectories, and each cell's noise-free rate map along its animal's own trajectory.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr
from hdmf.common import VectorData, VectorIndex
from pynwb import NWBHDF5IO, NWBFile
from pynwb.behavior import Position, SpatialSeries
from pynwb.file import Subject
from pynwb.misc import Units
from tqdm import tqdm

from pipeline.data.mec_openfield import rate_map_assembly
from pipeline.io import atomic_path, read_zarr, write_zarr
from pipeline.mec.ratemaps import BinGrid
from pipeline.mec.scores import SpatialSampler, led_head_direction

log = logging.getLogger(__name__)

CELL_TYPES = ("grid", "border", "head_direction", "heterogeneous")
WALLS = ("west", "east", "south", "north")        # x = 0, x = w, y = 0, y = h
N_BUMPS = 3
BORDER_WIDTH = 5.0          # cm, decay of a border field away from its wall
LED_SEPARATION = 0.05       # m, between the two tracked LEDs
SPEED_CAP = 50.0            # cm/s, where the speed gain saturates


# ---------------------------------------------------------------- cells

def sample_cells(rng, n_cells: int, *, cell_types: dict, modules: list[dict],
                 arena_cm: float, peak_rate: tuple) -> dict[str, np.ndarray]:
    """Types and parameters of one animal's cells (arrays of length n_cells; bumps (cell, 3))."""
    names = list(cell_types)
    p = np.array([cell_types[k] for k in names], dtype=float)
    counts = np.floor(p / p.sum() * n_cells).astype(int)
    counts[np.argmax(p)] += n_cells - counts.sum()            # exact totals, largest absorbs
    kind = np.repeat(names, counts)
    n = n_cells
    module = rng.integers(len(modules), size=n)
    spacing = np.array([modules[m]["spacing_cm"] for m in module]) * rng.normal(1, 0.02, n)
    orientation = (np.array([modules[m]["orientation"] for m in module])
                   + np.radians(rng.normal(0, 1.5, n)))
    cells = {
        "cell_type": kind, "module": module, "spacing_cm": spacing, "orientation": orientation,
        "phase_x": rng.uniform(0, arena_cm, n), "phase_y": rng.uniform(0, arena_cm, n),
        "wall": rng.integers(4, size=n),
        "bump_x": rng.uniform(0, arena_cm, (n, N_BUMPS)),
        "bump_y": rng.uniform(0, arena_cm, (n, N_BUMPS)),
        "bump_width": rng.uniform(8, 25, (n, N_BUMPS)),
        "bump_height": rng.uniform(0.3, 1.0, (n, N_BUMPS)),
        "hd_preferred": rng.uniform(0, 2 * np.pi, n),
        "peak_rate": rng.uniform(*peak_rate, n), "baseline": rng.uniform(0.1, 0.5, n),
    }
    w = {k: np.zeros(n) for k in ("w_grid", "w_border", "w_bumps", "w_const")}
    hd_kappa, speed_gain = np.zeros(n), np.zeros(n)
    for i, k in enumerate(kind):
        if k == "grid":
            w["w_grid"][i] = 1.0
        elif k == "border":
            w["w_border"][i] = 1.0
        elif k == "head_direction":
            w["w_const"][i] = 1.0
            hd_kappa[i] = rng.uniform(2.0, 6.0)
        else:
            w["w_bumps"][i] = 1.0
            w["w_grid"][i] = rng.uniform(0, 0.6)
            w["w_border"][i] = rng.uniform(0, 0.6)
            hd_kappa[i] = rng.uniform(0, 1.0)
            speed_gain[i] = rng.uniform(0, 0.5)
    return {**cells, **w, "hd_kappa": hd_kappa, "speed_gain": speed_gain}


def _spatial(cells, xy: np.ndarray, arena_cm: float) -> np.ndarray:
    """Normalised spatial part in [0, 1]: (sample, cell)."""
    x, y = xy[:, 0:1], xy[:, 1:2]
    k = 4 * np.pi / (np.sqrt(3) * np.asarray(cells["spacing_cm"]))
    waves = 0.0
    for j in range(3):
        a = np.asarray(cells["orientation"]) + j * np.pi / 3
        waves = waves + np.cos(k * ((x - np.asarray(cells["phase_x"])) * np.cos(a)
                                    + (y - np.asarray(cells["phase_y"])) * np.sin(a)))
    grid = np.maximum(waves + 0.5, 0.0) / 3.5
    wall = np.asarray(cells["wall"])
    distance = np.choose(wall, [np.broadcast_to(d, (xy.shape[0], wall.size))
                                for d in (x, arena_cm - x, y, arena_cm - y)])
    border = np.exp(-distance / BORDER_WIDTH)
    bx, by = np.asarray(cells["bump_x"]), np.asarray(cells["bump_y"])
    width, height = np.asarray(cells["bump_width"]), np.asarray(cells["bump_height"])
    bumps = sum(height[:, j] * np.exp(-((x - bx[:, j]) ** 2 + (y - by[:, j]) ** 2)
                                      / (2 * width[:, j] ** 2)) for j in range(N_BUMPS))
    bumps = bumps / height.max(axis=1)
    w = [np.asarray(cells[k]) for k in ("w_grid", "w_border", "w_bumps", "w_const")]
    return (w[0] * grid + w[1] * border + w[2] * np.minimum(bumps, 1.0) + w[3]) / sum(w)


def cell_rates(cells, xy, hd=None, speed=None, *, arena_cm: float | None = None) -> np.ndarray:
    """Noise-free firing rates (Hz) of the generator's cells along a path.

    Parameters
    ----------
    cells : dict or xarray.Dataset
        Cell parameters (`sample_cells`, or the truth.zarr Dataset: dim neuroid).
    xy : array (sample, 2)
        Positions, cm from the arena corner.
    hd : array (sample,), optional
        Head direction (rad); None averages the HD tuning over directions (I0(κ) e^-κ).
    speed : array (sample,), optional
        Running speed (cm/s); None uses no speed gain.
    arena_cm : float, optional
        Arena side; read from the truth's attrs when `cells` is the truth Dataset.

    Returns
    -------
    array (sample, cell)
    """
    if isinstance(cells, xr.Dataset):
        arena_cm = float(cells.attrs["arena_cm"]) if arena_cm is None else arena_cm
        cells = {k: cells[k].values for k in cells.variables if "neuroid" in cells[k].dims}
    if arena_cm is None:
        raise ValueError("cell_rates: arena_cm is needed when cells is not the truth Dataset")
    xy = np.asarray(xy, dtype=np.float64)
    kappa = np.asarray(cells["hd_kappa"])
    if hd is None:
        from scipy.special import i0e
        tuning = np.broadcast_to(i0e(kappa), (xy.shape[0], kappa.size))
    else:
        tuning = np.exp(kappa * (np.cos(np.asarray(hd)[:, None] - cells["hd_preferred"]) - 1))
    gain = 1.0 if speed is None else 1 + np.asarray(cells["speed_gain"]) * (
        np.minimum(np.asarray(speed)[:, None], SPEED_CAP) / SPEED_CAP)
    return (np.asarray(cells["baseline"]) + np.asarray(cells["peak_rate"])
            * _spatial(cells, xy, arena_cm) * tuning * gain)


# ---------------------------------------------------------------- trajectories

def _symmetry(xy, hd, k: int, arena_cm: float):
    """Apply the k-th of the square's 8 symmetries to positions (cm) and headings."""
    x, y = xy[:, 0], xy[:, 1]
    c, s = np.cos(hd), np.sin(hd)
    if k & 4:
        x, y, c, s = y, x, s, c
    if k & 1:
        x, c = arena_cm - x, -c
    if k & 2:
        y, s = arena_cm - y, -s
    return np.stack([x, y], axis=1), np.arctan2(s, c)


def _trajectory(animal: int, *, seed, duration_s, dt, arena_cm, mean_speed_cm_s,
                trajectory_file):
    if trajectory_file is None:
        from pipeline.mec.trajectories import simulate_session   # torch: simulation only

        # Rayleigh(σ) has mean σ·sqrt(π/2).
        scale = mean_speed_cm_s / 100 / np.sqrt(np.pi / 2)
        path_seed = int(np.random.SeedSequence([seed, animal, 0x7A]).generate_state(1)[0])
        s = simulate_session(duration_s, width=arena_cm / 100, dt=dt, seed=path_seed,
                             speed_scale=scale)
        return s["t"], s["xy"], s["hd"]
    path = Path(trajectory_file)
    try:
        data = np.load(path)
        t, xy = np.asarray(data["t"], dtype=float), np.asarray(data["pos"], dtype=float) * 100
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path}: trajectory_file must be an .npz with 't' (s) and 'pos' "
                         f"(m from the arena corner); {err}") from err
    t = t - t[0]
    keep = t <= duration_s
    t, xy = t[keep], xy[keep]
    step = np.gradient(xy, axis=0)
    hd = np.arctan2(step[:, 1], step[:, 0])
    xy, hd = _symmetry(np.clip(xy, 0, arena_cm), hd, animal % 8, arena_cm)
    return t, xy, hd


def read_head_direction(path) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and head direction (rad) from the two LEDs of a 000582-layout session."""
    found = led_head_direction(path)
    if found is None:
        raise ValueError(f"{path}: no SpatialSeriesLED1 and SpatialSeriesLED2 under "
                         f"processing/behavior/Position; not a synthesize_mec session")
    return found


# ---------------------------------------------------------------- writing

def _write_session(path: Path, subject: str, session: str, arena_cm: float, t, xy, hd,
                   spikes: list[np.ndarray]) -> None:
    side = arena_cm / 100
    nwb = NWBFile(
        session_description=f"spike and position times from a rat running in a {side:g} x "
                            f"{side:g} meter enclosure. Position is given for two LEDs.",
        experiment_description=f"virtual MEC animal (pipeline synthetic_mec); arena size (cm): "
                               f"[{arena_cm:g}.]",
        identifier=str(uuid.uuid5(uuid.NAMESPACE_URL, f"synthetic_mec/{subject}/{session}")),
        session_start_time=datetime(2020, 1, 1, tzinfo=timezone.utc), session_id=session,
        subject=Subject(subject_id=subject, species="Rattus norvegicus"))
    behavior = nwb.create_processing_module("behavior", "Processed behavioral data.")
    centred = (xy - arena_cm / 2) / 100.0
    offset = LED_SEPARATION / 2 * np.stack([np.cos(hd), np.sin(hd)], axis=1)
    position = Position(name="Position")
    for name, led in (("SpatialSeriesLED1", centred + offset),
                      ("SpatialSeriesLED2", centred - offset)):
        position.add_spatial_series(SpatialSeries(
            name=name, description=f"{name} (x, y); LED1 in front of LED2", data=led,
            timestamps=t, unit="meters", reference_frame="box centre"))
    behavior.add(position)
    times = VectorData(name="spike_times", description="the spike times for each unit",
                       data=np.concatenate(spikes))
    index = VectorIndex(name="spike_times_index", target=times,
                        data=np.cumsum([s.size for s in spikes]).astype(np.int64))
    n = len(spikes)
    nwb.units = Units(name="units", description="virtual MEC cells",
                      id=np.arange(n, dtype=np.int64),
                      columns=[times, index,
                               VectorData(name="unit_name", description="cell label",
                                          data=np.array([f"c{k:03d}" for k in range(n)],
                                                        dtype=object)),
                               VectorData(name="histology", description="layer",
                                          data=np.array(["II"] * n, dtype=object))])
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_nwb(path, nwb)


def _write_nwb(path: Path, nwb: NWBFile) -> None:
    """Write an NWB file atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # The temporary name does not end in .nwb; the final one does.
            warnings.filterwarnings("ignore", message="The file path provided")
            with NWBHDF5IO(str(tmp), "w") as io:
                io.write(nwb)


def _poisson(rng, t, rates) -> list[np.ndarray]:
    """Spike times per cell; rates (sample, cell) Hz over [t_k, t_k+1)."""
    dt = np.append(np.diff(t), np.median(np.diff(t)))
    counts = rng.poisson(rates * dt[:, None])
    out = []
    for c in range(rates.shape[1]):
        n = counts[:, c]
        out.append(np.sort(np.repeat(t, n) + rng.uniform(0, 1, n.sum()) * np.repeat(dt, n)))
    return out


def synthesize_mec(out_dir, *, animals: int, cells_per_animal: int, cell_types: dict,
                   modules: int, spacing_cm: float, spacing_ratio: float, arena_cm: float,
                   duration_s: float, dt: float, mean_speed_cm_s: float, peak_rate_hz: list,
                   trajectory_file: str | None, seed: int) -> list[Path]:
    """Simulate virtual MEC animals; NWB sessions (000582 layout) + ``truth.zarr``.

    Parameters
    ----------
    out_dir : path-like
        Receives ``sub-{subject}/sub-{subject}_ses-{session}.nwb`` per animal and ``truth.zarr``.
    animals, cells_per_animal : int
        Virtual animals (one session each) and cells per animal.
    cell_types : dict
        Type → fraction of each animal's cells (grid, border, head_direction, heterogeneous).
    modules, spacing_cm, spacing_ratio : int, float, float
        Grid modules; the smallest spacing (cm) and the ratio between successive modules.
    arena_cm : float
        Side of the square arena (cm).
    duration_s, dt : float
        Session length and position sampling interval (s).
    mean_speed_cm_s : float
        Mean running speed of simulated trajectories (Rayleigh speeds).
    peak_rate_hz : [float, float]
        Range of the cells' peak rates (Hz).
    trajectory_file : str or None
        ``.npz`` of a recorded path (``t`` s, ``pos`` m from the corner), replayed instead of
        simulating (up to `duration_s`).
    seed : int
        Seed of the grid modules and of every animal.

    Returns
    -------
    list of pathlib.Path
        The NWB session files.
    """
    for key, value in {"animals": animals, "cells_per_animal": cells_per_animal,
                       "modules": modules}.items():
        if int(value) != value or value < 1:
            raise ValueError(f"synthesize_mec: {key} must be a positive integer; got {value!r}")
    unknown = sorted(set(cell_types) - set(CELL_TYPES))
    if unknown or not cell_types or min(cell_types.values()) < 0 or sum(cell_types.values()) <= 0:
        raise ValueError(f"synthesize_mec: cell_types must map some of {list(CELL_TYPES)} to "
                         f"non-negative fractions; got {cell_types!r}")
    if len(peak_rate_hz) != 2 or not 0 < peak_rate_hz[0] <= peak_rate_hz[1]:
        raise ValueError(f"synthesize_mec: peak_rate_hz must be [low, high] Hz with "
                         f"0 < low <= high; got {peak_rate_hz!r}")
    out_dir = Path(out_dir)
    module_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6D0D]))
    orientation = module_rng.uniform(0, np.pi / 3)
    module_list = [{"spacing_cm": spacing_cm * spacing_ratio ** m,
                    "orientation": orientation + np.radians(module_rng.normal(0, 3))}
                   for m in range(modules)]
    grid = BinGrid(arena_cm, arena_cm, 5.0)
    paths, truth = [], []
    for animal in tqdm(range(animals), desc="synthesize_mec", unit="animal", disable=None):
        rng = np.random.default_rng(np.random.SeedSequence([seed, animal, 0x3EC]))
        subject, session = f"mec{seed:02d}{animal:02d}", f"{animal + 1:02d}"
        path = out_dir / f"sub-{subject}" / f"sub-{subject}_ses-{session}.nwb"
        t, xy, hd = _trajectory(animal, seed=seed, duration_s=duration_s, dt=dt,
                                arena_cm=arena_cm, mean_speed_cm_s=mean_speed_cm_s,
                                trajectory_file=trajectory_file)
        speed = np.hypot(*np.gradient(xy, t, axis=0).T)
        cells = sample_cells(rng, cells_per_animal, cell_types=cell_types, modules=module_list,
                             arena_cm=arena_cm, peak_rate=tuple(peak_rate_hz))
        rates = cell_rates(cells, xy, hd, speed, arena_cm=arena_cm)
        _write_session(path, subject, session, arena_cm, t, xy, hd, _poisson(rng, t, rates))
        # Noise-free map: expected spikes per sample through the data's own binning (speed
        # filter, occupancy), unsmoothed.
        sampler = SpatialSampler(t, xy, grid, sigma=0)
        rate_map = sampler.maps(rates * sampler.dt[:, None]).reshape(cells_per_animal, -1)
        truth.append((path.stem, subject, cells, rate_map, (t, xy, hd)))
        log.info("wrote %s: %d cells (%s), %.0f s", path, cells_per_animal,
                 ", ".join(f"{k} {int((cells['cell_type'] == k).sum())}" for k in cell_types),
                 t[-1] - t[0])
        paths.append(path)
    _write_truth(out_dir / "truth.zarr", truth, grid, arena_cm, module_list)
    return paths


def _write_truth(path: Path, truth, grid: BinGrid, arena_cm: float, modules) -> None:
    """truth.zarr: per neuroid, its type, parameters and noise-free rate map; trajectories."""
    columns = {}
    for _, _, cells, _, _ in truth:
        for k, v in cells.items():
            columns.setdefault(k, []).append(np.asarray(v))
    n_sample = min(len(tr[0]) for *_, tr in truth)
    data = {k: (("neuroid", "bump") if np.ndim(v[0]) == 2 else ("neuroid",), np.concatenate(v))
            for k, v in columns.items()}
    data["cell_type"] = ("neuroid", np.concatenate(columns["cell_type"]).astype(str))
    data["rate_map"] = (("neuroid", "stimulus"), np.concatenate([m for *_, m, _ in truth]))
    for name, k in (("time", 0), ("head_direction", 2)):
        data[name] = (("animal_index", "sample"), np.stack([tr[k][:n_sample] for *_, tr in truth]))
    data["module_spacing_cm"] = ("module_index", np.array([m["spacing_cm"] for m in modules]))
    data["module_orientation"] = ("module_index",
                                  np.array([m["orientation"] for m in modules]))
    data["position"] = (("animal_index", "sample", "axis"),
                        np.stack([tr[1][:n_sample] for *_, tr in truth]))
    ds = xr.Dataset(data, coords={
        "neuroid_id": ("neuroid", np.array([f"{stem}_c{k:03d}" for stem, _, cells, _, _ in truth
                                            for k in range(len(cells["cell_type"]))])),
        "animal": ("neuroid", np.concatenate([[subject] * len(cells["cell_type"])
                                              for _, subject, cells, _, _ in truth])),
        "animal_id": ("animal_index", np.array([subject for _, subject, *_ in truth])),
        **grid.coords()})
    ds.attrs = {"arena_cm": arena_cm, "bin_size_cm": grid.bin_size,
                "description": "virtual MEC cells: types, parameters (pipeline.data.synthetic_mec"
                               ".cell_rates), noise-free rate maps along each animal's own "
                               "trajectory (Hz, unsmoothed, NaN where unvisited), trajectories"}
    write_zarr(ds, path)


def read_truth(raw_dir) -> xr.Dataset:
    """The truth.zarr of a synthesize_mec folder, loaded."""
    path = Path(raw_dir) / "truth.zarr"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no truth store; run rule synthesize_mec")
    return read_zarr(path).load()


def assemble_synthetic_mec(raw_dir, **block) -> xr.DataArray:
    """NeuralAssembly of the virtual animals' sessions, through the real MEC loader.

    Parameters
    ----------
    raw_dir : path-like
        ``data/raw/synthetic_mec``, written by `synthesize_mec`.
    **block
        The config block ``datasets.synthetic_mec.assemble``: keyword arguments of
        `pipeline.data.mec_openfield.rate_map_assembly`.
    """
    sessions = sorted(Path(raw_dir).glob("sub-*/sub-*_ses-*.nwb"))
    if not sessions:
        raise FileNotFoundError(f"{raw_dir}: no session files sub-*/sub-*_ses-*.nwb; run rule "
                                f"synthesize_mec")
    return rate_map_assembly(sessions, **block)
