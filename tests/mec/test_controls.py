"""Control models: place-cell maps are the DoG code on the bins, NMF factors are non-negative and
reconstruct P better with rank, the velocity control has its three units (the controls' names:
tests/models/test_names.py)."""

import numpy as np
import pytest
import torch

from pipeline.mec.controls import control_rate_maps, place_cell_maps
from pipeline.mec.placecells import PlaceCells
from pipeline.mec.ratemaps import BinGrid

GRID = BinGrid(50.0, 50.0, 5.0)
CELLS = dict(n_place_cells=64, sigma=0.12, surround=2.0, place_cell_seed=0)


def test_place_cell_maps_are_the_code_averaged_in_each_bin():
    P = place_cell_maps(GRID, n_cells=64)
    cells = PlaceCells(64, width=0.5, seed=0)
    centre = torch.tensor([[-0.225, -0.225]])           # bin x0_y0's centre, metres
    assert P.shape == (100, 64)
    np.testing.assert_allclose(P[0], cells.activation(centre)[0].numpy(), atol=2e-3)
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-5)


def test_nmf_controls_reconstruct_better_with_rank():
    errors = {}
    for name in ("nmf_r3", "nmf_r20", "nmf_full"):
        store = control_rate_maps(name, GRID, **CELLS, nmf_max_iter=300)
        assert (store[name].values >= 0).all() and store[name].dims == ("epoch", "stimulus", f"unit_{name}")
        errors[name] = store.attrs["nmf_reconstruction_err"]
    assert errors["nmf_r3"] > errors["nmf_r20"] > errors["nmf_full"]
    with pytest.raises(ValueError, match="rank"):
        control_rate_maps("nmf_r1000", GRID, **CELLS)


def test_velocity_control():
    store = control_rate_maps("velocity", GRID, **CELLS, n_batches=3, batch_size=50)
    assert store["velocity"].shape == (1, 100, 3)
    speed = store["velocity"].values[0, :, 2]
    assert np.nanmean(speed) > 0.3                         # m/s, slower near the walls
    with pytest.raises(ValueError, match="unknown MEC control"):
        control_rate_maps("pca", GRID, **CELLS)
