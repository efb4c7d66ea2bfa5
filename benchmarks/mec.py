"""Rate maps of many model units, and path-integrator training throughput (spec §3.2, §3.5).

1. Rate maps: the mean activity of `--units` units in the 5-cm bins of a 1 m box over
   `--positions` positions. Ours: `pipeline.mec.model_ratemaps.accumulate_bins` (one
   `index_add_` for all units, chunk by chunk) then `bin_means`. Baseline: a per-unit loop of
   `scipy.stats.binned_statistic_2d(..., "mean")`, the released code's call, timed on
   `--loop-units` units and extrapolated linearly to all units (it is linear in units); the
   largest difference is checked on those units.
2. Training: `pipeline.mec.training.train_path_integrator` (the rule's step, trajectories drawn
   on the fly, the epoch's held-out evaluation, a checkpoint, run.json, metrics.csv) against a
   bare loop of the same network, place cells, trajectories, loss and Adam with nothing else,
   for the same number of steps. Prints steps/s and the ratio (1.0 = no overhead; target >= 0.9).

Usage: `PYTHONPATH=. python benchmarks/mec.py [--units 4096 --positions 1000000]
[--arch ugrnn_relu --n-units 256 --batch 200 --steps 60] [--device cpu] [--threads 2]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from scipy import stats

from pipeline.mec.model_ratemaps import bin_index, accumulate_bins, bin_means
from pipeline.mec.ratemaps import BinGrid
from pipeline.mec.trajectories import simulate_trajectories
from pipeline.mec.training import PathSettings, build_task, train_path_integrator
from pipeline.models.path_integrator import PathIntegrator
from pipeline.runtime import set_num_threads


def activity(xy, units, rng_seed=0):
    """Smooth, unit-specific activity of positions (n, 2) m: rectified plane waves."""
    g = torch.Generator().manual_seed(rng_seed)
    k = torch.randn(units, 2, generator=g) * 12
    phase = torch.rand(units, generator=g) * 6.28
    return torch.relu(torch.cos(xy @ k.T + phase))


def bench_ratemaps(n_units, n_positions, loop_units, chunk=20_000):
    grid = BinGrid(100.0, 100.0, 5.0)
    xy = torch.rand(n_positions, 2, generator=torch.Generator().manual_seed(1)) - 0.5
    t_act = 0.0
    start = time.perf_counter()
    sums, counts = None, torch.zeros(grid.n_bins, dtype=torch.float64)
    for i in range(0, n_positions, chunk):
        part = xy[i:i + chunk]
        a0 = time.perf_counter()
        act = activity(part, n_units)
        t_act += time.perf_counter() - a0
        bins = bin_index(part, grid)
        counts.index_add_(0, bins, torch.ones_like(bins, dtype=torch.float64))
        sums = accumulate_bins(bins, act, grid.n_bins, sums)
    ours_maps = bin_means(sums, counts)
    t_ours = time.perf_counter() - start - t_act        # the activity is the model's, not ours

    cm = xy.double().numpy() * 100 + 50
    edges = np.arange(0, 100.001, 5.0)
    a0 = time.perf_counter()
    act = activity(xy, n_units)[:, :loop_units].double().numpy()   # same draws, first units
    t_loop_act = time.perf_counter() - a0
    start = time.perf_counter()
    ref = [stats.binned_statistic_2d(cm[:, 1], cm[:, 0], act[:, u], "mean",
                                     bins=[edges, edges]).statistic.ravel()
           for u in range(loop_units)]
    t_loop = (time.perf_counter() - start) * n_units / loop_units
    diff = np.nanmax(np.abs(np.stack(ref, 1) - ours_maps[:, :loop_units]))
    print(f"rate maps  {n_units} units x {n_positions:.0e} positions: per-unit loop "
          f"{t_loop:.1f} s (extrapolated from {loop_units} units), ours {t_ours:.2f} s, "
          f"speed-up {t_loop / t_ours:.0f}x, max|diff| {diff:.1e} "
          f"(activity generation {t_act:.1f} s / {t_loop_act:.1f} s, not counted)")


def bare_loop(arch, settings, steps, device):
    """The same network, data and loss with nothing around the steps."""
    torch.manual_seed(0)
    task = build_task("placecell", settings)
    task.place_cells.to(device)
    model = PathIntegrator(arch, task.n_init, task.n_out, n_units=settings.n_units,
                           n_input=settings.n_input).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        traj = simulate_trajectories(settings.batch_size, settings.n_steps, width=settings.arena,
                                     generator=gen).to(device)
        velocity, init = task.inputs(traj)
        out = model(velocity, init)
        loss = task.loss(model, out, task.targets(traj))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_training(arch, n_units, batch, steps, device):
    settings = PathSettings(epochs=1, steps_per_epoch=steps, batch_size=batch, n_units=n_units,
                            eval_batches=1)
    device = torch.device(device)
    bare_loop(arch, settings, 3, device)                   # warm-up (allocator, kernels)
    t_bare = bare_loop(arch, settings, steps, device)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train_path_integrator(f"{arch}-placecell-bp-s0", tmp, settings, device=str(device.type))
        t_ours = time.perf_counter() - start
    print(f"training   {arch} {n_units} units, batch {batch}, {steps} steps on {device}: bare "
          f"{steps / t_bare:.2f} steps/s, ours {steps / t_ours:.2f} steps/s (whole run: epoch-0 "
          f"and epoch-1 evaluation, 2 checkpoints), ratio {t_bare / t_ours:.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--units", type=int, default=4096)
    p.add_argument("--positions", type=int, default=1_000_000)
    p.add_argument("--loop-units", type=int, default=32)
    p.add_argument("--arch", default="ugrnn_relu")
    p.add_argument("--n-units", type=int, default=256)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip", choices=["ratemaps", "training"], default=None)
    args = p.parse_args()
    set_num_threads(args.threads)
    if args.skip != "ratemaps":
        bench_ratemaps(args.units, args.positions, args.loop_units)
    if args.skip != "training":
        bench_training(args.arch, args.n_units, args.batch, args.steps, args.device)


if __name__ == "__main__":
    main()
