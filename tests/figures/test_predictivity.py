"""The predictivity summary: each model's best layer at its final epoch against the ceiling."""

import pandas as pd
import pytest

from pipeline.figures.predictivity import plot_predictivity, summary_table

QUANTITIES = ("r", "r_mapping", "r_target", "r_full", "score", "score_full", "score_thesis")


def rows(score, **labels):
    return {**labels, **{q: score for q in QUANTITIES}}


@pytest.fixture
def tables():
    base = dict(dataset="d", area="VISp", animal="m1", mapping="pls", split=0)
    ceiling = pd.DataFrame([rows(0.8, neuroid_id=f"u{u}", **base) for u in range(3)])
    scores = pd.DataFrame([
        rows(value, neuroid_id=f"u{u}", model="m-s-r-s0", layer=layer, epoch=epoch, stage=stage, **base)
        for u in range(3)
        for layer, epoch, value in [("a", 0, 0.9), ("a", 2, 0.2), ("b", 2, 0.4), ("b", 0, 0.1)]
        for stage in ("select", "test")
    ])
    return ceiling, scores


def test_best_layer_is_taken_at_the_final_epoch(tables):
    ceiling, scores = tables
    summary = summary_table(ceiling, scores).iloc[0]
    assert (summary["layer"], summary["epoch"]) == ("b", 2)      # not epoch 0's better layer a
    assert summary["score"] == pytest.approx(0.4)
    assert summary["score_ceiling"] == pytest.approx(0.8)
    assert summary["fraction_of_ceiling"] == pytest.approx(0.5)


def test_figure_and_summary_are_written(tables, tmp_path):
    ceiling, scores = tables
    ceiling.to_parquet(tmp_path / "ceiling.parquet")
    scores.to_parquet(tmp_path / "scores.parquet")
    plot_predictivity(tmp_path / "ceiling.parquet", [tmp_path / "scores.parquet"],
                      tmp_path / "fig.png", tmp_path / "summary.csv", dpi=50)
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    assert list(pd.read_csv(tmp_path / "summary.csv")["layer"]) == ["b"]


def test_models_of_different_architectures_share_the_figure(tables, tmp_path):
    ceiling, scores = tables
    other = scores.assign(model="n-s-r-s0", layer=scores["layer"].map({"a": "conv1", "b": "fc"}))
    ceiling.to_parquet(tmp_path / "ceiling.parquet")
    scores.to_parquet(tmp_path / "m.parquet")
    other.to_parquet(tmp_path / "n.parquet")
    plot_predictivity(tmp_path / "ceiling.parquet", [tmp_path / "m.parquet", tmp_path / "n.parquet"],
                      tmp_path / "fig.png", tmp_path / "summary.csv", dpi=50)
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("model")
    assert summary.loc["m-s-r-s0", "layer"] == "b" and summary.loc["n-s-r-s0", "layer"] == "fc"
