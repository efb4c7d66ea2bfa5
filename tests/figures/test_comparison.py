"""Hypotheses compared: groups average the other model parts; performance joins transfer top-1."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from pipeline.figures.comparison import (
    by_parts,
    performance_table,
    plot_performance_vs_predictivity,
    plot_predictivity_by_model,
    plot_predictivity_by_rule,
    rank_correlations,
)

MODELS = {
    "ventral_cnn-supervised-bp-s0": 0.5,
    "ventral_cnn-supervised-bp-s1": 0.7,
    "ventral_cnn-supervised-fa-s0": 0.2,
    "lenet-supervised-bp-s0": 0.3,
}


@pytest.fixture
def summary():
    rows = []
    for model, score in MODELS.items():
        for area, shift in (("VISp", 0.0), ("VISl", 0.05)):
            rows.append({"dataset": "d", "model": model, "area": area, "mapping": "pls", "layer": "a",
                         "epoch": 5, "score": score + shift, "score_ceiling": 0.9})
    return pd.DataFrame(rows)


@pytest.fixture
def transfer():
    top1 = {"ventral_cnn-supervised-bp-s0": 0.4, "ventral_cnn-supervised-bp-s1": 0.6,
            "ventral_cnn-supervised-fa-s0": 0.1, "lenet-supervised-bp-s0": 0.2}
    rows = []
    for model, value in top1.items():
        rows += [{"model": model, "epoch": 0, "label_level": "basic", "top1": 0.125, "chance": 0.125},
                 {"model": model, "epoch": 5, "label_level": "basic", "top1": value, "chance": 0.125}]
    return pd.DataFrame(rows)


def test_seeds_are_averaged_per_rule(summary):
    table = by_parts(summary, ("rule",)).set_index(["area", "group"])
    bp = [0.5, 0.7, 0.3]                      # both ventral_cnn seeds and the lenet model
    assert table.loc[("VISp", "bp"), "score"] == pytest.approx(np.mean(bp))
    assert table.loc[("VISp", "bp"), "n_models"] == 3
    assert table.loc[("VISp", "bp"), "score_sd"] == pytest.approx(np.std(bp, ddof=1))
    assert table.loc[("VISl", "fa"), "score"] == pytest.approx(0.25)
    assert (table["score_ceiling"] == 0.9).all()


def test_groups_join_several_parts(summary):
    table = by_parts(summary, ("arch", "rule")).set_index(["area", "group"])
    assert table.loc[("VISp", "ventral_cnn · bp"), "score"] == pytest.approx(0.6)
    assert table.loc[("VISp", "lenet · bp"), "n_models"] == 1


def test_bad_input_is_named(summary):
    with pytest.raises(ValueError, match="score_ceiling"):
        by_parts(summary.drop(columns="score_ceiling"), ("rule",))
    with pytest.raises(ValueError, match="parts"):
        by_parts(summary, ("layer",))


def test_performance_uses_each_models_last_epoch(summary, transfer):
    table = performance_table(summary, transfer)
    row = table[(table["model"] == "ventral_cnn-supervised-bp-s1") & (table["area"] == "VISp")]
    assert row["top1"].item() == pytest.approx(0.6)
    assert set(table["objective"]) == {"supervised"}
    rho = rank_correlations(table).set_index("area")["rho"]
    top1 = [0.4, 0.6, 0.1, 0.2]
    assert rho["VISp"] == pytest.approx(spearmanr(top1, list(MODELS.values())).statistic)


def test_performance_needs_every_model(summary, transfer):
    with pytest.raises(ValueError, match="lenet-supervised-bp-s0"):
        performance_table(summary, transfer[transfer["model"] != "lenet-supervised-bp-s0"])


def test_figures_draw_their_tables(summary, transfer, tmp_path):
    summary.to_csv(tmp_path / "summary.csv", index=False)
    paths = []
    for model, rows in transfer.groupby("model"):          # as results/transfer/{model}.csv
        paths.append(tmp_path / f"{model}.csv")
        rows.drop(columns="model").to_csv(paths[-1], index=False)
    by_rule = plot_predictivity_by_rule(tmp_path / "summary.csv", tmp_path / "rules.png", dpi=40)
    by_model = plot_predictivity_by_model(tmp_path / "summary.csv", tmp_path / "models.png", dpi=40)
    performance = plot_performance_vs_predictivity(tmp_path / "summary.csv", paths,
                                                   tmp_path / "performance.png", dpi=40)
    for name in ("rules.png", "models.png", "performance.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert set(by_rule["group"]) == {"bp", "fa"}
    assert set(by_model["group"]) == {"ventral_cnn · supervised", "lenet · supervised"}
    pd.testing.assert_frame_equal(performance, performance_table(summary, transfer))


def test_allen_areas_follow_the_hierarchy():
    from pipeline.figures.comparison import area_order

    assert area_order(["VISl", "VISam", "VISp"]) == ["VISp", "VISl", "VISam"]
    assert area_order(["IT", "V4"]) == ["IT", "V4"]
