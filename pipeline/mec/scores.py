"""Cell-type scores of MEC units: grid, border, head direction, speed; shuffle nulls (spec §3.6).

Every score is vectorised over units: maps come as one array (unit, n_y, n_x) in the BinGrid
order (y slow, x fast), Hz, with NaN for unvisited bins. NaN bins are left out of every sum,
never read as zero firing.

Grid score (Sargolini et al. 2006; Langston et al. 2010):
1. spatial autocorrelogram: for each lag, the Pearson correlation of the map with its shifted
   copy over the bins visited in both (lags with fewer than `min_overlap` such bins are NaN);
   the six sums it needs are FFT cross-correlations of the zero-filled map and its visited
   mask, so the NaN bins contribute nothing;
2. annulus around the central peak. Inner radius: the central peak's, the first 1-bin shell
   (lag radius, bins) whose mean autocorrelation falls below `peak_threshold` (0.1, the
   threshold opexebo/BNT use for the central field) or stops falling (its first local
   minimum). Outer radius: expanding annulus, every whole-bin radius from inner + 2 up to
   the largest lag, keeping the one with the highest score (Langston 2010 "expanding
   circle"; BNT takes a sliding mean of 3 radii, we take the plain maximum). The chosen radii
   are returned with the scores; `annulus=(inner, outer)` fixes them instead;
3. Pearson correlation, inside the annulus, of the autocorrelogram and its copies rotated by
   30°, 60°, 90°, 120°, 150° (`scipy.ndimage.rotate`, bilinear, about the central bin; a
   bin counts when both values are defined);
4. score = mean(r60, r120) − mean(r30, r90, r150), and the stricter min–max variant
   min(r60, r120) − max(r30, r90, r150) at the same annulus. Grid cell: score > 0.3 (L750).

Border score (Solstad et al. 2008): fields are contiguous (4-neighbour) visited bins firing at
≥ `field_threshold` (0.3) of the map's peak and covering ≥ `min_field_bins` bins (200 cm² = 8
bins of 5 cm). c_M: the largest fraction of one wall's visited bins covered by one field.
d_m: the mean distance to the nearest wall of the field bins, weighted by rate (normalised to
sum 1 over field bins), divided by half the shorter side. b = (c_M − d_m) / (c_M + d_m);
NaN for a map without any field (or a peak ≤ 0). Border cell: b > 0.5.

Head direction: occupancy-normalised tuning curve in `n_bins` direction bins; mean vector
length |Σ f_k e^{iθ_k}| / Σ f_k and preferred direction arg(Σ f_k e^{iθ_k}).
Speed score (Kropff et al. 2015): Pearson correlation over time of running speed and the
Gaussian-smoothed (0.25 s) instantaneous rate, over samples with speed inside `speed_range`.

Shuffle nulls: each unit's spike train is shifted circularly along the session by a random
whole number of samples, at least `min_shift` s from either end (Langston 2010: ≥ 20 s), which
keeps its firing statistics and breaks its relation to behaviour; the per-unit threshold is
the `quantile` (0.95) of the shuffled scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import scipy.sparse
from scipy import fft as sfft
from scipy import ndimage
from tqdm import tqdm

from pipeline.mec.ratemaps import (BinGrid, MAX_GAP, MIN_OCCUPANCY, SIGMA, SPEED_THRESHOLD,
                                   SPEED_WINDOW, grid_images, running_speed, sample_durations,
                                   smooth_maps)

log = logging.getLogger(__name__)

ANGLES = (30, 60, 90, 120, 150)        # degrees; 60 and 120 are the grid's own symmetry
ON, OFF = [1, 3], [0, 2, 4]            # indices of 60°, 120° and of 30°, 90°, 150°
MIN_OVERLAP = 20                       # bins a lag needs in both copies
PEAK_THRESHOLD = 0.1                   # autocorrelation below which the central peak ends
FIELD_THRESHOLD = 0.3                  # border fields: fraction of the peak rate
MIN_FIELD_BINS = 8                     # border fields: 200 cm² at 5-cm bins
CHUNK = 256                            # units per block in the annulus sums (memory bound)

__all__ = ["GridScore", "HDScore", "autocorrelogram", "grid_score", "border_score",
           "head_direction_score", "speed_score", "cell_scores", "assembly_scores", "spike_counts",
           "SpatialSampler", "shuffle_scores", "led_head_direction", "session_scores"]


def _as_maps(maps) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"rate maps must have shape (unit, n_y, n_x); got {maps.shape}")
    return maps


# ---------------------------------------------------------------- grid score

def autocorrelogram(maps, *, min_overlap: int = MIN_OVERLAP) -> np.ndarray:
    """NaN-aware spatial autocorrelograms (Sargolini 2006), one per unit.

    Parameters
    ----------
    maps : array (unit, n_y, n_x)
        Rate maps; NaN bins (unvisited) are left out of every lag's correlation.
    min_overlap : int
        Lags with fewer bins visited in both copies are NaN.

    Returns
    -------
    array (unit, 2 n_y - 1, 2 n_x - 1)
        Pearson r per lag; the central bin (n_y - 1, n_x - 1) is lag 0 (r = 1).
    """
    maps = _as_maps(maps)
    n_u, n_y, n_x = maps.shape
    mask = np.isfinite(maps)
    # Pearson r per lag is unchanged by a per-map affine rescaling: standardise first so the
    # FFT sums below lose no precision to a large mean rate.
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(np.where(mask, maps, np.nan), axis=(1, 2), keepdims=True)
        std = np.nanstd(np.where(mask, maps, np.nan), axis=(1, 2), keepdims=True)
    x = np.where(mask, (maps - np.nan_to_num(mean)) / np.where(std > 0, std, 1.0), 0.0)
    m = mask.astype(np.float64)
    shape = (sfft.next_fast_len(2 * n_y - 1, real=True), sfft.next_fast_len(2 * n_x - 1, real=True))

    def spectrum(a):
        return sfft.rfft2(a, s=shape, axes=(1, 2))

    def correlate(fa, fb):
        # Σ_p a(p) b(p + lag) for every lag, re-centred so lag 0 sits at (n_y - 1, n_x - 1).
        c = sfft.irfft2(np.conj(fa) * fb, s=shape, axes=(1, 2))
        c = np.roll(c, (n_y - 1, n_x - 1), axis=(1, 2))
        return c[:, :2 * n_y - 1, :2 * n_x - 1]

    fm, fx, fxx = spectrum(m), spectrum(x), spectrum(x * x)
    n = np.rint(correlate(fm, fm))
    s1, s2 = correlate(fx, fm), correlate(fm, fx)          # Σ x(p), Σ x(p + lag) over overlap
    q1, q2 = correlate(fxx, fm), correlate(fm, fxx)
    sxy = correlate(fx, fx)
    with np.errstate(invalid="ignore", divide="ignore"):
        num = n * sxy - s1 * s2
        den = np.sqrt((n * q1 - s1 ** 2) * (n * q2 - s2 ** 2))
        r = num / den
    ok = (n >= min_overlap) & (den > 1e-9 * np.maximum(n, 1) ** 2)
    return np.where(ok, np.clip(r, -1.0, 1.0), np.nan)


@lru_cache(maxsize=8)
def _rotation_operators(shape: tuple[int, int]) -> tuple:
    """Sparse (bin, bin) operators that rotate an image of `shape` by each of ANGLES.

    Bilinear rotation about the central bin is linear in the image, so its operator is
    `scipy.ndimage.rotate` (order 1, same shape, zeros outside) applied to every basis image
    once; rotating a block of maps is then one sparse product, identical to rotating each map
    with `ndimage.rotate`.
    """
    n = shape[0] * shape[1]
    basis = np.eye(n).reshape(n, *shape)
    out = []
    for angle in ANGLES:
        image = ndimage.rotate(basis, angle, axes=(2, 1), reshape=False, order=1,
                               mode="constant", cval=0.0)
        out.append(scipy.sparse.csr_matrix(image.reshape(n, n).T))   # (out bin, in bin)
    return tuple(out)


def _rotations(ac: np.ndarray) -> np.ndarray:
    """ac rotated by each of ANGLES about its central bin; NaN where any input bin was NaN.

    (unit, angle, y, x). Bilinear (`scipy.ndimage.rotate`, order 1, same shape); the finite
    mask is rotated alongside, so a value is kept only where every bin it interpolates was
    defined.
    """
    n_u = ac.shape[0]
    mask = np.isfinite(ac).reshape(n_u, -1)
    filled = np.where(mask, ac.reshape(n_u, -1), 0.0)
    out = np.empty((n_u, len(ANGLES), mask.shape[1]))
    for k, operator in enumerate(_rotation_operators(ac.shape[1:])):
        values = (operator @ filled.T).T
        weight = (operator @ mask.T.astype(np.float64)).T
        out[:, k] = np.where(weight > 1 - 1e-9, values, np.nan)
    return out.reshape((n_u, len(ANGLES)) + ac.shape[1:])


def _radius(shape) -> np.ndarray:
    """Distance (bins) of each autocorrelogram bin from the central one."""
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.hypot(yy - cy, xx - cx)


def _central_peak(ac: np.ndarray, shell: np.ndarray, n_shell: int,
                  threshold: float) -> np.ndarray:
    """Inner annulus radius (whole bins) per unit: where the radial profile ends its peak."""
    finite = np.isfinite(ac).reshape(ac.shape[0], -1)
    values = np.where(finite, ac.reshape(ac.shape[0], -1), 0.0)
    onehot = scipy.sparse.csr_matrix((np.ones(shell.size), (np.arange(shell.size), shell)),
                                     shape=(shell.size, n_shell))
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = (onehot.T @ values.T).T / (onehot.T @ finite.T.astype(float)).T
    below = profile < threshold
    rising = np.zeros_like(below)
    rising[:, :-1] = profile[:, :-1] <= profile[:, 1:]
    end = (below | rising) & (np.arange(n_shell) >= 1)
    end[:, -1] = True
    return np.argmax(end, axis=1).astype(np.float64)


@dataclass(frozen=True)
class GridScore:
    """Grid scores of a set of maps; every array is (unit,) unless named.

    Attributes
    ----------
    score : mean(r60, r120) − mean(r30, r90, r150)
    score_minmax : min(r60, r120) − max(r30, r90, r150), at the same annulus
    correlations : (unit, 5) Pearson r at 30°, 60°, 90°, 120°, 150°
    inner, outer : annulus radii (bins of the rate map); bins with inner ≤ radius < outer
    """

    score: np.ndarray
    score_minmax: np.ndarray
    correlations: np.ndarray
    inner: np.ndarray
    outer: np.ndarray


def _pearson(n, sx, sy, sxx, syy, sxy, min_bins=6):
    """Pearson r from sums; NaN with fewer than `min_bins` pairs or a constant side."""
    den = (n * sxx - sx ** 2) * (n * syy - sy ** 2)
    ok = (n >= min_bins) & (den > 1e-12 * np.maximum(n, 1) ** 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, (n * sxy - sx * sy) / np.sqrt(np.where(ok, den, 1.0)), np.nan)


def _annulus_sums(ac, rotated, onehot):
    """Per unit, angle and radius shell: n, Σx, Σy, Σx², Σy², Σxy over bins valid in both.

    `onehot` (bin, shell) assigns autocorrelogram bins to shells; the sums are one matrix
    product and are returned cumulative over shells, with a leading zero:
    (6, unit, angle, shell + 1).
    """
    x = ac.reshape(ac.shape[0], 1, -1)
    y = rotated.reshape(rotated.shape[0], rotated.shape[1], -1)
    parts = np.empty((6,) + y.shape)
    np.logical_and(np.isfinite(x), np.isfinite(y), out=parts[0], casting="unsafe")
    np.multiply(np.nan_to_num(x), parts[0], out=parts[1])
    np.multiply(np.nan_to_num(y), parts[0], out=parts[2])
    np.multiply(parts[1], parts[1], out=parts[3])
    np.multiply(parts[2], parts[2], out=parts[4])
    np.multiply(parts[1], parts[2], out=parts[5])
    sums = parts @ onehot
    return np.concatenate([np.zeros(sums.shape[:-1] + (1,)), np.cumsum(sums, axis=-1)], axis=-1)


def grid_score(maps, *, annulus=None, min_overlap: int = MIN_OVERLAP,
               peak_threshold: float = PEAK_THRESHOLD) -> GridScore:
    """Grid scores of rate maps (module docstring: Sargolini 2006 / Langston 2010).

    Parameters
    ----------
    maps : array (unit, n_y, n_x)
        Rate maps, NaN where unvisited.
    annulus : (float, float), optional
        Fixed (inner, outer) radii in bins, bins with inner ≤ radius < outer; None chooses
        them per unit (central peak, expanding annulus).
    min_overlap : int
        Autocorrelogram lags need this many bins visited in both copies.
    peak_threshold : float
        Autocorrelation below which the central peak ends.

    Returns
    -------
    GridScore
    """
    maps = _as_maps(maps)
    n_u = maps.shape[0]
    out = {k: np.full(n_u, np.nan) for k in ("score", "score_minmax", "inner", "outer")}
    corr = np.full((n_u, len(ANGLES)), np.nan)
    if n_u == 0:
        return GridScore(correlations=corr, **out)
    shape = (2 * maps.shape[1] - 1, 2 * maps.shape[2] - 1)
    radius = _radius(shape).ravel()
    r_max = min(maps.shape[1], maps.shape[2]) - 1
    if annulus is not None:
        inner, outer = (float(v) for v in annulus)
        if not 0 <= inner < outer:
            raise ValueError(f"grid_score: annulus must be (inner, outer) bins with "
                             f"0 <= inner < outer; got {annulus!r}")
        # Three "shells": below inner, the annulus, beyond outer.
        shell = np.where(radius < inner, 0, np.where(radius < outer, 1, 2))
    else:
        shell = np.floor(radius).astype(np.int64)
    n_shell = int(shell.max()) + 1
    onehot = np.zeros((shell.size, n_shell))
    onehot[np.arange(shell.size), shell] = 1.0
    for lo in range(0, n_u, CHUNK):
        hi = min(n_u, lo + CHUNK)
        ac = autocorrelogram(maps[lo:hi], min_overlap=min_overlap)
        rotated = _rotations(ac)
        cum = _annulus_sums(ac, rotated, onehot)          # (6, u, 5, n_shell + 1)
        if annulus is not None:
            r = _pearson(*(cum[..., 2] - cum[..., 1]))                  # shell 1: (u, 5)
            out["inner"][lo:hi], out["outer"][lo:hi] = inner, outer
        else:
            inner_u = _central_peak(ac, shell, n_shell, peak_threshold).astype(np.int64)
            at_inner = np.take_along_axis(cum, inner_u[None, :, None, None], -1)
            r_all = _pearson(*(cum[..., :r_max + 1] - at_inner))        # (u, 5, outer)
            score_all = r_all[:, ON].mean(1) - r_all[:, OFF].mean(1)
            candidates = np.arange(r_max + 1)[None, :] >= inner_u[:, None] + 2
            score_all = np.where(candidates, score_all, np.nan)
            has = np.isfinite(score_all).any(axis=1)
            best = np.argmax(np.where(np.isfinite(score_all), score_all, -np.inf), axis=1)
            r = np.take_along_axis(r_all, best[:, None, None], -1)[..., 0]
            r[~has] = np.nan
            out["inner"][lo:hi] = np.where(has, inner_u, np.nan)
            out["outer"][lo:hi] = np.where(has, best, np.nan)
        corr[lo:hi] = r
    out["score"] = corr[:, ON].mean(1) - corr[:, OFF].mean(1)
    out["score_minmax"] = corr[:, ON].min(1) - corr[:, OFF].max(1)
    return GridScore(correlations=corr, **out)


# ---------------------------------------------------------------- border score

def border_score(maps, *, field_threshold: float = FIELD_THRESHOLD,
                 min_field_bins: int = MIN_FIELD_BINS) -> np.ndarray:
    """Solstad et al. (2008) border scores b = (c_M − d_m)/(c_M + d_m), one per map.

    Parameters
    ----------
    maps : array (unit, n_y, n_x)
        Rate maps of a rectangular arena whose edges are the walls; NaN where unvisited.
    field_threshold : float
        Field bins fire at >= this fraction of the map's peak.
    min_field_bins : int
        Smaller contiguous fields are ignored.

    Returns
    -------
    array (unit,)
        In [-1, 1]; NaN for a map without a field.
    """
    maps = _as_maps(maps)
    n_u, n_y, n_x = maps.shape
    finite = np.isfinite(maps)
    filled = np.where(finite, maps, -np.inf)
    peak = filled.reshape(n_u, -1).max(axis=1) if n_u else np.empty(0)
    live = peak > 0
    hot = finite & (maps >= field_threshold * peak[:, None, None]) & live[:, None, None]
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)          # fields stay in one map
    labels, n_labels = ndimage.label(hot, structure=structure)
    size = np.bincount(labels.ravel(), minlength=n_labels + 1)
    keep = size >= min_field_bins
    keep[0] = False
    labels = np.where(keep[labels], labels, 0)
    owner = np.zeros(n_labels + 1, dtype=np.int64)
    owner[labels.ravel()] = np.repeat(np.arange(n_u), n_y * n_x)
    # c_M: the largest coverage of one wall's visited bins by one field.
    c_m = np.zeros(n_u)
    walls = [(np.s_[:, 0, :]), (np.s_[:, -1, :]), (np.s_[:, :, 0]), (np.s_[:, :, -1])]
    for wall in walls:
        on_wall = np.bincount(labels[wall].ravel(), minlength=n_labels + 1).astype(float)
        visited = finite[wall].sum(axis=1).astype(float)             # (unit,)
        with np.errstate(invalid="ignore", divide="ignore"):
            coverage = on_wall / visited[owner]
        coverage[0] = 0.0
        np.maximum.at(c_m, owner[1:], np.nan_to_num(coverage[1:]))
    # d_m: rate-weighted mean distance of field bins to the nearest wall, / half the short side.
    iy = np.arange(n_y)[:, None] + 0.5
    ix = np.arange(n_x)[None, :] + 0.5
    distance = np.minimum(np.minimum(iy, n_y - iy), np.minimum(ix, n_x - ix))   # bins
    in_field = labels > 0
    weight = np.where(in_field, np.where(finite, maps, 0.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_m = (weight * distance).sum(axis=(1, 2)) / weight.sum(axis=(1, 2))
        d_m = d_m / (min(n_y, n_x) / 2)
        b = (c_m - d_m) / (c_m + d_m)
    return np.where(in_field.any(axis=(1, 2)), b, np.nan)


# ---------------------------------------------------------------- head direction, speed

@dataclass(frozen=True)
class HDScore:
    """Head-direction tuning of a set of units.

    Attributes
    ----------
    mvl : (unit,) mean vector length of the tuning curve, in [0, 1]
    preferred : (unit,) preferred direction (rad, in [0, 2π))
    tuning : (unit, bin) occupancy-normalised rate (Hz), or spike counts when not
        normalised; NaN for unvisited directions
    centres : (bin,) direction bin centres (rad)
    """

    mvl: np.ndarray
    preferred: np.ndarray
    tuning: np.ndarray
    centres: np.ndarray


def _column_sums(index: np.ndarray, n: int, values: np.ndarray) -> np.ndarray:
    """Σ of rows of `values` (sample, k) per index (sample,) in [0, n); -1 left out: (n, k)."""
    keep = index >= 0
    onehot = scipy.sparse.csr_matrix((np.ones(int(keep.sum())), (index[keep],
                                      np.flatnonzero(keep))), shape=(n, index.size))
    return np.asarray(onehot @ values)


def head_direction_score(hd, counts, dt, *, n_bins: int = 60,
                         occupancy_normalised: bool = True) -> HDScore:
    """Mean vector length and preferred direction of head-direction tuning curves.

    The tuning curve is occupancy-normalised (spikes / time per direction bin, the usual
    definition); ``occupancy_normalised=False`` weighs each direction bin by its spike count
    instead, i.e. the circular mean of the head direction at the spikes (how the Peyrache et
    al. 2015 file's ``prefHD`` was computed: it matches that, not the normalised curve).

    Parameters
    ----------
    hd : array (sample,)
        Head direction (rad); NaN samples are left out.
    counts : array (sample, unit)
        Spikes of each unit in each sample.
    dt : float or array (sample,)
        Seconds each sample stands for (0 leaves it out).
    n_bins : int
        Direction bins over [0, 2π).
    occupancy_normalised : bool
        Divide spikes by the time spent in each direction bin (True) or not.
    """
    hd = np.asarray(hd, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64).reshape(hd.size, -1)
    dt = np.broadcast_to(np.asarray(dt, dtype=np.float64), hd.shape)
    width = 2 * np.pi / n_bins
    index = np.floor(np.mod(hd, 2 * np.pi) / width)
    index = np.where(np.isfinite(index) & (dt > 0), np.clip(index, 0, n_bins - 1), -1)
    index = index.astype(np.int64)
    occupancy = _column_sums(index, n_bins, dt[:, None])[:, 0]
    spikes = _column_sums(index, n_bins, counts)                     # (bin, unit)
    divisor = occupancy if occupancy_normalised else np.ones(n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        tuning = np.where(occupancy[:, None] > 0, spikes / divisor[:, None], np.nan).T
    centres = (np.arange(n_bins) + 0.5) * width
    f = np.nan_to_num(tuning)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (f * np.exp(1j * centres)).sum(axis=1) / f.sum(axis=1)
    return HDScore(mvl=np.abs(z), preferred=np.mod(np.angle(z), 2 * np.pi), tuning=tuning,
                   centres=centres)


def _speed_rate(counts, step, sigma_s):
    """Instantaneous rate (Hz): counts / step, Gaussian-smoothed over time, circularly."""
    return ndimage.gaussian_filter1d(counts / step, sigma_s / step, axis=0, mode="wrap")


def _speed_correlation(speed, rate, speed_range):
    """Pearson r of speed and each rate column over samples with speed in `speed_range`."""
    keep = np.isfinite(speed) & (speed >= speed_range[0]) & (speed <= speed_range[1])
    s = speed[keep] - speed[keep].mean()
    r = rate[keep]
    mean = r.mean(axis=0)
    # Σ s·(r - mean) = Σ s·r since Σ s = 0; Σ (r - mean)² = Σ r² - n·mean².
    var = np.einsum("ij,ij->j", r, r) - keep.sum() * mean ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return (s @ r) / np.sqrt((s @ s) * var)


def speed_score(speed, counts, dt, *, sigma_s: float = 0.25,
                speed_range=(2.0, 50.0)) -> np.ndarray:
    """Kropff et al. (2015) speed score: r(speed, smoothed rate) over time, per unit.

    The smoothing wraps around the session's ends, so it commutes with the circular shifts
    of the shuffle null (`shuffle_scores` smooths once and shifts the smoothed rate).

    Parameters
    ----------
    speed : array (sample,)
        Running speed (cm/s).
    counts : array (sample, unit)
        Spikes per sample.
    dt : float
        Seconds per sample (the median step is used when an array is given).
    sigma_s : float
        Gaussian smoothing of the rate (s).
    speed_range : (float, float)
        Only samples with speed in this range (cm/s) enter the correlation.
    """
    speed = np.asarray(speed, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64).reshape(speed.size, -1)
    step = float(np.median(dt)) if np.ndim(dt) else float(dt)
    return _speed_correlation(speed, _speed_rate(counts, step, sigma_s), speed_range)


# ---------------------------------------------------------------- tables

def cell_scores(maps, *, unit_id=None, **grid_kwargs) -> pd.DataFrame:
    """Grid (both variants, with the annulus) and border scores of maps, one row per unit.

    Parameters
    ----------
    maps : array (unit, n_y, n_x)
        Rate maps, NaN where unvisited.
    unit_id : sequence, optional
        Row labels (default 0..unit-1).
    **grid_kwargs
        Passed to `grid_score` (annulus, min_overlap, peak_threshold).

    Returns
    -------
    pandas.DataFrame
        Columns unit_id, grid_score, grid_score_minmax, grid_inner, grid_outer (bins),
        border_score.
    """
    maps = _as_maps(maps)
    grid = grid_score(maps, **grid_kwargs)
    return pd.DataFrame({
        "unit_id": np.arange(maps.shape[0]) if unit_id is None else np.asarray(unit_id),
        "grid_score": grid.score, "grid_score_minmax": grid.score_minmax,
        "grid_inner": grid.inner, "grid_outer": grid.outer,
        "border_score": border_score(maps)})


def assembly_scores(assembly, **grid_kwargs) -> pd.DataFrame:
    """`cell_scores` of a rate-map NeuralAssembly's units (maps: the mean over its trials).

    Bins the assembly dropped (unvisited in some session) are NaN in the maps, so they are
    excluded from the scores. The grid comes from the attrs ``arena_width_cm``,
    ``arena_height_cm`` and ``bin_size_cm`` the MEC loader writes.

    Returns
    -------
    pandas.DataFrame
        `cell_scores` columns (unit_id = neuroid_id), plus neuroid_id and animal.
    """
    missing = [k for k in ("arena_width_cm", "arena_height_cm", "bin_size_cm")
               if k not in assembly.attrs]
    if missing:
        raise ValueError(f"assembly_scores: the assembly lacks attrs {missing}; expected a "
                         f"rate-map assembly of pipeline.data.mec_openfield")
    bin_size = float(assembly.attrs["bin_size_cm"])
    shape = (round(float(assembly.attrs["arena_height_cm"]) / bin_size),
             round(float(assembly.attrs["arena_width_cm"]) / bin_size))
    mean = assembly.mean("trial").transpose("stimulus", "neuroid")
    maps = grid_images(mean.values, mean["stimulus_id"].values, shape)
    table = cell_scores(maps, unit_id=mean["neuroid_id"].values.astype(str), **grid_kwargs)
    table.insert(1, "neuroid_id", table["unit_id"])
    table.insert(2, "animal", mean["animal"].values.astype(str))
    return table


# ---------------------------------------------------------------- sessions and shuffles

def spike_counts(t, spike_times) -> np.ndarray:
    """Spikes of each unit in each position sample's interval [t_k, t_k+1): (sample, unit).

    The last sample stands for one median step; spikes outside the session are dropped.
    """
    t = np.asarray(t, dtype=np.float64)
    end = t[-1] + np.median(np.diff(t))
    out = np.zeros((t.size, len(spike_times)))
    for u, spikes in enumerate(spike_times):
        spikes = np.asarray(spikes, dtype=np.float64)
        k = np.searchsorted(t, spikes[(spikes >= t[0]) & (spikes < end)], side="right") - 1
        out[:, u] = np.bincount(k, minlength=t.size)
    return out


class SpatialSampler:
    """Rate maps from per-sample spike counts, with the choices of `ratemaps.rate_maps`.

    The speed filter, occupancy and smoothing are computed once, so maps of many (shuffled)
    count arrays cost one sparse product each. `maps(counts)` equals
    ``rate_maps(..., half_block=None).rate`` for the same session (tested).
    """

    def __init__(self, t, xy, grid: BinGrid, *, speed_threshold=SPEED_THRESHOLD,
                 speed_window=SPEED_WINDOW, max_gap=MAX_GAP, min_occupancy=MIN_OCCUPANCY,
                 sigma=SIGMA):
        t = np.asarray(t, dtype=np.float64)
        xy = np.asarray(xy, dtype=np.float64)
        self.grid, self.sigma = grid, sigma
        self.dt = sample_durations(t, max_gap)
        self.speed = running_speed(t, xy, speed_window)
        bins = grid.locate(xy)
        self.used = (self.dt > 0) & (bins >= 0) & (self.speed >= speed_threshold)
        self.bins = np.where(self.used, bins, -1)
        self.occupancy = np.bincount(self.bins[self.used], weights=self.dt[self.used],
                                     minlength=grid.n_bins)
        self.visited = self.occupancy >= max(min_occupancy, np.finfo(float).tiny)

    def maps(self, counts) -> np.ndarray:
        """(unit, n_y, n_x) Hz, NaN where unvisited, smoothed by `sigma` bins."""
        counts = np.asarray(counts, dtype=np.float64)
        per_bin = _column_sums(self.bins, self.grid.n_bins, counts)    # (bin, unit)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(self.visited[:, None], per_bin / self.occupancy[:, None], np.nan).T
        return smooth_maps(rate.reshape((-1,) + self.grid.shape), self.sigma)


def _scores(sampler, counts, rate, hd, n_hd_bins, grid_kwargs) -> dict:
    """Every score of per-sample counts (sample, unit) and their smoothed rate."""
    maps = sampler.maps(counts)
    out = {"grid": grid_score(maps, **grid_kwargs).score, "border": border_score(maps)}
    if hd is not None:
        out["hd"] = head_direction_score(hd, counts, np.where(sampler.used, sampler.dt, 0.0),
                                         n_bins=n_hd_bins).mvl
    out["speed"] = _speed_correlation(sampler.speed, rate, (2.0, 50.0))
    return out


def shuffle_scores(t, xy, hd, spike_times, grid: BinGrid, *, n_shuffles: int = 100,
                   min_shift: float = 20.0, quantile: float = 0.95, random_state=0,
                   n_hd_bins: int = 60, grid_kwargs: dict | None = None,
                   return_null: bool = False, **ratemap_kwargs):
    """Cell-type scores of one session's units with per-unit shuffle thresholds.

    Parameters
    ----------
    t, xy : arrays (sample,), (sample, 2)
        Position timestamps (s) and positions (cm, tracking coordinates of `grid`).
    hd : array (sample,) or None
        Head direction (rad); None skips the HD score.
    spike_times : sequence of arrays
        Spike times (s) per unit.
    grid : BinGrid
        The arena's bins.
    n_shuffles : int
        Circular shifts per unit.
    min_shift : float
        Shifts are at least this many seconds from 0 and from the session length.
    quantile : float
        Quantile of the null that a unit's score must exceed to be significant.
    random_state : int
        Seed of the shifts.
    n_hd_bins : int
        Direction bins of the HD tuning curve.
    grid_kwargs : dict, optional
        Passed to `grid_score`.
    return_null : bool
        Also return the null scores, {score: (shuffle, unit)}.
    **ratemap_kwargs
        speed_threshold, speed_window, max_gap, min_occupancy, sigma (`SpatialSampler`).

    Returns
    -------
    pandas.DataFrame (and dict when `return_null`)
        One row per unit: ``{s}_score``, ``{s}_threshold``, ``{s}_significant`` for s in grid,
        border, hd (mean vector length; with `hd`), speed; plus hd_preferred (rad).
    """
    if not 0 < quantile < 1:
        raise ValueError(f"shuffle_scores: quantile must be in (0, 1); got {quantile}")
    grid_kwargs = grid_kwargs or {}
    t = np.asarray(t, dtype=np.float64)
    sampler = SpatialSampler(t, xy, grid, **ratemap_kwargs)
    counts = spike_counts(t, spike_times)
    n_t, n_u = counts.shape
    step = float(np.median(np.diff(t)))
    low, high = int(np.ceil(min_shift / step)), n_t - int(np.ceil(min_shift / step))
    if high <= low:
        raise ValueError(f"shuffle_scores: a session of {n_t * step:.0f} s is too short for "
                         f"circular shifts of at least {min_shift} s from either end")
    rate = _speed_rate(counts, step, 0.25)
    observed = _scores(sampler, counts, rate, hd, n_hd_bins, grid_kwargs)
    rng = np.random.default_rng(random_state)
    shifts = rng.integers(low, high + 1, size=(n_shuffles, n_u))
    null = {k: np.empty((n_shuffles, n_u)) for k in observed}
    batch = max(1, 256 // max(n_u, 1))          # shuffles per block: (sample, 256) counts
    columns, rates = np.ascontiguousarray(counts.T), np.ascontiguousarray(rate.T)
    for lo in tqdm(range(0, n_shuffles, batch), desc="shuffle scores", unit="batch",
                   disable=None):
        hi = min(n_shuffles, lo + batch)
        s = shifts[lo:hi].reshape(-1)                                 # (shuffle·unit,)
        unit = np.tile(np.arange(n_u), hi - lo)
        shifted, shifted_rate = np.empty((s.size, n_t)), np.empty((s.size, n_t))
        for j, (k, u) in enumerate(zip(s, unit)):         # sample t takes t - k: a roll by k
            shifted[j, k:], shifted[j, :k] = columns[u, :n_t - k], columns[u, n_t - k:]
            shifted_rate[j, k:], shifted_rate[j, :k] = rates[u, :n_t - k], rates[u, n_t - k:]
        scores = _scores(sampler, shifted.T, shifted_rate.T, hd, n_hd_bins, grid_kwargs)
        for k, v in scores.items():
            null[k][lo:hi] = v.reshape(hi - lo, n_u)
    table = {"unit": np.arange(n_u)}
    for k, v in observed.items():
        threshold = np.nanquantile(null[k], quantile, axis=0)
        table[f"{k}_score"] = v
        table[f"{k}_threshold"] = threshold
        table[f"{k}_significant"] = v > threshold
    if hd is not None:
        table["hd_preferred"] = head_direction_score(
            hd, counts, np.where(sampler.used, sampler.dt, 0.0), n_bins=n_hd_bins).preferred
    log.info("shuffle scores: %d units x %d shifts (>= %g s); significant grid %d, border %d",
             n_u, n_shuffles, min_shift, int(table["grid_significant"].sum()),
             int(table["border_significant"].sum()))
    table = pd.DataFrame(table)
    return (table, null) if return_null else table


def led_head_direction(path):
    """Times (s) and head direction (rad) from the two tracked LEDs of a DANDI 000582-layout
    session (LED1 in front of LED2); None when the file has not both LEDs. NaN where either
    LED was lost."""
    import h5py

    with h5py.File(path, "r") as f:
        key = "processing/behavior/Position"
        if key not in f or not {"SpatialSeriesLED1", "SpatialSeriesLED2"} <= set(f[key]):
            return None
        front = np.asarray(f[f"{key}/SpatialSeriesLED1/data"][()], dtype=np.float64)
        back = np.asarray(f[f"{key}/SpatialSeriesLED2/data"][()], dtype=np.float64)
        series = f[f"{key}/SpatialSeriesLED1"]
        t = (np.asarray(series["timestamps"][()], dtype=np.float64) if "timestamps" in series
             else None)
    d = front - back
    return t, np.arctan2(d[:, 1], d[:, 0])


def session_scores(nwb_paths, *, arena_cm=None, bin_size: float = 5.0, n_shuffles: int = 100,
                   min_shift: float = 20.0, quantile: float = 0.95, random_state=0,
                   **ratemap_kwargs) -> pd.DataFrame:
    """`shuffle_scores` of every unit of raw open-field sessions (000053 / 000582 layouts).

    Sessions are read with the MEC loader (`pipeline.data.mec_openfield.read_session`) and
    binned on the same grid as its assembly (`session_grid`); head direction comes from the two
    LEDs where the file has both (000582), otherwise the HD score is left out.

    Returns
    -------
    pandas.DataFrame
        `shuffle_scores` columns plus session, animal, unit_label and neuroid_id
        (``{session}_{unit_label}``, the assembly's ids).
    """
    from pipeline.data.mec_openfield import read_session, session_grid

    frames = []
    for path in tqdm(list(nwb_paths), desc="session scores", unit="session", disable=None):
        s = read_session(path)
        if s is None:
            continue
        arena = s["arena"] if arena_cm is None else (float(arena_cm), float(arena_cm))
        if arena is None:
            raise ValueError(f"{path}: no arena size in the NWB descriptions; give arena_cm")
        grid = session_grid(s, arena, bin_size)
        leds = led_head_direction(path)
        hd = leds[1] if leds is not None and len(leds[1]) == len(s["t"]) else None
        table = shuffle_scores(s["t"], s["xy"], hd, s["spikes"], grid, n_shuffles=n_shuffles,
                               min_shift=min_shift, quantile=quantile,
                               random_state=random_state, **ratemap_kwargs)
        labels = np.asarray(s["unit_label"]).astype(str)
        table.insert(0, "neuroid_id", [f"{s['session']}_{u}" for u in labels])
        table.insert(0, "unit_label", labels)
        table.insert(0, "animal", s["subject"])
        table.insert(0, "session", s["session"])
        frames.append(table)
    if not frames:
        raise ValueError("session_scores: no open-field session among the files")
    return pd.concat(frames, ignore_index=True)
