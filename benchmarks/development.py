"""Representational development of one model over training, against a per-checkpoint baseline.

Synthetic activations of one model: 4 layers of 4096, 2048, 1024 and 512 units (ventral_cnn's
areas at 32 px) at `--epochs` checkpoints on `--stimuli` probe stimuli in a 2 × 4 × 3 label
hierarchy (superordinate, basic, subordinate), each level's structure growing at its own pace,
plus a virtual dataset of 2 areas × 4 animals × 40 units × 10 trials. Both sides compute, per
layer and checkpoint, the correlation-distance RDM, its Pearson correlation with each level's
category model and with the final RDM, `--boot` bootstrap draws over stimuli of those
correlations (pairs of a stimulus with its own copy left out) and their 95 % intervals, each
level's half-time, and the RSA similarity to every area with its noise ceiling.

Ours: `pipeline.compare.development.development` (every draw's correlations from weighted sums,
one matrix product per block of draws). Baseline: what a user would write per checkpoint with the
peers: `scipy.spatial.distance.pdist` for each RDM, `scipy.stats.pearsonr` for every (draw,
checkpoint, reference) on the explicitly resampled pairs, a loop for the half-times, rsatoolbox
(`calc_rdm`, `compare`, `boot_noise_ceiling`) for the brain similarity. The same draws on both
sides, so every number is compared.

    PYTHONPATH=. python benchmarks/development.py [--epochs 21] [--stimuli 120] [--boot 1000]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import xarray as xr
from rsatoolbox.data import Dataset
from rsatoolbox.inference import boot_noise_ceiling
from rsatoolbox.rdm import calc_rdm, compare, concat
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr

from benchmarks.timing import timed
from pipeline.compare.development import development

LEVELS = ("superordinate", "basic", "subordinate")
WIDTHS = {"area1": 4096, "area2": 2048, "area3": 1024, "area4": 512}
AREAS, ANIMALS, UNITS, TRIALS = ("VISp", "VISl"), 4, 40, 10


def hierarchy(n):
    """Nested labels: 24 subordinate classes, 8 basic, 2 superordinate, in shuffled order."""
    sub = np.random.default_rng(0).permutation(np.arange(n) % 24)
    return {"superordinate": sub // 12, "basic": sub // 3, "subordinate": sub}


def activations(n, epochs, labels, seed=1):
    """Per layer (epoch, stimulus, unit) float32: noise plus each level's one-hot code through a
    random projection, superordinate growing first and subordinate last."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, epochs)
    paces = {"superordinate": 6.0, "basic": 3.0, "subordinate": 1.5}
    data = {}
    for layer, width in WIDTHS.items():
        X = np.stack([rng.standard_normal((n, width)) for _ in range(epochs)])
        for level, pace in paces.items():
            code = np.eye(labels[level].max() + 1)[labels[level]]
            projected = code @ rng.standard_normal((code.shape[1], width))
            X += (1 - np.exp(-pace * t))[:, None, None] * projected
        data[layer] = (("epoch", "stimulus", f"{layer}_unit"), X.astype(np.float32))
    return xr.Dataset(data, coords={"epoch": np.arange(epochs),
                                    "stimulus_id": ("stimulus", [f"s{i:03d}" for i in range(n)])})


def assembly(n, labels, seed=2):
    """A NeuralAssembly (stimulus, trial, neuroid): basic-level structure plus trial noise."""
    rng = np.random.default_rng(seed)
    code = np.eye(labels["basic"].max() + 1)[labels["basic"]]
    blocks, animal, area, ids = [], [], [], []
    for name in AREAS:
        for k in range(ANIMALS):
            rate = code @ rng.standard_normal((code.shape[1], UNITS)) + 0.5 * rng.standard_normal((n, UNITS))
            blocks.append(rate[:, None, :] + rng.standard_normal((n, TRIALS, UNITS)))
            animal += [f"{name}-m{k}"] * UNITS
            area += [name] * UNITS
            ids += [f"{name}-m{k}-u{u}" for u in range(UNITS)]
    return xr.DataArray(np.concatenate(blocks, axis=2), dims=("stimulus", "trial", "neuroid"),
                        coords={"stimulus_id": ("stimulus", [f"s{i:03d}" for i in range(n)]),
                                "neuroid_id": ("neuroid", ids), "animal": ("neuroid", animal),
                                "area": ("neuroid", area),
                                "reliability": ("neuroid", np.full(len(ids), np.nan))})


def first_half_time(epochs, curve):
    """The first epoch the curve reaches half its final value, linear between checkpoints."""
    target = curve[-1] / 2
    if not curve[-1] > 0:
        return np.nan
    for k, value in enumerate(curve):
        if value >= target:
            if k == 0:
                return float(epochs[0])
            return epochs[k - 1] + (target - curve[k - 1]) / (value - curve[k - 1]) * (epochs[k] - epochs[k - 1])
    return np.nan


def baseline(acts, labels, neural, draws):
    """The same quantities per checkpoint with scipy and rsatoolbox: {(kind, ...): value}."""
    n = acts.sizes["stimulus"]
    epochs = acts["epoch"].values
    iu = np.triu_indices(n, k=1)
    categories = [squareform(pdist(labels[level][:, None], lambda u, v: float(u[0] != v[0])))
                  for level in LEVELS]
    areas = {}
    for name in AREAS:
        in_area = neural.isel(neuroid=neural["area"].values == name)
        means = [np.nanmean(in_area.isel(neuroid=in_area["animal"].values == a).values, axis=1)
                 for a in dict.fromkeys(in_area["animal"].values)]
        data = concat([calc_rdm(Dataset(m), method="correlation") for m in means])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            areas[name] = (data, boot_noise_ceiling(data, method="corr"))
    out = {}
    for layer in acts.data_vars:
        rdms = [squareform(pdist(acts[layer].values[e].astype(np.float64), "correlation"))
                for e in range(len(epochs))]
        references = [*categories, rdms[-1]]
        point = np.array([[pearsonr(r[iu], ref[iu])[0] for ref in references] for r in rdms])
        boot = np.empty((len(draws), len(epochs), len(references)))
        for b, draw in enumerate(draws):
            i, j = draw[iu[0]], draw[iu[1]]
            keep = i != j
            a, c = i[keep], j[keep]
            refs = [ref[a, c] for ref in references]
            for e, r in enumerate(rdms):
                values = r[a, c]
                boot[b, e] = [pearsonr(values, ref)[0] for ref in refs]
        low, high = np.nanpercentile(boot, [2.5, 97.5], axis=0)
        for e, epoch in enumerate(epochs):
            for k, reference in enumerate([*LEVELS, "final"]):
                out[("similarity", layer, epoch, reference)] = point[e, k]
                out[("ci_low", layer, epoch, reference)] = low[e, k]
                out[("ci_high", layer, epoch, reference)] = high[e, k]
        for k, level in enumerate(LEVELS):
            out[("half_time", layer, level)] = first_half_time(epochs, point[:, k])
            halves = [first_half_time(epochs, boot[b, :, k]) for b in range(len(draws))]
            out[("half_ci", layer, level)] = tuple(np.nanpercentile(halves, [2.5, 97.5]))
        for name, (data, (lower, upper)) in areas.items():
            for e, epoch in enumerate(epochs):
                model = calc_rdm(Dataset(acts[layer].values[e].astype(np.float64)), method="correlation")
                out[("brain", layer, epoch, name)] = float(np.mean(compare(model, data, method="corr")))
            out[("ceiling", layer, name)] = (float(lower), float(upper))
    return out


def ours_by_key(result):
    """`development`'s tables as the baseline's {(kind, ...): value}."""
    out = {}
    for row in result.trajectory.itertuples():
        for kind in ("similarity", "ci_low", "ci_high"):
            out[(kind, row.layer, row.epoch, row.reference)] = getattr(row, kind)
    for row in result.halftimes.itertuples():
        out[("half_time", row.layer, row.level)] = row.half_time
        out[("half_ci", row.layer, row.level)] = (row.ci_low, row.ci_high)
    for row in result.brain.itertuples():
        out[("brain", row.layer, row.epoch, row.area)] = row.similarity
        out[("ceiling", row.layer, row.area)] = (row.nc_lower, row.nc_upper)
    return out


def largest_difference(ours, theirs, kinds):
    """max |ours − baseline| over the keys of the given kinds (NaN equal to NaN)."""
    diffs = [np.nan_to_num(np.abs(np.subtract(ours[key], theirs[key])), nan=0.0).max()
             for key in theirs if key[0] in kinds]
    assert ours.keys() >= {key for key in theirs if key[0] in kinds}
    return float(max(diffs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=21, help="checkpoints (B.5: 21, every 5 of 100)")
    parser.add_argument("--stimuli", type=int, default=120, help="probe stimuli (config.yaml: 120)")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap draws (development.n_boot)")
    args = parser.parse_args()
    labels = hierarchy(args.stimuli)
    acts = activations(args.stimuli, args.epochs, labels)
    neural = assembly(args.stimuli, labels)
    draws = np.random.default_rng(0).integers(0, args.stimuli, size=(args.boot, args.stimuli))
    print(f"{len(WIDTHS)} layers ({', '.join(map(str, WIDTHS.values()))} units) x {args.epochs} checkpoints, "
          f"{args.stimuli} stimuli, {args.boot} draws, {len(AREAS)} areas x {ANIMALS} animals", flush=True)
    t_ours, result = timed(development, acts, labels, {"virtual": neural}, n_boot=args.boot, seed=0)
    print(f"ours      {t_ours:.1f} s", flush=True)
    t_base, theirs = timed(baseline, acts, labels, neural, draws)
    print(f"baseline  {t_base:.1f} s (scipy pdist + pearsonr per draw, rsatoolbox per checkpoint)")
    ours = ours_by_key(result)
    print(f"speed-up {t_base / t_ours:.0f}x  max|diff|: correlations "
          f"{largest_difference(ours, theirs, {'similarity'}):.1e}, intervals "
          f"{largest_difference(ours, theirs, {'ci_low', 'ci_high'}):.1e}, half-times "
          f"{largest_difference(ours, theirs, {'half_time', 'half_ci'}):.1e} epochs, brain "
          f"{largest_difference(ours, theirs, {'brain', 'ceiling'}):.1e}")


if __name__ == "__main__":
    main()
