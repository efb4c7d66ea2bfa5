"""Benchmark: the batched consistency engine against a per-fit scikit-learn loop.

Builds an Allen-Neuropixels-sized synthetic problem (the six areas with the unit and
specimen counts of spec Table 3.1: 1731 units over 39 animals, 118 stimuli, 50 trials),
scores the inter-animal consistency (pooled source; PLS(25) and ridge) with
`pipeline.compare.consistency.interanimal` and with a straightforward loop over areas,
target animals, split-halves and splits that fits `sklearn` maps one at a time, on the same
inputs and resamples, each side on `--workers` cores. Prints both times, the speed-up and
the largest score difference, then times the engine alone at larger resample counts and
extrapolates the loop's time.

    python benchmarks/consistency.py                  # 2 cores; 2 halves x 2 splits, then 20 x 5
    python benchmarks/consistency.py --large 100 10   # the thesis setting for the engine-only run
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from pipeline.compare.consistency import interanimal
from pipeline.compare.splits import stimulus_splits, trial_halves

# Spec Table 3.1, Neuropixels: area -> (units, specimens).
TABLE_3_1 = {"VISp": (442, 8), "VISl": (162, 6), "VISal": (396, 6),
             "VISrl": (299, 7), "VISam": (257, 7), "VISpm": (175, 5)}
QUANTITIES = ["r", "r_mapping", "r_target", "score", "score_full", "score_thesis"]


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


def sklearn_interanimal(assembly, n_halves, n_splits, seed=0):
    """The reference loop: one sklearn fit per (area, target, split-half, split, half)."""
    maps = {"pls": lambda: PLSRegression(25, scale=False), "ridge": lambda: Ridge(1.0)}
    R = assembly.values
    halves = trial_halves(R.shape[1], n_halves, seed)
    splits = stimulus_splits(R.shape[0], n_splits, 0.5, seed)
    area, animal = assembly["area"].values, assembly["animal"].values
    rows = []
    for a in pd.unique(area):
        for target in pd.unique(animal[area == a]):
            src, tgt = (area == a) & (animal != target), animal == target
            full = [R[:, :, src].mean(1), R[:, :, tgt].mean(1)]
            for name, make in maps.items():
                for s, (train, test) in enumerate(splits):
                    p_full = make().fit(full[0][train], full[1][train]).predict(full[0][test])
                    r_full = _corr(p_full, full[1][test])
                    per_half = []
                    for first, second in halves:
                        A1, A2 = (np.nanmean(R[:, t][:, :, src], 1) for t in (first, second))
                        B1, B2 = (np.nanmean(R[:, t][:, :, tgt], 1) for t in (first, second))
                        p1 = make().fit(A1[train], B1[train]).predict(A1[test])
                        p2 = make().fit(A2[train], B2[train]).predict(A2[test])
                        r, rm, rt = _corr(p1, B2[test]), _corr(p1, p2), _corr(B1[test], B2[test])
                        ok = (rm > 0) & (rt > 0)
                        sb = np.sqrt(2 * rm / (1 + rm) * 2 * rt / (1 + rt))
                        per_half.append([r, rm, rt, np.where(ok, r / np.sqrt(rm * rt), np.nan),
                                         np.where(ok, r_full / sb, np.nan), np.where(ok, r / sb, np.nan)])
                    values = np.nanmean(np.array(per_half), axis=0)
                    rows.append(pd.DataFrame({"area": a, "animal": target, "mapping": name, "split": s,
                                              "neuroid_id": assembly["neuroid_id"].values[tgt],
                                              **dict(zip(QUANTITIES, values))}))
    return pd.concat(rows, ignore_index=True)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--halves", type=int, default=2, help="split-halves for the comparison")
    parser.add_argument("--splits", type=int, default=2, help="train/test splits for the comparison")
    parser.add_argument("--large", type=int, nargs=2, default=(20, 5), metavar=("HALVES", "SPLITS"),
                        help="resamples for the engine-only timing")
    parser.add_argument("--workers", type=int, default=2,
                        help="cores for each side: engine workers, BLAS threads of the sklearn loop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    assembly = allen_like_assembly()
    print(f"problem: {assembly.sizes['neuroid']} units, {len(set(assembly['animal'].values))} animals, "
          f"{len(TABLE_3_1)} areas, {assembly.sizes['stimulus']} stimuli, {assembly.sizes['trial']} trials")
    common = dict(n_halves=args.halves, n_splits=args.splits)
    t_ours, ours = timed(interanimal, assembly, mappings=("pls", "ridge"), n_workers=args.workers, **common)
    with threadpool_limits(limits=args.workers):
        t_base, base = timed(sklearn_interanimal, assembly, **common)
    merged = ours.merge(base, on=["area", "animal", "mapping", "split", "neuroid_id"], suffixes=("", "_sk"))
    if len(merged) != len(base):
        raise RuntimeError(f"row mismatch: engine {len(ours)}, sklearn loop {len(base)}, matched {len(merged)}")
    for name in ("pls", "ridge"):
        m = merged[merged["mapping"] == name]
        diff = max(np.nanmax(np.abs(m[q] - m[q + "_sk"])) for q in QUANTITIES)
        print(f"{name:5s} max|diff| over {len(QUANTITIES)} quantities x {len(m)} rows: {diff:.1e}")
    print(f"{args.halves} halves x {args.splits} splits: sklearn loop {t_base:.1f}s  ours {t_ours:.1f}s  "
          f"speed-up {t_base / t_ours:.0f}x")

    halves, splits = args.large
    t_large, _ = timed(interanimal, assembly, mappings=("pls", "ridge"), n_halves=halves, n_splits=splits,
                       n_workers=args.workers)
    fits = (2 * halves * splits + splits) / (2 * args.halves * args.splits + args.splits)
    print(f"{halves} halves x {splits} splits: ours {t_large:.1f}s; sklearn loop extrapolated "
          f"{t_base * fits / 60:.0f} min (x{fits:.0f} fits), speed-up ~{t_base * fits / t_large:.0f}x")


if __name__ == "__main__":
    main()
