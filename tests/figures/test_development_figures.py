"""Development figures: the RDM strip and GIF (one frame per epoch), hierarchy curves and brain
similarity over training, drawn from the tables of pipeline.compare.development."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from pipeline.compare.development import development
from pipeline.figures.development import (
    last_conv_layer,
    plot_development_brain,
    plot_development_hierarchy,
    plot_development_rdms,
)
from pipeline.figures.rdms import category_order
from tests.compare.conftest import simulate_animals
from tests.stimulus_sets import write_stimuli

MODELS = ["ventral_cnn-supervised-bp-s0", "ventral_cnn-supervised-fa-s0"]
EPOCHS = [0, 1, 2, 4]
N = 16
CLASSES = np.arange(N) % 4                      # basic class; superordinate = class % 2


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Per model the four development tables (Parquet), the stimulus set and the assembly."""
    root = tmp_path_factory.mktemp("development_figures")
    write_stimuli(root / "probe.zarr", N, 0, "probe", labels=CLASSES)
    assembly, _ = simulate_animals(n_animals=3, units_per_animal=6, n_stimuli=N, n_trials=4,
                                   areas=("VISp", "VISl"), seed=1)
    assembly = assembly.assign_coords(stimulus_id=("stimulus", [f"probe{i:03d}" for i in range(N)]))
    labels = {"superordinate": CLASSES % 2, "basic": CLASSES, "subordinate": CLASSES}
    paths = {"rdms": [], "trajectory": [], "halftimes": [], "brain": []}
    for k, model in enumerate(MODELS):
        rng = np.random.default_rng(k)
        structure = np.eye(4)[CLASSES] @ rng.standard_normal((4, 30))
        data = {layer: np.stack([rng.standard_normal((N, 30)) + e * scale * structure for e in EPOCHS])
                for layer, scale in (("area4", 1.0), ("readout", 0.3))}
        activations = xr.Dataset({layer: (("epoch", "stimulus", "unit"), values) for layer, values in data.items()},
                                 coords={"epoch": EPOCHS, "stimulus_id": ("stimulus", [f"probe{i:03d}" for i in range(N)])})
        result = development(activations, labels, {"virtual": assembly}, n_boot=20)
        arch, objective, rule, seed = model.split("-")
        for name in paths:
            table = getattr(result, name).assign(model=model, arch=arch, objective=objective, rule=rule,
                                                 seed=int(seed[1:]), stimulus_set="probe")
            table["layer_kind"] = table["layer"].map({"area4": "conv", "readout": "dense"})
            paths[name].append(root / f"{name}_{model}.parquet")
            table.to_parquet(paths[name][-1])
    return root, paths


def test_rdm_gif_has_one_frame_per_epoch_and_the_strip_is_in_category_order(tables):
    root, paths = tables
    drawn = plot_development_rdms(paths["rdms"], root / "rdms.png", stimuli=root / "probe.zarr",
                                  gif=root / "rdms.gif", dpi=40)
    assert (root / "rdms.png").read_bytes()[:4] == b"\x89PNG"
    with Image.open(root / "rdms.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == len(EPOCHS)
    layer, epochs, stack = drawn[MODELS[1]]
    assert (layer, epochs, stack.shape) == ("area4", EPOCHS, (len(EPOCHS), N, N))
    order = list(category_order(root / "probe.zarr"))
    table = pd.read_parquet(paths["rdms"][1]).query("layer == 'area4' and epoch == 2").iloc[7]
    a, b = order.index(table["stimulus_a"]), order.index(table["stimulus_b"])
    assert stack[2, a, b] == stack[2, b, a] == pytest.approx(table["dissimilarity"])
    assert np.isnan(np.diagonal(stack, axis1=1, axis2=2)).all()
    # category order: the basic classes form consecutive blocks
    classes = np.asarray(CLASSES)[[int(s[-3:]) for s in order]]
    assert (np.diff(classes) != 0).sum() == 3


def test_last_conv_layer_falls_back_to_the_last_layer_before_the_readout():
    table = pd.DataFrame({"layer": ["conv1", "conv2", "fc1", "readout"], "layer_kind": ["conv", "conv", "dense", "dense"]})
    assert last_conv_layer(table) == "conv2"
    assert last_conv_layer(table.assign(layer_kind="dense")) == "fc1"


def test_hierarchy_curves_show_the_last_conv_layer_of_every_model(tables):
    root, paths = tables
    drawn = plot_development_hierarchy(paths["trajectory"] + paths["halftimes"], root / "hierarchy.png", dpi=40)
    assert (root / "hierarchy.png").stat().st_size > 1_000
    assert set(drawn["layer"]) == {"area4"} and set(drawn["model"]) == set(MODELS)
    assert set(drawn["reference"]) == {"superordinate", "basic", "subordinate", "final"}
    assert len(drawn) == len(MODELS) * len(EPOCHS) * 4


def test_brain_figure_follows_the_layer_most_similar_at_the_final_epoch(tables):
    root, paths = tables
    drawn = plot_development_brain(paths["brain"], root / "brain.png", dpi=40)
    assert (root / "brain.png").stat().st_size > 1_000
    brain = pd.concat([pd.read_parquet(p) for p in paths["brain"]])
    for (model, area), rows in drawn.groupby(["model", "area"]):
        final = brain[(brain["model"] == model) & (brain["area"] == area) & (brain["epoch"] == EPOCHS[-1])]
        assert set(rows["layer"]) == {final.loc[final["similarity"].idxmax(), "layer"]}
        assert sorted(rows["epoch"]) == EPOCHS
    with pytest.raises(ValueError, match="brain tables are empty"):
        plot_development_brain([pd.read_parquet(paths["brain"][0]).iloc[:0]], root / "empty.png", dpi=40)
