"""Learning-rule identification: observables of one checkpoint, and a forest on a thesis-sized table.

1. Observables of one ResNet-18 checkpoint (pipeline.models, CIFAR stem) on `--images`
   validation images. Ours: `checkpoint_observables`, every statistic of every layer from one
   forward pass per batch (plus each layer's local backward of sum(y)). Baseline: the naive
   per-statistic loop, one full pass over the images for each of the 21 activation statistics
   and each of the 6 activity-change numbers (3 functions × 2 variants), computing only that
   number per pass, and the 21 weight statistics one at a time (no pass). Passes are counted by a hook on the model; values are compared.
2. Random-forest fitting time on a table the size of the thesis' (20,736 examples × 507
   features: 24 statistics × 21 checkpoints + 3 position columns, 4 classes): one fit at the
   grid's middle setting (100 trees, max_features √d) on 1 and on all cores, and the B.6 grid's
   cost extrapolated from the per-tree time.

    PYTHONPATH=. python benchmarks/identify.py [--images 1024] [--size 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier

from pipeline.identify.observables import (_forward_jacobian_output, _leaf_input,
                                           checkpoint_observables, measured_layers)
from pipeline.identify.statistics import FUNCTIONS, STATISTICS, apply_function
from pipeline.models import build_model
from pipeline.objectives.augment import preprocess

PREPROCESSING = {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26], "input_size": None}


def one_statistic(values: torch.Tensor, statistic: str) -> torch.Tensor:
    """One statistic of each row, computed on its own (what a per-statistic loop does)."""
    values = values.to(torch.float64)
    if statistic == "norm":
        return values.norm(dim=1)
    if statistic == "mean":
        return values.mean(1)
    if statistic == "var":
        return values.var(1, unbiased=False)
    if statistic in ("median", "thirdquartile"):
        q = 0.5 if statistic == "median" else 0.75
        ordered = values.sort(1).values
        position = (values.shape[1] - 1) * q
        low = int(position)
        high = min(low + 1, values.shape[1] - 1)
        return ordered[:, low] + (position - low) * (ordered[:, high] - ordered[:, low])
    mean = values.mean(1, keepdim=True)
    std = values.std(1, unbiased=False)
    if statistic == "skew":
        return 3 * (mean[:, 0] - one_statistic(values, "median")) / std
    return ((values - mean) ** 4).mean(1) / std ** 4


def naive(model, images, batch_size):
    """{(layer, observable): value} by one pass over the images per statistic."""
    layers = measured_layers(model)
    out = {}
    for name, module in layers:                 # weights: no data pass, one statistic at a time
        kernel = module.weight.detach().reshape(1, -1)
        for function in FUNCTIONS:
            for statistic in STATISTICS:
                value = one_statistic(apply_function(kernel, function), statistic)
                out[name, f"weight_{function}_{statistic}"] = float(value[0])
    tasks = [("act", f, s) for f in FUNCTIONS for s in STATISTICS]
    tasks += [(m, f, "mean") for m in ("gradavgfb", "gradavg") for f in FUNCTIONS]
    for measure, function, statistic in tasks:
        sums = {name: 0.0 for name, _ in layers}

        def hook(module, args, output, name=None):
            if measure == "act":
                values = apply_function(output.detach().flatten(1), function)
                sums[name] += float(one_statistic(values, statistic).sum())
            else:
                x = args[0]
                y = output
                if measure == "gradavg" and hasattr(module, "weight_fb"):
                    x = x.detach().requires_grad_(True)
                    y = _forward_jacobian_output(module, x)
                (grad,) = torch.autograd.grad(y.sum(), x)
                change = grad.flatten(1).to(torch.float64).sum(1) / y[0].numel()
                sums[name] += float(apply_function(change, function).sum())
            return output.detach()

        handles = []
        for name, module in layers:
            handles.append(module.register_forward_pre_hook(_leaf_input))
            handles.append(module.register_forward_hook(
                lambda m, a, o, name=name: hook(m, a, o, name=name)))
        with torch.enable_grad():
            for start in range(0, len(images), batch_size):
                model(preprocess(images[start:start + batch_size], PREPROCESSING))
        for handle in handles:
            handle.remove()
        for name in sums:
            out[name, f"{measure}_{function}_{statistic}"] = sums[name] / len(images)
    return out


def bench_observables(n_images, size, batch_size):
    torch.manual_seed(0)
    model = build_model("resnet18", 100, size).eval().requires_grad_(False)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n_images, 3, size, size),
                                                                dtype=np.uint8))
    passes = []
    model.register_forward_pre_hook(lambda *_: passes.append(1))
    start = time.perf_counter()
    rows = checkpoint_observables(model, images, PREPROCESSING, epoch=0, batch_size=batch_size)
    t_ours = time.perf_counter() - start
    ours_passes = len(passes) * batch_size / n_images
    passes.clear()
    start = time.perf_counter()
    baseline = naive(model, images, batch_size)
    t_naive = time.perf_counter() - start
    naive_passes = len(passes) * batch_size / n_images
    ours = {(r["layer"], r["observable"]): r["value"] for r in rows}
    diff = max(abs(ours[key] - value) / max(abs(value), 1e-12) for key, value in baseline.items())
    print(f"observables  resnet18 {size}px, {n_images} images, {len(measured_layers(model))} layers: "
          f"naive {naive_passes:.0f} passes {t_naive:.1f}s  ours {ours_passes:.0f} pass "
          f"{t_ours:.1f}s  passes ratio {naive_passes / ours_passes:.0f}x  time ratio "
          f"{t_naive / t_ours:.1f}x  max rel diff {diff:.1e}")


def bench_forest(threads):
    rng = np.random.default_rng(0)
    n, d = 20736, 24 * 21 + 3
    y = rng.integers(0, 4, n)
    X = rng.standard_normal((n, d))
    X[:, :21] += 0.3 * y[:, None] * np.linspace(0, 1, 21)          # a weak planted trajectory
    times = {}
    for jobs in sorted({1, threads}):
        forest = RandomForestClassifier(n_estimators=100, max_features="sqrt", random_state=0,
                                        n_jobs=jobs)
        start = time.perf_counter()
        forest.fit(X, y)
        times[jobs] = time.perf_counter() - start
    per_tree = times[1] / 100
    # B.6 grid: n_estimators {20, 50, 100, 500, 1000} x max_features {sqrt, log2, d}, 5 folds
    # on 75 % of the data, 10 splits; a tree's cost grows about linearly with max_features.
    features = {"sqrt": np.sqrt(d), "log2": np.log2(d), "d": d}
    grid_trees = sum([20, 50, 100, 500, 1000])
    per_split = sum(grid_trees * per_tree * features[k] / features["sqrt"] * 0.75 * 0.8 * 5
                    for k in features)
    print(f"random forest  {n} x {d}, 100 trees, max_features sqrt: 1 core {times[1]:.1f}s  "
          f"{threads} cores {times[threads]:.1f}s  speed-up {times[1] / times[threads]:.1f}x; "
          f"B.6 grid x 5-fold CV x 10 splits extrapolated: {10 * per_split / 3600:.1f} core-hours")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench_observables(args.images, args.size, args.batch_size)
    bench_forest(args.threads)


if __name__ == "__main__":
    main()
