"""Benchmark: the batched consistency engine against per-fit scikit-learn loops.

Builds an Allen-Neuropixels-sized synthetic problem (the six areas with the unit and
specimen counts of spec Table 3.1: 1731 units over 39 animals, 118 stimuli, 50 trials) and
scores the pooled-source inter-animal consistency with PLS(25) and ridge(α = 1):

- ours: `pipeline.compare.consistency.interanimal`, `--workers` dask workers;
- loop: a straightforward loop over areas, target animals, splits, mappings and split-halves
  that averages the trial halves and fits one scikit-learn map at a time, in one process
  with the default BLAS threading on `--workers` cores (the shape of the reference code);
- tuned loop: the same fits with the half means computed once per split-half and the
  target animals spread over `--workers` loky processes with one BLAS thread each
  (the reference's joblib set-up, ``inner_max_num_threads=1``).

All three run on the same inputs and resamples (`--halves` x `--splits`); the script
prints their times, the speed-ups and the largest differences of the per-unit quantities,
then times the engine alone at `--large` (the thesis' 100 x 10 by default) and
extrapolates the loops' time from their time per fit.

    PYTHONPATH=. python benchmarks/consistency.py                 # 2 cores: 5 x 2 compared, then 100 x 10
    PYTHONPATH=. python benchmarks/consistency.py --large 20 5 --no-tuned
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import numpy as np
import pandas as pd
import xarray as xr
from joblib import Parallel, delayed
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from pipeline.compare.consistency import interanimal
from pipeline.compare.splits import stimulus_splits
from pipeline.data.reliability import trial_halves

# Spec Table 3.1, Neuropixels: area -> (units, specimens).
TABLE_3_1 = {"VISp": (442, 8), "VISl": (162, 6), "VISal": (396, 6),
             "VISrl": (299, 7), "VISam": (257, 7), "VISpm": (175, 5)}
QUANTITIES = ["r", "r_mapping", "r_target", "r_full", "score", "score_full", "score_thesis"]
MAPS = {"pls": lambda: PLSRegression(25, scale=False), "ridge": lambda: Ridge(1.0)}


def allen_like_assembly(n_stimuli=118, n_trials=50, latent_dim=10, seed=0):
    """Poisson trials of linear-nonlinear readouts of a shared latent per area."""
    rng = np.random.default_rng(seed)
    blocks, animal, area, ids = [], [], [], []
    for name, (n_units, n_animals) in TABLE_3_1.items():
        Z = rng.standard_normal((n_stimuli, latent_dim))
        for k, units in enumerate(np.array_split(np.arange(n_units), n_animals)):
            W = rng.standard_normal((latent_dim, units.size)) / np.sqrt(latent_dim)
            rate = 2.0 * np.logaddexp(0.0, Z @ W)
            blocks.append(rng.poisson(rate[:, None, :], (n_stimuli, n_trials, units.size)).astype(float))
            animal += [f"{name}-{k}"] * units.size
            area += [name] * units.size
            ids += [f"{name}-{k}-{u}" for u in units]
    return xr.DataArray(
        np.concatenate(blocks, axis=2), dims=("stimulus", "trial", "neuroid"),
        coords={"stimulus_id": ("stimulus", [f"s{i}" for i in range(n_stimuli)]),
                "neuroid_id": ("neuroid", ids), "animal": ("neuroid", animal), "area": ("neuroid", area),
                "reliability": ("neuroid", np.full(len(ids), np.nan))})


def _corr(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def _quantities(p1, p2, pbar, B1, B2, Bbar):
    """The per-unit terms of one (split-half, split): r, r_mapping, r_target, r_full and the scores."""
    r, rm, rt, r_full = _corr(p1, B2), _corr(p1, p2), _corr(B1, B2), _corr(pbar, Bbar)
    ok = (rm > 0) & (rt > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sb = np.sqrt(2 * rm / (1 + rm) * 2 * rt / (1 + rt))
        return [r, rm, rt, r_full, np.where(ok, r / np.sqrt(rm * rt), np.nan),
                np.where(ok, r_full / sb, np.nan), np.where(ok, r / sb, np.nan)]


def _rows(values, area, target, name, split, ids):
    return pd.DataFrame({"area": area, "animal": target, "mapping": name, "split": split, "neuroid_id": ids,
                         **dict(zip(QUANTITIES, np.nanmean(np.array(values), axis=0)))})


def loop_interanimal(assembly, n_halves, n_splits, seed=0):
    """The straightforward loop: per split, mapping and split-half, average the halves and fit."""
    R = assembly.values
    halves = trial_halves(R.shape[1], n_halves, seed)
    splits = stimulus_splits(R.shape[0], n_splits, 0.5, seed)
    area, animal = assembly["area"].values, assembly["animal"].values
    rows = []
    for a in pd.unique(area):
        for target in pd.unique(animal[area == a]):
            src, tgt = (area == a) & (animal != target), animal == target
            Abar, Bbar = R[:, :, src].mean(1), R[:, :, tgt].mean(1)
            for name, make in MAPS.items():
                for s, (train, test) in enumerate(splits):
                    pbar = make().fit(Abar[train], Bbar[train]).predict(Abar[test])
                    per_half = []
                    for first, second in halves:
                        A1, A2 = (np.nanmean(R[:, t][:, :, src], 1) for t in (first, second))
                        B1, B2 = (np.nanmean(R[:, t][:, :, tgt], 1) for t in (first, second))
                        p1 = make().fit(A1[train], B1[train]).predict(A1[test])
                        p2 = make().fit(A2[train], B2[train]).predict(A2[test])
                        per_half.append(_quantities(p1, p2, pbar, B1[test], B2[test], Bbar[test]))
                    rows.append(_rows(per_half, a, target, name, s, assembly["neuroid_id"].values[tgt]))
    return pd.concat(rows, ignore_index=True)


def _tuned_target(R, src, tgt, a, target, ids, halves, splits):
    with threadpool_limits(limits=1):
        Abar, Bbar = R[:, :, src].mean(1), R[:, :, tgt].mean(1)
        means = [[np.nanmean(R[:, t][:, :, m], 1) for t in pair for m in (src, tgt)] for pair in halves]
        rows = []
        for name, make in MAPS.items():
            for s, (train, test) in enumerate(splits):
                pbar = make().fit(Abar[train], Bbar[train]).predict(Abar[test])
                per_half = []
                for A1, B1, A2, B2 in means:
                    p1 = make().fit(A1[train], B1[train]).predict(A1[test])
                    p2 = make().fit(A2[train], B2[train]).predict(A2[test])
                    per_half.append(_quantities(p1, p2, pbar, B1[test], B2[test], Bbar[test]))
                rows.append(_rows(per_half, a, target, name, s, ids))
        return pd.concat(rows, ignore_index=True)


def tuned_interanimal(assembly, n_halves, n_splits, n_workers, seed=0):
    """The loop's fits, half means hoisted, target animals over loky workers with one BLAS thread."""
    R = assembly.values
    halves = trial_halves(R.shape[1], n_halves, seed)
    splits = stimulus_splits(R.shape[0], n_splits, 0.5, seed)
    area, animal = assembly["area"].values, assembly["animal"].values
    jobs = []
    for a in pd.unique(area):
        for target in pd.unique(animal[area == a]):
            src, tgt = (area == a) & (animal != target), animal == target
            jobs.append(delayed(_tuned_target)(R, src, tgt, a, target, assembly["neuroid_id"].values[tgt],
                                               halves, splits))
    frames = Parallel(n_jobs=n_workers, backend="loky", inner_max_num_threads=1)(jobs)
    return pd.concat(frames, ignore_index=True)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def max_difference(ours, theirs):
    """Largest absolute difference of each mapping's quantities, rows matched by unit and split."""
    keys = ["area", "animal", "mapping", "split", "neuroid_id"]
    merged = ours.merge(theirs, on=keys, suffixes=("", "_peer"))
    if len(merged) != len(theirs):
        raise RuntimeError(f"row mismatch: engine {len(ours)}, peer {len(theirs)}, matched {len(merged)}")
    return {name: max(float(np.nanmax(np.abs(m[q] - m[q + "_peer"]))) for q in QUANTITIES)
            for name, m in merged.groupby("mapping")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--halves", type=int, default=5, help="split-halves of the comparison")
    parser.add_argument("--splits", type=int, default=2, help="train/test splits of the comparison")
    parser.add_argument("--large", type=int, nargs=2, default=(100, 10), metavar=("HALVES", "SPLITS"),
                        help="resamples of the engine-only timing (0 0 skips it)")
    parser.add_argument("--workers", type=int, default=2, help="cores for each side")
    parser.add_argument("--no-loop", action="store_true", help="skip the straightforward loop")
    parser.add_argument("--no-tuned", action="store_true", help="skip the tuned loop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    assembly = allen_like_assembly()
    print(f"problem: {assembly.sizes['neuroid']} units, {len(set(assembly['animal'].values))} animals, "
          f"{len(TABLE_3_1)} areas, {assembly.sizes['stimulus']} stimuli, {assembly.sizes['trial']} trials; "
          f"PLS(25) + ridge(1); {args.workers} cores; load average {os.getloadavg()[0]:.2f}")
    h, s = args.halves, args.splits
    fits = 2 * len(MAPS) * 39 * (2 * h * s + s)
    t_ours, ours = timed(interanimal, assembly, mappings=("pls", "ridge"), n_halves=h, n_splits=s,
                         n_workers=args.workers)
    print(f"{h} halves x {s} splits ({fits // 2} fits per side): ours {t_ours:.1f}s")
    baselines = {}
    if not args.no_loop:
        with threadpool_limits(limits=args.workers):
            baselines["loop"] = timed(loop_interanimal, assembly, h, s)
    if not args.no_tuned:
        baselines["tuned loop"] = timed(tuned_interanimal, assembly, h, s, args.workers)
    for label, (t_base, base) in baselines.items():
        diffs = ", ".join(f"{name} {d:.1e}" for name, d in max_difference(ours, base).items())
        print(f"  {label:10s} {t_base:6.1f}s  speed-up {t_base / t_ours:5.1f}x  max|diff| {diffs}")

    H, S = args.large
    if H and S:
        t_large, _ = timed(interanimal, assembly, mappings=("pls", "ridge"), n_halves=H, n_splits=S,
                           n_workers=args.workers)
        scale = (2 * H * S + S) / (2 * h * s + s)
        print(f"{H} halves x {S} splits: ours {t_large:.1f}s ({t_large / 60:.1f} min)")
        for label, (t_base, _) in baselines.items():
            t_extrapolated = t_base * scale
            print(f"  {label:10s} extrapolated {t_extrapolated / 60:6.1f} min  "
                  f"speed-up ~{t_extrapolated / t_large:.0f}x")


if __name__ == "__main__":
    main()
