"""Model rate maps against scipy's binned statistic, on a model whose units are known functions
of position; the store is what the consistency engine reads; and a "model" made of the virtual
animals' own cells scores about the inter-animal ceiling."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from pipeline.mec.model_ratemaps import model_rate_maps, ratemap_store
from pipeline.mec.ratemaps import BinGrid, grid_images
from pipeline.mec.trajectories import simulate_trajectories


class ExactIntegrator(torch.nn.Module):
    """Integrates velocity exactly; g units are cos/sin plane waves of the position."""

    def __init__(self, dt=0.02):
        super().__init__()
        self.k = torch.nn.Parameter(torch.randn(7, 2, generator=torch.Generator().manual_seed(0)) * 8)
        self.dt = dt

    def run(self, velocity, init, g_mask=None):
        pos = init[:, None] + torch.cumsum(velocity * self.dt, dim=1)
        g = torch.cos(pos @ self.k.T)
        return {"g": g if g_mask is None else g * g_mask, "dc": pos}


class PositionTask:
    def inputs(self, traj):
        return traj.velocity, traj.start


def test_maps_equal_scipy_binned_statistic_on_the_same_paths():
    grid = BinGrid(80.0, 60.0, 5.0)
    model = ExactIntegrator()
    maps = model_rate_maps(model, PositionTask(), grid, n_batches=3, batch_size=50, n_steps=20,
                           seed=4)
    gen = torch.Generator().manual_seed(4)
    xs, gs = [], []
    for _ in range(3):
        traj = simulate_trajectories(50, 20, width=0.8, height=0.6, generator=gen)
        layers = model.run(*PositionTask().inputs(traj))
        xs.append(traj.position.reshape(-1, 2).double().numpy() * 100 + [40.0, 30.0])
        gs.append(layers["g"].reshape(-1, 7).detach().double().numpy())
    # positions on a wall sit 1e-7 m outside it after float32 rounding: clip them in, as
    # the maps do, or scipy would drop them
    xy, g = np.clip(np.concatenate(xs), 0, [80.0, 60.0]), np.concatenate(gs)
    ref = stats.binned_statistic_2d(xy[:, 1], xy[:, 0], g.T, "mean",
                                    bins=[np.arange(0, 61, 5.0), np.arange(0, 81, 5.0)]).statistic
    ours = maps["g"].T.reshape(7, 12, 16)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5, equal_nan=True)
    # dc integrates the velocity (exact up to the walls' clipping): its map is the mean
    # position in each bin, so it lies in (or, by clipping, next to) that bin
    cx = maps["dc"][:, 0] * 100 + 40
    finite = np.isfinite(cx)
    assert finite.mean() > 0.9
    centres = np.tile(np.arange(16) * 5 + 2.5, 12)
    assert np.median(np.abs(cx[finite] - centres[finite])) < 2.5


def test_store_round_trips_to_grid_images():
    grid = BinGrid(20.0, 15.0, 5.0)
    maps = np.arange(12 * 2, dtype=np.float32).reshape(12, 2)
    store = ratemap_store({0: {"g": maps}, 3: {"g": maps + 1}}, grid)
    assert store["g"].dims == ("epoch", "stimulus", "unit_g") and list(store.epoch.values) == [0, 3]
    images = grid_images(store["g"].sel(epoch=0), shape=(3, 4))
    assert images.shape == (2, 3, 4)
    np.testing.assert_array_equal(images[1].ravel(), maps[:, 1])
    # a dropped bin comes back as NaN
    part = store["g"].sel(epoch=0).isel(stimulus=slice(1, None))
    assert np.isnan(grid_images(part, shape=(3, 4))[:, 0, 0]).all()
    with pytest.raises(ValueError, match="bin id"):
        grid_images(np.zeros((1, 1)), ["a"], (1, 1))


def test_generator_cells_as_a_model_score_about_the_ceiling(tmp_path):
    """Joint with the virtual MEC animals (pipeline.data.synthetic_mec): a rate-map store whose g
    layer is the generator's own noise-free maps (every animal's cells), compared with the
    virtual animals by the unchanged engine, scores about the inter-animal ceiling of the same
    mapping (noise-corrected ridge, 20 % of the bins to fit)."""
    from pipeline.compare.consistency import interanimal, predictivity
    from pipeline.config import validate_config
    from pipeline.data.synthetic_mec import assemble_synthetic_mec, read_truth, synthesize_mec

    schema = Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"
    block = validate_config({"datasets": {"synthetic_mec": {"simulate": {"cells_per_animal": 12}}}},
                            schema)["datasets"]["synthetic_mec"]
    synthesize_mec(tmp_path, **block["simulate"])
    assembly = assemble_synthetic_mec(tmp_path, **block["assemble"]).load()
    truth = read_truth(tmp_path)
    grid = BinGrid(float(assembly.attrs["arena_width_cm"]), float(assembly.attrs["arena_height_cm"]),
                   float(assembly.attrs["bin_size_cm"]))
    # the truth's maps on the full grid (NaN where an animal never went); the engine reads the
    # assembly's bins, which every session visited
    rates = truth["rate_map"].set_index(stimulus="stimulus_id").sel(
        stimulus=grid.coords()["stimulus_id"][1]).transpose("stimulus", "neuroid").values
    kept = np.isin(grid.coords()["stimulus_id"][1], assembly["stimulus_id"].values)
    assert np.isfinite(rates[kept]).all()
    store = ratemap_store({0: {"g": rates.astype(np.float32)}}, grid)
    settings = dict(mappings=["ridge"], n_halves=2, n_splits=5, train_frac=0.2)
    ceiling = interanimal(assembly, **settings)["score"].median()
    model = predictivity(store, assembly, epochs="all", **settings)
    model = model.query("stage == 'test'")["score"].median()
    print(f"inter-animal ceiling {ceiling:.3f}, generator cells {model:.3f}")
    assert ceiling > 0.8
    assert model == pytest.approx(ceiling, abs=0.05)
