"""Control models of MEC (spec §3.5), as rate-map stores on the data's bins.

Each control is a "model" with one layer whose units have a map on the data's 5-cm bins,
stored like a path integrator's maps (`pipeline.mec.model_ratemaps.ratemap_store`, epoch 0),
so the same predictivity, score and figure rules read it. Untrained networks are not listed
here: they are epoch 0 of every trained model (``mec.ratemaps.epochs: ends``).

- ``placecells``: the DoG place-cell matrix P itself (Np units; "Place Cell Ground Truth"),
  each unit's map its code averaged over a 5 × 5 lattice inside each bin;
- ``nmf_r{k}`` / ``nmf_full``: non-negative factors of P (`sklearn.decomposition.NMF`,
  P ≈ W H, units = the k columns of W); the lowest rank is the "Grid Cell" model (Sorscher et
  al.; the spec's rank is stripped: ours is listed in configs), full = min(bins, Np);
- ``velocity``: the velocity input itself (v_x, v_y, speed), mean per bin over the trajectories
  the networks' maps are made from ("velocity-linear": a linear map from it is the model).

Choices: the control's place cells are drawn in the data's arena (centres uniform in it, seed
and widths of ``mec.train``), so no centre falls outside the recorded box.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import torch

from pipeline.mec.model_ratemaps import RATEMAP_SEED, bin_index, bin_means, ratemap_store
from pipeline.mec.placecells import PlaceCells
from pipeline.mec.ratemaps import BinGrid
from pipeline.mec.trajectories import simulate_trajectories

log = logging.getLogger(__name__)

_NMF = re.compile(r"^nmf_(r(\d+)|full)$")
SUBSAMPLES = 5            # lattice points per bin side for the place-cell maps

__all__ = ["control_rate_maps", "place_cell_maps"]


def place_cell_maps(grid: BinGrid, *, n_cells=512, sigma=0.12, surround=2.0, seed=0) -> np.ndarray:
    """P (bin, cell): DoG codes averaged over a lattice inside each bin, centres in the arena."""
    cells = PlaceCells(n_cells, width=grid.width / 100, height=grid.height / 100, sigma=sigma,
                       surround=surround, seed=seed)
    n_y, n_x = grid.shape
    offsets = (np.arange(SUBSAMPLES) + 0.5) / SUBSAMPLES * grid.bin_size
    x = (np.arange(n_x)[:, None] * grid.bin_size + offsets).ravel() - grid.width / 2
    y = (np.arange(n_y)[:, None] * grid.bin_size + offsets).ravel() - grid.height / 2
    yy, xx = np.meshgrid(y, x, indexing="ij")
    xy = torch.as_tensor(np.stack([xx, yy], -1) / 100.0, dtype=torch.float32)
    code = cells.activation(xy).numpy()                # (n_y·S, n_x·S, cell)
    code = code.reshape(n_y, SUBSAMPLES, n_x, SUBSAMPLES, -1).mean(axis=(1, 3))
    return code.reshape(n_y * n_x, -1).astype(np.float64)


def _velocity_maps(grid: BinGrid, *, n_batches, batch_size, n_steps, seed) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    sums = torch.zeros(grid.n_bins, 3, dtype=torch.float64)
    counts = torch.zeros(grid.n_bins, dtype=torch.float64)
    for _ in range(n_batches):
        traj = simulate_trajectories(batch_size, n_steps, width=grid.width / 100,
                                     height=grid.height / 100, generator=generator)
        bins = bin_index(traj.position, grid).reshape(-1)
        v = torch.cat([traj.velocity, traj.speed[..., None]], dim=-1).reshape(-1, 3).double()
        sums.index_add_(0, bins, v)
        counts.index_add_(0, bins, torch.ones_like(bins, dtype=torch.float64))
    return bin_means(sums, counts)


def control_rate_maps(name: str, grid: BinGrid, *, n_place_cells=512, sigma=0.12,
                      surround=2.0, place_cell_seed=0, n_batches=100, batch_size=200,
                      n_steps=20, nmf_max_iter=500):
    """The rate-map store of one control (module docstring), one layer named after it.

    Parameters
    ----------
    name : str
        ``placecells``, ``nmf_r{k}``, ``nmf_full`` or ``velocity``.
    grid : BinGrid
        The data's bins.
    n_place_cells, sigma, surround, place_cell_seed
        The place cells (``mec.train``).
    n_batches, batch_size, n_steps
        Trajectories of the velocity control (``mec.ratemaps``; seed as the networks').
    nmf_max_iter : int
        Iterations of the NMF solver.

    Returns
    -------
    xarray.Dataset
        As `ratemap_store`, epoch 0, variable `name`; attrs record the control's settings.
    """
    attrs = {"control": name}
    if name == "velocity":
        maps = _velocity_maps(grid, n_batches=n_batches, batch_size=batch_size, n_steps=n_steps,
                              seed=RATEMAP_SEED)
    else:
        P = place_cell_maps(grid, n_cells=n_place_cells, sigma=sigma, surround=surround,
                            seed=place_cell_seed)
        if name == "placecells":
            maps = P
        else:
            match = _NMF.match(name)
            if match is None:
                raise ValueError(f"unknown MEC control {name!r}; known: placecells, nmf_r{{k}}, "
                                 f"nmf_full, velocity")
            full = min(P.shape)
            rank = full if match[1] == "full" else int(match[2])
            if not 1 <= rank <= full:
                raise ValueError(f"control {name!r}: NMF rank must be in 1..{full} (bins x "
                                 f"place cells {P.shape}); got {rank}")
            from sklearn.decomposition import NMF     # here: the DAG imports this module

            nmf = NMF(n_components=rank, init="nndsvda", max_iter=nmf_max_iter, random_state=0)
            maps = nmf.fit_transform(P)
            attrs.update(nmf_rank=rank, nmf_reconstruction_err=float(nmf.reconstruction_err_))
            log.info("%s: NMF rank %d of P %s, reconstruction error %.4g (|P| %.4g)", name, rank,
                     P.shape, nmf.reconstruction_err_, np.linalg.norm(P))
    # a unit constant over bins carries nothing and has no correlation: dropped
    keep = np.nanstd(maps, axis=0) > 0
    if not keep.all():
        log.info("%s: %d constant units dropped", name, int((~keep).sum()))
    return ratemap_store({0: {name: maps[:, keep].astype(np.float32)}}, grid, attrs)
