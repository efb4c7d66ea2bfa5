"""Geometry figures: dimensionality over epochs per rule, probe accuracy per layer, rule × rule maps."""

import numpy as np
import pandas as pd
import pytest

from pipeline.figures.geometry import (
    geometry_summary,
    plot_geometry,
    plot_probe_accuracy,
    plot_rule_similarity,
    probe_summary,
)

MODELS = ["ventral_cnn-supervised-bp-s0", "ventral_cnn-supervised-bp-s1", "ventral_cnn-supervised-fa-s0"]
LAYERS = ["area1", "area2", "readout"]


def labels(model):
    arch, objective, rule, seed = model.split("-")
    return {"model": model, "arch": arch, "objective": objective, "rule": rule, "seed": int(seed[1:])}


@pytest.fixture
def tables(tmp_path):
    paths = []
    for k, model in enumerate(MODELS):
        rows, spectrum = [], []
        for epoch in (0, 1, 2):
            for depth, layer in enumerate(LAYERS):
                trained = epoch > 0
                rows.append({**labels(model), "stimulus_set": "shapes_probe", "layer": layer, "epoch": epoch,
                             "time": 0, "participation_ratio": 10.0 - depth - epoch + k, "variance": 0.9,
                             "n_components": 20 - depth - epoch, "probe_accuracy": 0.2 + 0.2 * depth * trained
                             + 0.1 * k, "probe_accuracy_sd": 0.05, "probe_chance": 0.125})
                ratio = np.geomspace(1, 0.01, 10)
                spectrum.append(pd.DataFrame({**labels(model), "layer": layer, "epoch": epoch, "time": 0,
                                              "component": np.arange(1, 11), "eigenvalue": ratio,
                                              "explained_variance_ratio": ratio / ratio.sum()}))
        for name, table in (("layers", pd.DataFrame(rows)), ("spectrum", pd.concat(spectrum))):
            paths.append(tmp_path / f"{name}_{model}.parquet")
            table.to_parquet(paths[-1])
    return paths


def test_dimensionality_is_averaged_over_seeds(tables, tmp_path):
    drawn = plot_geometry(tables, tmp_path / "geometry.png", dpi=40)
    assert (tmp_path / "geometry.png").read_bytes()[:4] == b"\x89PNG"
    point = drawn.set_index(["group", "layer", "epoch"]).loc[("bp", "area1", 2)]
    assert point["participation_ratio"] == pytest.approx(np.mean([10 - 2 + 0, 10 - 2 + 1]))
    assert (point["participation_ratio_min"], point["participation_ratio_max"]) == (8, 9)
    assert point["n_models"] == 2
    assert set(drawn["group"]) == {"bp", "fa"}                   # one family: panels named by rule


def test_probe_accuracy_uses_the_final_epoch_and_marks_the_untrained_network(tables, tmp_path):
    drawn = plot_probe_accuracy(tables, tmp_path / "probe.png", dpi=40)   # spectra are passed over
    assert (tmp_path / "probe.png").stat().st_size > 1_000
    row = drawn.set_index(["rule", "layer"]).loc[("bp", "readout")]
    assert row["epoch"] == 2
    assert row["probe_accuracy"] == pytest.approx(np.mean([0.6, 0.7]))
    assert row["untrained"] == pytest.approx(np.mean([0.2, 0.3, 0.4]))     # every model at epoch 0
    assert row["probe_chance"] == 0.125


def test_classes_name_the_family_when_models_differ_in_more_than_the_rule(tables):
    layers = pd.concat([pd.read_parquet(p) for p in tables if "layers_" in p.name])
    other = layers[layers["model"] == MODELS[0]].assign(model="lenet-supervised-bp-s0", arch="lenet")
    summary = geometry_summary(pd.concat([layers, other]))
    assert "lenet · supervised · bp" in set(summary["group"])
    assert set(probe_summary(pd.concat([layers, other]))["family"]) == {"ventral_cnn · supervised",
                                                                       "lenet · supervised"}


def test_rule_similarity_maps_draw_the_last_epoch(tmp_path):
    rows = []
    for epoch in (0, 2):
        for layer in LAYERS:
            for a in ("bp", "fa", "hebb"):
                for b in ("bp", "fa", "hebb"):
                    value = np.nan if a == b == "hebb" else (0.9 if a == b else 0.5) + 0.01 * epoch
                    rows.append({"stimulus_set": "shapes_probe", "arch": "ventral_cnn", "objective": "supervised",
                                 "layer": layer, "epoch": epoch, "time": 0, "rule_a": a, "rule_b": b,
                                 "similarity": value, "ci_low": value - 0.1, "ci_high": value + 0.1,
                                 "n_pairs": 2, "n_boot": 10, "ci": 0.95, "metric": "correlation",
                                 "compare": "pearson", "n_stimuli": 24})
    alone = {**rows[-1], "arch": "lenet", "rule_a": "bp", "rule_b": "bp", "similarity": np.nan}
    pd.DataFrame(rows + [alone]).to_parquet(tmp_path / "similarity.parquet")
    drawn = plot_rule_similarity(tmp_path / "similarity.parquet", tmp_path / "similarity.png", dpi=40)
    assert (tmp_path / "similarity.png").stat().st_size > 1_000
    assert set(drawn["epoch"]) == {2} and len(drawn) == 27          # the lone lenet model: no row
    nothing = plot_rule_similarity(pd.DataFrame([alone]), tmp_path / "nothing.png", dpi=40)
    assert nothing.empty and (tmp_path / "nothing.png").stat().st_size > 500


def test_figures_name_a_missing_column(tables, tmp_path):
    broken = pd.read_parquet(tables[0]).drop(columns="participation_ratio")
    with pytest.raises(ValueError, match="lacks column"):
        plot_geometry([broken], tmp_path / "x.png")
    with pytest.raises(ValueError, match="lacks column"):
        plot_rule_similarity(pd.DataFrame({"layer": ["a"]}), tmp_path / "y.png")
