"""Probe-set RDM figure: areas and layers, recurrent layers at their last time step."""

import numpy as np
import xarray as xr

from pipeline.compare.rsa import rdm
from pipeline.data.assembly import write_assembly
from pipeline.figures.rdms import category_order, plot_rdms
from pipeline.io import write_zarr

N = 12


def write_inputs(root, layers):
    rng = np.random.default_rng(0)
    ids = [f"s{i:02d}" for i in range(N)]
    classes = [f"c{i % 3}" for i in range(N)]
    stimuli = xr.Dataset(
        {"image": (("stimulus", "y", "x", "channel"), np.zeros((N, 4, 4, 3), np.uint8))},
        coords={"stimulus_id": ("stimulus", ids), "subordinate": ("stimulus", classes),
                "basic": ("stimulus", classes), "superordinate": ("stimulus", ["a"] * N)})
    write_zarr(stimuli, root / "stimuli.zarr")
    neural = xr.DataArray(
        rng.standard_normal((N, 4, 6)), dims=("stimulus", "trial", "neuroid"), name="response",
        coords={"stimulus_id": ("stimulus", ids), "neuroid_id": ("neuroid", [f"n{i}" for i in range(6)]),
                "animal": ("neuroid", ["m0"] * 3 + ["m1"] * 3), "area": ("neuroid", ["VISp"] * 6),
                "reliability": ("neuroid", np.full(6, 0.5))})
    write_assembly(neural, root / "neural.zarr")
    write_zarr(layers.assign_coords(stimulus_id=("stimulus", ids)), root / "activations.zarr")


def test_category_order_groups_classes(tmp_path):
    write_inputs(tmp_path, xr.Dataset())
    order = category_order(tmp_path / "stimuli.zarr")
    assert [int(s[1:]) % 3 for s in order] == [0] * 4 + [1] * 4 + [2] * 4


def test_a_set_without_labels_keeps_its_order(tmp_path):
    ids = [f"scene_{i:03d}" for i in (2, 0, 1)]
    scenes = xr.Dataset({"image": (("stimulus", "y", "x", "channel"), np.zeros((3, 4, 4, 3), np.uint8))},
                        coords={"stimulus_id": ("stimulus", ids)})
    write_zarr(scenes, tmp_path / "scenes.zarr")
    assert list(category_order(tmp_path / "scenes.zarr")) == ids


def test_recurrent_layers_are_drawn_at_their_last_step(tmp_path):
    rng = np.random.default_rng(1)
    layers = xr.Dataset(
        {"area1": (("epoch", "time", "stimulus", "unit_area1"), rng.standard_normal((2, 3, N, 5))),
         "readout": (("epoch", "time", "stimulus", "unit_readout"), rng.standard_normal((2, 3, N, 2)))},
        coords={"epoch": [0, 1], "time": [0, 1, 2]})
    write_inputs(tmp_path, layers)
    drawn = plot_rdms(tmp_path / "neural.zarr", tmp_path / "activations.zarr", tmp_path / "stimuli.zarr",
                      tmp_path / "rdms.png", dpi=40)
    assert (tmp_path / "rdms.png").read_bytes()[:4] == b"\x89PNG"
    assert set(drawn) == {"VISp", "area1 (epoch 1, t2)", "readout (epoch 1, t2)"}
    order = [int(s[1:]) for s in category_order(tmp_path / "stimuli.zarr")]
    last_step = layers["area1"].values[-1, -1][order]                 # final epoch, last time step
    np.testing.assert_allclose(drawn["area1 (epoch 1, t2)"], rdm(last_step), atol=1e-12)
