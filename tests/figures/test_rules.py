"""Predictivity by rule: seeds averaged per rule, area and mapping; the ceiling carried along."""

import pandas as pd
import pytest

from pipeline.figures.rules import by_rule, plot_rules


@pytest.fixture
def summary():
    rows = []
    for model, score in [("ventral_cnn-supervised-bp-s0", 0.5), ("ventral_cnn-supervised-bp-s1", 0.7),
                         ("ventral_cnn-supervised-fa-s0", 0.2)]:
        for area in ("VISp", "VISl"):
            rows.append({"dataset": "d", "model": model, "area": area, "mapping": "pls", "layer": "a",
                         "epoch": 5, "score": score, "score_ceiling": 0.9})
    return pd.DataFrame(rows)


def test_seeds_are_averaged_per_rule(summary):
    table = by_rule(summary).set_index(["area", "rule"])
    assert table.loc[("VISp", "bp"), "score"] == pytest.approx(0.6)
    assert table.loc[("VISp", "bp"), "n_seeds"] == 2
    assert table.loc[("VISp", "bp"), "score_sd"] == pytest.approx(pd.Series([0.5, 0.7]).std())
    assert table.loc[("VISl", "fa"), "score"] == pytest.approx(0.2)
    assert (table["score_ceiling"] == 0.9).all()


def test_missing_columns_are_named(summary):
    with pytest.raises(ValueError, match="score_ceiling"):
        by_rule(summary.drop(columns="score_ceiling"))


def test_figure_is_written(summary, tmp_path):
    summary.to_csv(tmp_path / "summary.csv", index=False)
    plot_rules(tmp_path / "summary.csv", tmp_path / "rules.png", dpi=40)
    assert (tmp_path / "rules.png").read_bytes()[:4] == b"\x89PNG"
