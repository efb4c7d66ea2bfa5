"""MEC figures draw from small tables whose answers are known: the gallery order, the KS
distances (scipy), the best layer, the knockout lines and the decoding-predictivity points."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from pipeline.cli import main as cli
from pipeline.compare.consistency import interanimal
from pipeline.data.assembly import write_assembly
from pipeline.figures.mec import (plot_mec_decoding_vs_predictivity, plot_mec_knockouts,
                                  plot_mec_predictivity, plot_mec_ratemaps,
                                  plot_mec_score_distributions)
from pipeline.io import write_parquet, write_zarr
from pipeline.mec.model_ratemaps import ratemap_store
from pipeline.mec.ratemaps import BinGrid
from pipeline.mec.scores import assembly_scores, cell_scores
from tests.mec.test_scores import bin_centres, border_field, grid_field

GRID = BinGrid(100, 100, 5.0)


def _fields(rng, n):
    """n maps (stimulus, n) at the bin centres: alternately grid and border-like cells."""
    xy = bin_centres()
    cols = []
    for k in range(n):
        if k % 3 == 2:
            cols.append(border_field(np.stack([xy[:, (k // 3) % 2], xy[:, 1 - (k // 3) % 2]], 1)))
        else:
            cols.append(grid_field(xy, rng.uniform(30, 50), rng.uniform(0, 1),
                                   rng.uniform(0, 40, 2)))
    return np.stack(cols, axis=1)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("mec_figures")
    rng = np.random.default_rng(0)
    truth = _fields(rng, 12)
    trials = truth[:, None, :] + rng.normal(0, 0.5, (400, 2, 12))
    coords = GRID.coords()
    assembly = xr.DataArray(trials, dims=("stimulus", "trial", "neuroid"), coords={
        "stimulus_id": coords["stimulus_id"], "x": coords["x"], "y": coords["y"],
        "neuroid_id": ("neuroid", [f"n{k}" for k in range(12)]),
        "animal": ("neuroid", np.repeat(["a", "b", "c"], 4)),
        "area": ("neuroid", ["MEC"] * 12), "reliability": ("neuroid", np.ones(12))},
        attrs={"arena_width_cm": 100.0, "arena_height_cm": 100.0, "bin_size_cm": 5.0})
    assembly = assembly.isel(stimulus=np.arange(400) != 7)          # one dropped bin
    write_assembly(assembly, root / "neural.zarr")
    model = _fields(rng, 9)
    store = ratemap_store({0: {"g": rng.normal(size=(400, 9))}, 5: {"g": model}}, GRID)
    write_zarr(store, root / "ratemaps.zarr")
    data_scores = assembly_scores(assembly)
    write_parquet(data_scores, root / "data_scores.parquet")
    model_scores = []
    for epoch in (0, 5):
        maps = store["g"].sel(epoch=epoch).values.T.reshape(9, 20, 20)
        model_scores.append(cell_scores(maps).assign(epoch=epoch, layer="g", model="m1"))
    write_parquet(pd.concat(model_scores), root / "m1_scores.parquet")
    ia = interanimal(assembly, mappings=("ridge",), n_halves=1, n_splits=3, train_frac=0.2)
    write_parquet(ia, root / "interanimal.parquet")
    paths = []
    for name, shift in (("m1", 0.0), ("m2", -0.3)):
        frames = [ia.assign(model=name, layer=layer, epoch=epoch,
                            score=ia["score"] + shift + bump - (0.5 if epoch == 0 else 0))
                  for layer, bump in (("pre_g", -0.1), ("g", 0.0)) for epoch in (0, 5)]
        write_parquet(pd.concat(frames, ignore_index=True), root / f"{name}_pred.parquet")
        paths.append(root / f"{name}_pred.parquet")
    for name, error in (("m1", 5.0), ("m2", 20.0)):
        write_parquet(pd.DataFrame({"model": name, "epoch": [0, 5], "error_cm": [50.0, error]}),
                      root / f"{name}_decoding.parquet")
    rows = [{"model": "m1", "score_type": "grid_score", "threshold": t, "kind": "cell_type",
             "draw": -1, "n_removed": n, "fraction_removed": n / 100, "error_cm": 5.0,
             "relative_degradation": 0.01 * n / 10} for t, n in ((0.3, 20), (0.6, 10))]
    rows += [{"model": "m1", "score_type": "grid_score", "threshold": t, "kind": "random",
              "draw": d, "n_removed": n, "fraction_removed": n / 100, "error_cm": 5.0,
              "relative_degradation": 0.02 + 0.01 * d} for t, n in ((0.3, 20), (0.6, 10))
             for d in range(3)]
    rows.append({"model": "m1", "score_type": "grid_score", "threshold": np.nan,
                 "kind": "intact", "draw": -1, "n_removed": 0, "fraction_removed": 0.0,
                 "error_cm": 5.0, "relative_degradation": 0.0})
    write_parquet(pd.DataFrame(rows), root / "knockouts.parquet")
    return root, assembly, data_scores


def test_ratemap_gallery_is_sorted_by_grid_score(tables, tmp_path):
    root, _, _ = tables
    drawn = plot_mec_ratemaps(root / "neural.zarr", root / "ratemaps.zarr",
                              root / "data_scores.parquet", root / "m1_scores.parquet",
                              tmp_path / "gallery.png", n_units=5)
    assert (tmp_path / "gallery.png").stat().st_size > 0
    for source in ("data", "model"):
        scores = drawn[drawn.source == source].grid_score.to_numpy()
        assert len(scores) == 5 and (np.diff(scores) <= 0).all()
    all_data = pd.read_parquet(root / "data_scores.parquet").grid_score
    assert drawn[drawn.source == "data"].grid_score.iloc[0] == pytest.approx(all_data.max())


def test_score_distributions_report_scipy_ks(tables, tmp_path):
    root, _, data_scores = tables
    ks = plot_mec_score_distributions(root / "data_scores.parquet",
                                      [root / "m1_scores.parquet"], tmp_path / "ks.png")
    model = pd.read_parquet(root / "m1_scores.parquet").query("epoch == 5")
    for score in ("grid_score", "border_score"):
        expected = stats.ks_2samp(model[score].dropna(), data_scores[score].dropna()).statistic
        row = ks[ks.score == score]
        assert len(row) == 1 and row.epoch.iloc[0] == 5
        assert row.ks_distance.iloc[0] == pytest.approx(expected)


def test_predictivity_takes_the_best_layer_of_the_last_epoch(tables, tmp_path):
    root, _, _ = tables
    bars = plot_mec_predictivity(root / "interanimal.parquet",
                                 [root / "m1_pred.parquet", root / "m2_pred.parquet"],
                                 tmp_path / "pred.png")
    assert set(bars.model) == {"m1", "m2"} and set(bars.layer) == {"g"}
    assert set(bars.epoch) == {5}
    m1 = float(bars[bars.model == "m1"].score.iloc[0])
    m2 = float(bars[bars.model == "m2"].score.iloc[0])
    assert m1 - m2 == pytest.approx(0.3, abs=1e-6)


def test_knockout_lines(tables, tmp_path):
    root, _, _ = tables
    lines = plot_mec_knockouts([root / "knockouts.parquet"], tmp_path / "ko.png")
    random = lines[lines.kind == "random"]
    np.testing.assert_allclose(random["mean"], 0.03)
    np.testing.assert_allclose(random["sd"], 0.01)
    assert "intact" not in set(lines.kind)
    assert sorted(lines[lines.kind == "cell_type"]["mean"]) == pytest.approx([0.01, 0.02])


def test_decoding_vs_predictivity_through_the_cli(tables, tmp_path):
    root, _, _ = tables
    out = tmp_path / "dvp.png"
    # Tables in any order: told apart by their columns.
    assert cli(["plot_mec_decoding_vs_predictivity", str(root / "m1_pred.parquet"),
                str(root / "m2_decoding.parquet"), str(root / "m1_decoding.parquet"),
                str(root / "m2_pred.parquet"), "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    points = plot_mec_decoding_vs_predictivity(
        [root / "m1_decoding.parquet", root / "m2_decoding.parquet", root / "m1_pred.parquet",
         root / "m2_pred.parquet"], tmp_path / "dvp2.png")
    assert dict(zip(points.model, points.error_cm)) == {"m1": 5.0, "m2": 20.0}
    with pytest.raises(ValueError, match="decoding and predictivity"):
        plot_mec_decoding_vs_predictivity([root / "m1_pred.parquet"], tmp_path / "x.png")
