"""Rate maps of model units on the data's bins (spec §3.2): the model side of MEC comparisons.

A path integrator runs on `n_batches` × `batch_size` simulated trajectories of `n_steps` steps
(spec: 100 × 200 × 20, dt 20 ms) in an arena of the recorded animals' size, from fixed seeds,
so every model sees the same paths. Each unit's map is its mean activation over the steps
falling in each bin of the data's 5-cm grid (``scipy.stats.binned_statistic_2d`` in the
released code; here one `index_add_` per batch for all units at once); model maps are not
smoothed, and a bin no step visited is NaN.

The result is an activations store like `pipeline.activations` writes: one variable per layer
(``pre_g``, ``g``, ``dc``), dims (epoch, stimulus, unit_{layer}), the stimuli being bins with the
data assembly's ``stimulus_id`` (``x{i}_y{j}``), so `pipeline.compare.consistency.predictivity`
compares model and animal maps unchanged. `pipeline.mec.ratemaps.grid_images` turns either
kind back into (unit, y, x) images for cell-type scores.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from pipeline.mec.ratemaps import BinGrid
from pipeline.mec.trajectories import simulate_trajectories

log = logging.getLogger(__name__)

RATEMAP_SEED = 0        # trajectories of model rate maps (spec: fixed seeds, same for all models)

__all__ = ["accumulate_bins", "arena_grid", "bin_index", "bin_means",
           "model_rate_maps", "ratemap_store", "ratemaps_of_run"]


def arena_grid(assembly: xr.DataArray) -> BinGrid:
    """The bins of a MEC rate-map assembly (its attrs arena_width_cm, arena_height_cm,
    bin_size_cm), with the origin at the arena corner."""
    try:
        return BinGrid(float(assembly.attrs["arena_width_cm"]),
                       float(assembly.attrs["arena_height_cm"]),
                       float(assembly.attrs["bin_size_cm"]))
    except KeyError as err:
        raise ValueError(f"MEC assembly lacks attr {err.args[0]!r}; expected a rate-map "
                         f"assembly (pipeline.data.mec_openfield.rate_map_assembly)") from err


def bin_means(sums: torch.Tensor, counts: torch.Tensor) -> np.ndarray:
    """Mean per bin from accumulated sums (bin, unit) and counts (bin,); NaN where unvisited."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums.double().cpu().numpy() / counts.double().cpu().numpy()[:, None]
    out[counts.cpu().numpy() == 0] = np.nan
    return out


def accumulate_bins(bins: torch.Tensor, activity: torch.Tensor, n_bins: int,
                    sums: torch.Tensor | None = None) -> torch.Tensor:
    """Add each sample's activity (sample, unit) to its bin's sum (bin, unit), float64.

    One sparse (bin × sample) one-hot product for all units, in the activity's precision,
    added to float64 sums: the vectorised form of a per-unit binned mean (benchmarks/mec.py
    measures it against scipy's binned_statistic_2d unit by unit; a float64 `index_add_` was
    6x slower).
    """
    if sums is None:
        sums = torch.zeros(n_bins, activity.shape[1], device=activity.device,
                           dtype=torch.float64)
    n = bins.numel()
    with warnings.catch_warnings():      # torch warns that unchecked invariants are unchecked
        warnings.simplefilter("ignore", UserWarning)
        onehot = torch.sparse_coo_tensor(
            torch.stack([bins, torch.arange(n, device=bins.device)]),
            torch.ones(n, device=bins.device, dtype=activity.dtype), (n_bins, n),
            check_invariants=False)
    return sums.add_(torch.sparse.mm(onehot, activity))


def bin_index(position_m: torch.Tensor, grid: BinGrid) -> torch.Tensor:
    """Flat bin index of positions (…, 2) m in an arena centred on 0 (edges clipped in)."""
    n_y, n_x = grid.shape
    cm = position_m * 100.0 + torch.tensor([grid.width / 2, grid.height / 2],
                                           device=position_m.device)
    ix = torch.clamp(torch.floor(cm[..., 0] / grid.bin_size), 0, n_x - 1).long()
    iy = torch.clamp(torch.floor(cm[..., 1] / grid.bin_size), 0, n_y - 1).long()
    return iy * n_x + ix


@torch.no_grad()
def model_rate_maps(model, task, grid: BinGrid, *, n_batches: int = 100, batch_size: int = 200,
                    n_steps: int = 20, seed: int = RATEMAP_SEED, g_mask=None,
                    desc: str = "rate maps") -> dict[str, np.ndarray]:
    """Mean activation of every unit of every layer per bin (spec §3.2).

    Parameters
    ----------
    model : PathIntegrator
        In eval mode (`pipeline.mec.training.load_path_integrator`).
    task : PathIntegrationTask
        Gives the inputs (velocity, initial code) of each trajectory.
    grid : BinGrid
        The data's bins (cm); trajectories run in an arena of its size.
    n_batches, batch_size, n_steps, seed
        The trajectories (spec: 100, 200, 20, fixed).
    g_mask : Tensor, optional
        Knockout mask on g (`PathIntegrator.run`).

    Returns
    -------
    dict of str to ndarray (stimulus, unit)
        Layer → maps, float32, NaN where no step fell.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    sums, counts = {}, torch.zeros(grid.n_bins, device=device, dtype=torch.float64)
    for _ in tqdm(range(n_batches), desc=desc, unit="batch", disable=None):
        traj = simulate_trajectories(batch_size, n_steps, width=grid.width / 100,
                                     height=grid.height / 100, generator=generator).to(device)
        layers = model.run(*task.inputs(traj), g_mask=g_mask)
        bins = bin_index(traj.position, grid).reshape(-1)
        counts.index_add_(0, bins, torch.ones_like(bins, dtype=torch.float64))
        for name, act in layers.items():
            sums[name] = accumulate_bins(bins, act.reshape(bins.numel(), -1), grid.n_bins,
                                         sums.get(name))
    unvisited = int((counts == 0).sum())
    if unvisited:
        log.warning("%d of %d bins unvisited by %d x %d trajectories; their maps are NaN",
                    unvisited, grid.n_bins, n_batches, batch_size)
    return {name: bin_means(s, counts).astype(np.float32) for name, s in sums.items()}


def ratemap_store(maps_by_epoch: dict[int, dict[str, np.ndarray]], grid: BinGrid,
                  attrs: dict | None = None) -> xr.Dataset:
    """An activations-like Dataset: one var per layer, dims (epoch, stimulus, unit_{layer})
    (`pipeline.activations.unit_dim`: layers differ in width)."""
    from pipeline.activations import unit_dim       # here: it imports dask

    epochs = sorted(maps_by_epoch)
    layers = list(maps_by_epoch[epochs[0]])
    data = {name: (("epoch", "stimulus", unit_dim(name)),
                   np.stack([maps_by_epoch[e][name] for e in epochs]).astype(np.float32))
            for name in layers}
    return xr.Dataset(data, coords={"epoch": ("epoch", np.asarray(epochs, dtype=np.int64)),
                                    **grid.coords()},
                      attrs={"arena_width_cm": grid.width, "arena_height_cm": grid.height,
                             "bin_size_cm": grid.bin_size, **(attrs or {})})


def ratemaps_of_run(model_dir, neural, *, n_batches: int = 100, batch_size: int = 200,
                    n_steps: int = 20, epochs="ends", device="cpu") -> xr.Dataset:
    """The rate-map store of a trained path integrator on a MEC assembly's bins.

    Parameters
    ----------
    model_dir : path-like
        results/mec/models/{model} (`pipeline.mec.training.train_path_integrator`).
    neural : xarray.DataArray or path-like
        The rate-map assembly (its arena and bins; `arena_grid`).
    n_batches, batch_size, n_steps : int
        Trajectories (config ``mec.ratemaps``; spec 100, 200, 20).
    epochs : "ends", "final", "all" or list of int
        Checkpoints to map ("ends": untrained and trained).
    device : str or torch.device

    Returns
    -------
    xarray.Dataset
        `ratemap_store` of the epochs; attrs model, n_trajectories.
    """
    from pipeline.checkpoints import run_epochs
    from pipeline.data.assembly import read_assembly
    from pipeline.mec.training import load_path_integrator

    assembly = read_assembly(neural) if not isinstance(neural, xr.DataArray) else neural
    grid = arena_grid(assembly)
    stored = run_epochs(model_dir)
    keys = list(stored)
    if isinstance(epochs, str):
        choices = {"all": keys, "final": keys[-1:], "ends": sorted({keys[0], keys[-1]})}
        if epochs not in choices:
            raise ValueError(f"mec.ratemaps.epochs must be 'all', 'final', 'ends' or a list of "
                             f"ints; got {epochs!r}")
        epochs = choices[epochs]
    missing = sorted(set(epochs) - set(keys))
    if missing:
        raise ValueError(f"{model_dir}: epochs {missing} are not stored (epochs {keys})")
    maps, name = {}, None
    for epoch in epochs:
        model, task, header = load_path_integrator(stored[epoch], device)
        name = header["model_name"]
        maps[epoch] = model_rate_maps(model, task, grid, n_batches=n_batches,
                                      batch_size=batch_size, n_steps=n_steps,
                                      desc=f"rate maps {name} epoch {epoch}")
    log.info("%s: rate maps of epochs %s on %d x %d bins of %g cm", name, list(epochs),
             *grid.shape, grid.bin_size)
    return ratemap_store(maps, grid, {"model": name, "n_trajectories": n_batches * batch_size})
