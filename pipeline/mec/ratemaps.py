"""Speed-filtered, occupancy-normalised spatial rate maps in square bins (spec §3.2).

A recording is a tracked position (samples at times t_k) plus spike times per unit. Sample k
stands for the interval [t_k, t_k+1): its duration is the occupancy it adds to the bin of its
position, and the spikes inside it are counted in that bin. A sample is used only when the
animal moves at least `speed_threshold` (running speed from the smoothed position derivative),
its position is finite and inside the arena, and its interval is not a tracking gap. The rate of
a bin is spikes / occupancy (Hz); bins with less than `min_occupancy` seconds are NaN
(unvisited), and the maps are then smoothed by a Gaussian of `sigma` bins that ignores NaN bins
(normalised convolution; spec §3.2: "Smooth with a Gaussian", σ stripped, 1 bin inferred).

Choices the spec leaves open, and ours:
- speed threshold 2 cm/s (Mallory et al. / Butler et al. use 2 cm/s); speed smoothed over 0.25 s;
- minimum occupancy 0.1 s per bin and map; intervals longer than 1 s are tracking gaps;
- the two "trials" of a 2D session (spec §3.4: one session, no repeated trials) are alternating
  blocks of `half_block` seconds (default 60 s: odd vs even minutes), so slow drift and
  coverage differences fall evenly on both halves; a block of half the session or more gives
  the first/second-half split.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter, uniform_filter1d

log = logging.getLogger(__name__)

SPEED_THRESHOLD = 2.0      # cm/s
SPEED_WINDOW = 0.25        # s
MAX_GAP = 1.0              # s
MIN_OCCUPANCY = 0.1        # s
SIGMA = 1.0                # bins
HALF_BLOCK = 60.0          # s


@dataclass(frozen=True)
class BinGrid:
    """Square bins over a rectangular arena, in cm.

    Parameters
    ----------
    width, height : float
        Arena size (cm); each must be a whole number of bins.
    bin_size : float
        Bin side (cm); the spec's 5 cm.
    origin : (float, float)
        Tracking coordinates (cm) of the arena's corner with the smallest x and y.
    """

    width: float
    height: float
    bin_size: float = 5.0
    origin: tuple = (0.0, 0.0)

    def __post_init__(self):
        for name, side in (("width", self.width), ("height", self.height)):
            n = side / self.bin_size
            if side <= 0 or abs(n - round(n)) > 1e-6:
                raise ValueError(f"BinGrid: arena {name} {side} cm is not a positive whole "
                                 f"number of {self.bin_size} cm bins")

    @property
    def shape(self) -> tuple[int, int]:
        """(n_y, n_x) bins."""
        return round(self.height / self.bin_size), round(self.width / self.bin_size)

    @property
    def n_bins(self) -> int:
        return self.shape[0] * self.shape[1]

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin centres (cm from the arena corner) along x and y."""
        n_y, n_x = self.shape
        return ((np.arange(n_x) + 0.5) * self.bin_size, (np.arange(n_y) + 0.5) * self.bin_size)

    def coords(self) -> dict:
        """Stimulus coords of the flattened grid (row-major: y slow, x fast); `grid_images`
        maps values on these ids back onto the grid."""
        cx, cy = self.centres()
        ix, iy = np.meshgrid(np.arange(cx.size), np.arange(cy.size))
        return {"stimulus_id": ("stimulus", np.array([f"x{i}_y{j}" for i, j in
                                                      zip(ix.ravel(), iy.ravel())])),
                "x": ("stimulus", cx[ix.ravel()]), "y": ("stimulus", cy[iy.ravel()])}

    def locate(self, xy: np.ndarray, tolerance: float | None = None) -> np.ndarray:
        """Flat bin index of each position (cm, tracking coordinates); -1 when outside.

        Positions within `tolerance` cm outside the arena (tracking jitter; one bin by
        default) are clipped into the edge bins; those further out, and NaN, get -1.
        """
        tolerance = self.bin_size if tolerance is None else tolerance
        rel = np.asarray(xy, dtype=np.float64) - np.asarray(self.origin)
        size = np.array([self.width, self.height])
        inside = np.all((rel >= -tolerance) & (rel <= size + tolerance), axis=1)
        n_y, n_x = self.shape
        with np.errstate(invalid="ignore"):
            ix = np.clip(np.floor(rel[:, 0] / self.bin_size), 0, n_x - 1)
            iy = np.clip(np.floor(rel[:, 1] / self.bin_size), 0, n_y - 1)
        flat = np.where(inside, iy * n_x + ix, -1)
        return np.nan_to_num(flat, nan=-1).astype(np.int64)


_BIN_ID = re.compile(r"^x(\d+)_y(\d+)$")


def grid_images(values, stimulus_id=None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(stimulus, unit) maps back onto the full bin grid as images (unit, n_y, n_x).

    Parameters
    ----------
    values : ndarray (stimulus, unit) or xarray.DataArray
        A DataArray with dims (stimulus, unit|neuroid) brings its own ``stimulus_id``.
    stimulus_id : sequence of str, optional
        ``x{i}_y{j}`` of each row.
    shape : (n_y, n_x), optional
        The grid; None: the largest i, j + 1 (give it when edge bins may be absent).

    Returns
    -------
    ndarray (unit, n_y, n_x)
        NaN at bins absent from `values` (the data assembly drops unvisited bins) or NaN there.
    """
    if isinstance(values, xr.DataArray):
        stimulus_id = values["stimulus_id"].values if stimulus_id is None else stimulus_id
        other = [d for d in values.dims if d != "stimulus"]
        values = values.transpose("stimulus", *other).values
    values = np.asarray(values, dtype=np.float64)
    ids = np.asarray(stimulus_id).astype(str)
    parsed = [_BIN_ID.match(s) for s in ids]
    if not all(parsed):
        bad = ids[[p is None for p in parsed].index(True)]
        raise ValueError(f"grid_images: stimulus_id {bad!r} is not a bin id x{{i}}_y{{j}}")
    ix = np.array([int(p[1]) for p in parsed])
    iy = np.array([int(p[2]) for p in parsed])
    n_y, n_x = shape if shape is not None else (iy.max() + 1, ix.max() + 1)
    out = np.full((values.shape[1], n_y, n_x), np.nan)
    out[:, iy, ix] = values.T
    return out


def running_speed(t: np.ndarray, xy: np.ndarray, window: float = SPEED_WINDOW) -> np.ndarray:
    """Speed (position units per s) of each sample: |d position / dt|, boxcar-smoothed.

    The derivative is central (`numpy.gradient` on the timestamps); the boxcar spans `window`
    seconds (at least one sample), so tracking jitter does not pass the speed filter.
    """
    t = np.asarray(t, dtype=np.float64)
    if t.size < 2:
        return np.zeros(t.size)
    velocity = np.gradient(np.asarray(xy, dtype=np.float64), t, axis=0)
    speed = np.hypot(velocity[:, 0], velocity[:, 1])
    n = max(1, int(round(window / np.median(np.diff(t)))))
    if n > 1:
        finite = np.isfinite(speed)
        total = uniform_filter1d(np.where(finite, speed, 0.0), n, mode="nearest")
        count = uniform_filter1d(finite.astype(np.float64), n, mode="nearest")
        with np.errstate(invalid="ignore", divide="ignore"):
            speed = np.where(finite, total / count, np.nan)
    return speed


def sample_durations(t: np.ndarray, max_gap: float = MAX_GAP) -> np.ndarray:
    """Seconds each sample stands for, t_k+1 - t_k (the last: the median step); 0 over gaps."""
    t = np.asarray(t, dtype=np.float64)
    if t.size < 2:
        raise ValueError(f"rate maps need at least 2 position samples; got {t.size}")
    steps = np.diff(t)
    if (steps <= 0).any():
        raise ValueError(f"position timestamps must increase; {int((steps <= 0).sum())} steps "
                         f"are <= 0")
    dt = np.append(steps, np.median(steps))
    return np.where(dt > max_gap, 0.0, dt)


def half_labels(t: np.ndarray, block: float | None = HALF_BLOCK) -> np.ndarray:
    """Split-half of each sample: alternating blocks of `block` seconds from the first sample.

    None gives one map (every sample in half 0).
    """
    t = np.asarray(t, dtype=np.float64)
    if block is None:
        return np.zeros(t.size, dtype=np.int64)
    if block <= 0:
        raise ValueError(f"half_block must be positive seconds; got {block}")
    return (np.floor((t - t[0]) / block).astype(np.int64) % 2)


def smooth_maps(rate: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over the last two axes (y, x) that ignores and keeps NaN bins.

    Normalised convolution: G*(r·m) / G*m with m the finite-bin mask, zero outside the arena.
    """
    if sigma <= 0:
        return rate
    mask = np.isfinite(rate)
    spread = (0,) * (rate.ndim - 2) + (sigma, sigma)
    num = gaussian_filter(np.where(mask, rate, 0.0), spread, mode="constant")
    den = gaussian_filter(mask.astype(np.float64), spread, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mask, num / den, np.nan)


def rate_maps(t, xy, spike_times, grid: BinGrid, *, speed_threshold=SPEED_THRESHOLD,
              speed_window=SPEED_WINDOW, max_gap=MAX_GAP, min_occupancy=MIN_OCCUPANCY,
              sigma=SIGMA, half_block=HALF_BLOCK) -> xr.Dataset:
    """Per-unit rate maps of one session, for each split-half (spec §3.2).

    Parameters
    ----------
    t : array (sample,)
        Position timestamps (s), increasing.
    xy : array (sample, 2)
        Positions (cm) in tracking coordinates; NaN where tracking was lost.
    spike_times : sequence of arrays
        Spike times (s) of each unit.
    grid : BinGrid
        The arena's bins.
    speed_threshold : float
        Samples slower than this (cm/s) are left out of occupancy and spike counts.
    speed_window : float
        Boxcar (s) over which the speed is smoothed.
    max_gap : float
        Position intervals longer than this (s) are tracking gaps and left out.
    min_occupancy : float
        Bins occupied for less than this (s) in a map are NaN.
    sigma : float
        Gaussian smoothing (bins); 0 for none.
    half_block : float or None
        Seconds per alternating split-half block; None for a single whole-session map.

    Returns
    -------
    xarray.Dataset
        ``rate`` (half, unit, stimulus) in Hz, NaN for unvisited bins; ``occupancy``
        (half, stimulus) in s; ``spike_count`` (half, unit), the spikes that entered the maps;
        stimulus coords stimulus_id, x, y (bin centres, cm from the arena corner).
    """
    t = np.asarray(t, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape != (t.size, 2):
        raise ValueError(f"positions must have shape (samples, 2) = ({t.size}, 2); "
                         f"got {xy.shape}")
    dt = sample_durations(t, max_gap)
    speed = running_speed(t, xy, speed_window)
    bins = grid.locate(xy)
    used = (dt > 0) & (bins >= 0) & (speed >= speed_threshold)
    half = half_labels(t, half_block)
    n_half, n_bins, n_unit = (1 if half_block is None else 2), grid.n_bins, len(spike_times)
    occupancy = np.bincount(half[used] * n_bins + bins[used], weights=dt[used],
                            minlength=n_half * n_bins).reshape(n_half, n_bins)
    # Spikes → the sample interval holding them → (half, unit, bin), in one bincount.
    unit = np.repeat(np.arange(n_unit), [len(s) for s in spike_times])
    spikes = (np.concatenate([np.asarray(s, dtype=np.float64) for s in spike_times])
              if n_unit else np.empty(0))
    sample = np.searchsorted(t, spikes, side="right") - 1
    inside = (sample >= 0) & (spikes < t[-1] + dt[-1])
    sample, unit = sample[inside], unit[inside]
    keep = used[sample]
    sample, unit = sample[keep], unit[keep]
    counts = np.bincount((half[sample] * n_unit + unit) * n_bins + bins[sample],
                         minlength=n_half * n_unit * n_bins).reshape(n_half, n_unit, n_bins)
    visited = occupancy >= max(min_occupancy, np.finfo(float).tiny)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(visited[:, None, :], counts / occupancy[:, None, :], np.nan)
    n_y, n_x = grid.shape
    rate = smooth_maps(rate.reshape(n_half, n_unit, n_y, n_x), sigma).reshape(rate.shape)
    log.debug("rate maps: %d of %d samples used (speed >= %g), %d units, %d bins",
              int(used.sum()), t.size, speed_threshold, n_unit, n_bins)
    return xr.Dataset(
        {"rate": (("half", "unit", "stimulus"), rate),
         "occupancy": (("half", "stimulus"), occupancy),
         "spike_count": (("half", "unit"), counts.sum(axis=2))},
        coords=grid.coords(),
        attrs={"bin_size_cm": grid.bin_size, "speed_threshold_cm_s": speed_threshold,
               "min_occupancy_s": min_occupancy, "sigma_bins": sigma,
               "half_block_s": -1.0 if half_block is None else half_block})
