"""Benchmark: per-bin temporal scoring against a per-bin scikit-learn loop.

A Majaj-Hong-sized problem (spec §4.2): 3200 images × 256 units × 25 bins of 10 ms, a model
source with its own features in every bin (a recurrent model's steps), PLS(25) per bin,
10 train/test splits (75/25) and one trial split-half, noise-corrected as in the engine:

- ours: `pipeline.compare.temporal.temporal_predictivity(maps=("per_bin",))`, the engine's
  kernel PLS per bin;
- loop: per bin, split and trial half, scikit-learn ``PLSRegression(25, scale=False)`` fit on the
  half-1 means, the half-2 means and the all-trial means of the training images (3 fits), the
  same correlations (r, r_mapping, r_target, r_full) on the test images.

The loop runs on the first `--loop-bins` bins (all 10 splits each) and its time is extrapolated
to 25 bins (it is linear in the bins); the largest difference of the per-unit quantities is
taken over those bins.

    PYTHONPATH=. python benchmarks/temporal.py                  # 2 cores
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xarray as xr
from sklearn.cross_decomposition import PLSRegression

from pipeline.compare.splits import stimulus_splits
from pipeline.compare.temporal import temporal_predictivity
from pipeline.data.reliability import trial_halves

QUANTITIES = ("r", "r_mapping", "r_target", "r_full")


def problem(n_stimuli=3200, n_units=256, n_bins=25, n_features=300, n_trials=6, latent=40, seed=0):
    """Model features per bin and Poisson trials of units that read them through a latent."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n_stimuli, latent))
    mix = rng.standard_normal((n_bins, latent, latent)) * 0.3 + np.eye(latent)
    codes = np.einsum("sl,blk->bsk", Z, mix)                                  # (bin, stimulus, latent)
    X = np.einsum("bsk,kf->bsf", codes, rng.standard_normal((latent, n_features)) / np.sqrt(latent))
    X += 0.5 * rng.standard_normal(X.shape)
    W = rng.standard_normal((latent, n_units)) / np.sqrt(latent)
    rate = 2.0 * np.logaddexp(0.0, codes @ W)                                 # (bin, stimulus, unit)
    trials = rng.poisson(np.transpose(rate, (1, 0, 2))[:, None], (n_stimuli, n_trials, n_bins, n_units))
    assembly = xr.DataArray(
        trials.astype(np.float32), dims=("stimulus", "trial", "time_bin", "neuroid"), name="response",
        coords={"stimulus_id": ("stimulus", [f"s{i:04d}" for i in range(n_stimuli)]),
                "time_bin": ("time_bin", 0.01 * np.arange(n_bins)),
                "time_bin_end": ("time_bin", 0.01 * np.arange(1, n_bins + 1)),
                "neuroid_id": ("neuroid", [f"u{u}" for u in range(n_units)]),
                "animal": ("neuroid", ["m0"] * n_units), "area": ("neuroid", ["IT"] * n_units),
                "reliability": ("neuroid", np.full(n_units, np.nan))})
    ids = assembly["stimulus_id"].values
    sources = {b: xr.Dataset({"layer": (("epoch", "stimulus", "unit"), X[b][None].astype(np.float32))},
                             coords={"epoch": [0], "stimulus_id": ("stimulus", ids)}) for b in range(n_bins)}
    return assembly, sources, X.astype(np.float32).astype(np.float64)


def _corr(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def sklearn_loop(assembly, X, bins, splits, halves, n_components):
    """The per-bin loop: {quantity: (bin, split, unit)} for the given bins."""
    R = assembly.values.astype(np.float64)
    out = {q: np.empty((len(bins), len(splits), R.shape[-1])) for q in QUANTITIES}
    (first, second), = halves
    for i, b in enumerate(bins):
        Y = R[:, :, b]
        Y1, Y2, Ybar = Y[:, first].mean(1), Y[:, second].mean(1), Y.mean(1)
        for s, (train, test) in enumerate(splits):
            p1, p2, pbar = (PLSRegression(n_components, scale=False).fit(X[b][train], T[train]).predict(X[b][test])
                            for T in (Y1, Y2, Ybar))
            out["r"][i, s] = _corr(p1, Y2[test])
            out["r_mapping"][i, s] = _corr(p1, p2)
            out["r_target"][i, s] = _corr(Y1[test], Y2[test])
            out["r_full"][i, s] = _corr(pbar, Ybar[test])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loop-bins", type=int, default=1, help="bins the scikit-learn loop runs (then x25/k)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n_splits, n_components, seed, train_frac = 10, 25, 0, 0.75
    assembly, sources, X = problem()
    n_bins = assembly.sizes["time_bin"]
    print(f"problem: {assembly.sizes['stimulus']} images x {assembly.sizes['neuroid']} units x {n_bins} bins, "
          f"{X.shape[2]} model features per bin, {assembly.sizes['trial']} trials; PLS({n_components}), "
          f"{n_splits} splits ({train_frac:.0%} train), 1 split-half")
    start = time.perf_counter()
    ours = temporal_predictivity(sources, assembly, maps=("per_bin",), mappings=("pls",), n_components=n_components,
                                 n_halves=1, n_splits=n_splits, train_frac=train_frac, seed=seed,
                                 select_layers=False, n_workers=args.workers)
    t_ours = time.perf_counter() - start
    splits = stimulus_splits(assembly.sizes["stimulus"], n_splits, train_frac, seed)
    halves = trial_halves(assembly.sizes["trial"], 1, seed)
    bins = list(range(args.loop_bins))
    start = time.perf_counter()
    loop = sklearn_loop(assembly, X, bins, splits, halves, n_components)
    t_loop = (time.perf_counter() - start) * n_bins / len(bins)
    table = ours.set_index(["time_bin", "split", "neuroid_id"]).sort_index()
    starts = assembly["time_bin"].values
    diffs = {}
    for q in QUANTITIES:
        mine = np.stack([[table.loc[(starts[b], s), q].reindex(assembly["neuroid_id"].values).values
                          for s in range(n_splits)] for b in bins])
        diffs[q] = np.nanmax(np.abs(mine - loop[q]))
    print(f"ours {t_ours:.1f} s for all {n_bins} bins; sklearn loop {t_loop:.1f} s "
          f"({'measured' if len(bins) == n_bins else f'{len(bins)} bins measured, x{n_bins / len(bins):g}'}); "
          f"speed-up {t_loop / t_ours:.1f}x")
    print("max |diff| over the loop's bins: " + ", ".join(f"{q} {d:.1e}" for q, d in diffs.items()))


if __name__ == "__main__":
    main()
