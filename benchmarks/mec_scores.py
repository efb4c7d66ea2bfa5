"""Benchmark: vectorised grid scores of many rate maps against per-unit loops.

4096 rate maps of 20 x 20 bins (a 1-m box in 5-cm bins; spec §3.2), a third with an unvisited
4 x 4 hole (NaN): grid cells of random spacing, orientation and phase, border-like ramps and
smoothed noise. Three ways to the same grid scores (central-peak inner radius, expanding
annulus):

- ours: `pipeline.mec.scores.grid_score` on all maps at once (FFT autocorrelograms, one
  rotation call per angle for a block of maps, annulus sums for every radius by cumulative
  shell sums);
- our loop: the same function called once per map (the cost of not batching);
- reference loop: a per-unit script of the usual shape (opexebo / BNT style): the six
  NaN-aware sums of the autocorrelogram by `scipy.signal.correlate2d`, `scipy.ndimage.rotate`
  per angle, and `numpy.corrcoef` inside every candidate annulus (on `--loop-maps` maps, its
  time scaled to all maps).

    PYTHONPATH=. python benchmarks/mec_scores.py                  # 4096 maps
    PYTHONPATH=. python benchmarks/mec_scores.py --maps 1024 --loop-maps 128
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage, signal
from threadpoolctl import threadpool_limits

from pipeline.mec.ratemaps import smooth_maps
from pipeline.mec.scores import ANGLES, MIN_OVERLAP, PEAK_THRESHOLD, grid_score


def make_maps(n: int, size: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.arange(size) + 0.5
    xx, yy = np.meshgrid(c, c)
    maps = np.empty((n, size, size))
    for u in range(n):
        kind = u % 3
        if kind == 0:
            spacing, angle = rng.uniform(5, 12), rng.uniform(0, np.pi / 3)
            phase = rng.uniform(0, 10, 2)
            k = 4 * np.pi / (np.sqrt(3) * spacing)
            waves = sum(np.cos(k * ((xx - phase[0]) * np.cos(a) + (yy - phase[1]) * np.sin(a)))
                        for a in angle + np.arange(3) * np.pi / 3)
            maps[u] = np.maximum(waves + 0.5, 0) + rng.gamma(2, 0.1, (size, size))
        elif kind == 1:
            maps[u] = np.exp(-xx / rng.uniform(1, 4)) + rng.gamma(2, 0.1, (size, size))
        else:
            maps[u] = rng.gamma(2, 1, (size, size))
        if u % 3 == 1 or u % 5 == 0:
            i, j = rng.integers(0, size - 4, 2)
            maps[u, i:i + 4, j:j + 4] = np.nan
    return smooth_maps(maps, 1.0)


def reference_grid_score(m: np.ndarray) -> float:
    """One map, written the usual per-unit way (same definitions as ours)."""
    mask = np.isfinite(m)
    x = np.where(mask, m - np.nanmean(m), 0.0)
    w = mask.astype(float)

    def corr(a, b):
        return signal.correlate2d(b, a, mode="full")

    n = np.rint(corr(w, w))
    s1, s2, q1, q2, sxy = corr(x, w), corr(w, x), corr(x * x, w), corr(w, x * x), corr(x, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt((n * q1 - s1 ** 2) * (n * q2 - s2 ** 2))
        ac = (n * sxy - s1 * s2) / den
    ac = np.where((n >= MIN_OVERLAP) & (den > 1e-9 * np.maximum(n, 1) ** 2),
                  np.clip(ac, -1, 1), np.nan)
    cy, cx = (ac.shape[0] - 1) / 2, (ac.shape[1] - 1) / 2
    yy, xx = np.mgrid[:ac.shape[0], :ac.shape[1]]
    radius = np.hypot(yy - cy, xx - cx)
    finite = np.isfinite(ac)
    rotated = []
    for angle in ANGLES:
        v = ndimage.rotate(np.where(finite, ac, 0.0), angle, reshape=False, order=1)
        k = ndimage.rotate(finite.astype(float), angle, reshape=False, order=1)
        rotated.append(np.where(k > 1 - 1e-9, v, np.nan))
    shell = np.floor(radius).astype(int)
    profile = np.array([np.nanmean(np.where(shell == s, ac, np.nan))
                        if (finite & (shell == s)).any() else np.nan
                        for s in range(shell.max() + 1)])
    inner = next(s for s in range(1, shell.max() + 1)
                 if s == shell.max() or profile[s] < PEAK_THRESHOLD
                 or profile[s] <= profile[s + 1])
    best = np.nan
    for outer in range(inner + 2, min(m.shape)):
        ring = (radius >= inner) & (radius < outer)
        r = []
        for rot in rotated:
            ok = ring & finite & np.isfinite(rot)
            if ok.sum() < 6 or ac[ok].std() == 0 or rot[ok].std() == 0:
                r.append(np.nan)
            else:
                r.append(np.corrcoef(ac[ok], rot[ok])[0, 1])
        score = (r[1] + r[3]) / 2 - (r[0] + r[2] + r[4]) / 3
        if np.isfinite(score) and not score <= best:
            best = score
    return best


def timed(f, *args):
    start = time.perf_counter()
    out = f(*args)
    return time.perf_counter() - start, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=4096)
    parser.add_argument("--loop-maps", type=int, default=512,
                        help="maps timed in the reference loop (scaled to --maps)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    maps = make_maps(args.maps)
    with threadpool_limits(args.threads):
        grid_score(maps[:8])                                    # warm-up (FFT plans, imports)
        t_ours, ours = timed(grid_score, maps)
        t_loop, loop = timed(lambda m: np.array([grid_score(u).score[0] for u in m]), maps)
        n_ref = min(args.loop_maps, args.maps)
        t_ref, ref = timed(lambda m: np.array([reference_grid_score(u) for u in m]), maps[:n_ref])
    t_ref_all = t_ref * args.maps / n_ref
    d_loop = np.nanmax(np.abs(ours.score - loop))
    d_ref = np.nanmax(np.abs(ours.score[:n_ref] - ref))
    nan_agree = (np.isnan(ours.score[:n_ref]) == np.isnan(ref)).all()
    print(f"grid scores of {args.maps} maps (20x20, {np.isnan(maps).any(axis=(1, 2)).sum()} with "
          f"unvisited bins), {args.threads} threads")
    print(f"ours (vectorised)   {t_ours:7.2f} s")
    print(f"our per-unit loop   {t_loop:7.2f} s   speed-up {t_loop / t_ours:5.1f}x   "
          f"max|diff| {d_loop:.1e}")
    print(f"reference loop      {t_ref_all:7.2f} s   speed-up {t_ref_all / t_ours:5.1f}x   "
          f"max|diff| {d_ref:.1e} (timed on {n_ref} maps, scaled; NaN pattern equal: {nan_agree})")


if __name__ == "__main__":
    main()
