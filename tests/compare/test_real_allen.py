"""Real recordings: an untrained CNN's predictivity of 212 Allen VISp cells (two-photon, natural scenes).

The data (`../shared/data/real/allen_natural_scenes_psailamul/`, see its README) hold the
trial-mean ΔF/F of each cell for the 118 natural scenes, not single trials, so there are no
trial split-halves: the engine reports raw r (``r_full``) and marks the rows
``noise_corrected = False``. Skipped where the shared folder is absent (users' clones).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from sklearn.linear_model import Ridge

from pipeline.compare.aggregate import best_layer, median_over_units
from pipeline.compare.consistency import predictivity
from pipeline.compare.mappings import pearson
from pipeline.compare.splits import stimulus_splits
from pipeline.models import build_model, layer_outputs

DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real" / "allen_natural_scenes_psailamul"
        / "allen_ns_ordered_derived.npz")


@pytest.fixture(scope="module")
def allen():
    """The NeuralAssembly (scene, 1 trial, cell) and the 31×31 scenes, read in place."""
    if not DATA.exists():
        pytest.skip(f"{DATA} not available (shared data are not part of the repository)")
    with np.load(DATA) as npz:
        images, responses = npz["images"], npz["mean_dff"].astype(np.float64)
    n_scenes, n_cells = responses.shape
    assembly = xr.DataArray(
        responses[:, None, :], dims=("stimulus", "trial", "neuroid"), name="response",
        coords={"stimulus_id": ("stimulus", [f"scene{i:03d}" for i in range(n_scenes)]),
                "neuroid_id": ("neuroid", [f"cell{j:03d}" for j in range(n_cells)]),
                "animal": ("neuroid", ["511510667"] * n_cells), "area": ("neuroid", ["VISp"] * n_cells),
                "reliability": ("neuroid", np.full(n_cells, np.nan))})
    return assembly, images


@pytest.fixture(scope="module")
def untrained_cnn_activations(allen):
    """Every layer of an untrained (seeded) ventral-stream CNN on the scenes, upsampled to 32 px."""
    assembly, images = allen
    torch.manual_seed(0)
    model = build_model("ventral_cnn", 10, 32).eval()
    x = torch.from_numpy(images).float()[:, None] / 255.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    with torch.no_grad():
        outputs = layer_outputs(model, (x - x.mean()) / x.std())
    return xr.Dataset(
        {name: (("epoch", "stimulus", f"unit_{name}"), out.flatten(1).numpy()[None])
         for name, out in outputs.items()},
        coords={"epoch": [0], "stimulus_id": ("stimulus", assembly["stimulus_id"].values)})


def test_untrained_cnn_predicts_every_allen_cell_with_finite_raw_r(allen, untrained_cnn_activations):
    assembly, _ = allen
    scores = predictivity(untrained_cnn_activations, assembly, mappings=("ridge", "pls"), n_splits=3,
                          n_components=10, seed=0)
    test = scores[scores["stage"] == "test"]
    assert not scores["noise_corrected"].any()                 # trial means only: raw r
    assert np.isfinite(test["r_full"]).all()
    assert set(test["neuroid_id"]) == set(assembly["neuroid_id"].values)
    assert test[["r", "r_mapping", "r_target", "score", "score_full", "score_thesis"]].isna().all().all()
    summary = median_over_units(scores)
    assert np.isfinite(summary["r_full"]).all() and (summary["n_units"] == 212).all()
    chosen = best_layer(scores, metric="r_full")
    assert set(chosen["mapping"]) == {"ridge", "pls"} and np.isfinite(chosen["r_full"]).all()
    # Peer check on the real data: the engine's ridge equals scikit-learn's on one split.
    train, test_idx = stimulus_splits(118, 3, 0.5, 0)[2]
    X = untrained_cnn_activations["area2"].values[0].astype(np.float64)
    Y = assembly.values[:, 0]
    expected = pearson(Ridge(1.0).fit(X[train], Y[train]).predict(X[test_idx]), Y[test_idx], axis=0)
    rows = test[(test["mapping"] == "ridge") & (test["layer"] == "area2") & (test["split"] == 2)]
    np.testing.assert_allclose(rows.set_index("neuroid_id").loc[assembly["neuroid_id"].values, "r_full"],
                               expected, atol=1e-5)
