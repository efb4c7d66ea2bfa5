"""The predictivity figure: median score per layer at the final epoch, ceiling drawn in."""

import pandas as pd
import pytest

from pipeline.figures.predictivity import plot_predictivity

QUANTITIES = ("r", "r_mapping", "r_target", "r_full", "score", "score_full", "score_thesis")


def rows(score, **labels):
    return {**labels, **{q: score for q in QUANTITIES}}


@pytest.fixture
def tables(tmp_path):
    base = dict(dataset="d", area="VISp", animal="m1", mapping="pls", split=0)
    ceiling = pd.DataFrame([rows(0.8, neuroid_id=f"u{u}", **base) for u in range(3)])
    scores = pd.DataFrame([
        rows(value, neuroid_id=f"u{u}", model="m-s-r-s0", layer=layer, epoch=epoch, stage=stage, **base)
        for u in range(3)
        for layer, epoch, value in [("a", 0, 0.9), ("a", 2, 0.2), ("b", 2, 0.4), ("b", 0, 0.1)]
        for stage in ("select", "test")
    ])
    ceiling.to_parquet(tmp_path / "ceiling.parquet")
    return ceiling, scores


def test_layers_are_drawn_at_the_final_epoch(tables, tmp_path):
    _, scores = tables
    scores.to_parquet(tmp_path / "scores.parquet")
    drawn = plot_predictivity(tmp_path / "ceiling.parquet", [tmp_path / "scores.parquet"],
                              tmp_path / "fig.png", dpi=50)
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    assert dict(zip(drawn["layer"], drawn["score"])) == {"a": pytest.approx(0.2), "b": pytest.approx(0.4)}
    assert set(drawn["epoch"]) == {2}
    assert list(drawn["position"]) == [0, 1]                      # shared layers: by name order


def test_models_of_different_architectures_are_drawn_by_relative_depth(tables, tmp_path):
    _, scores = tables
    other = pd.concat([scores.assign(model="n-s-r-s0", layer=scores["layer"].map({"a": "conv1", "b": "fc"})),
                       scores.assign(model="n-s-r-s0", layer="fc2")], ignore_index=True)
    scores.to_parquet(tmp_path / "m.parquet")
    other.to_parquet(tmp_path / "n.parquet")
    drawn = plot_predictivity(tmp_path / "ceiling.parquet", [tmp_path / "m.parquet", tmp_path / "n.parquet"],
                              tmp_path / "fig.png", dpi=50)
    position = drawn.set_index(["model", "layer"])["position"]
    assert position[("m-s-r-s0", "a")] == 0 and position[("m-s-r-s0", "b")] == 1
    assert position[("n-s-r-s0", "conv1")] == 0 and position[("n-s-r-s0", "fc")] == 0.5
    assert position[("n-s-r-s0", "fc2")] == 1


def test_recurrent_layers_are_drawn_at_their_last_step(tables, tmp_path):
    _, scores = tables
    steps = pd.concat([scores.assign(time=t, score=scores["score"] + t) for t in (0, 1, 2)], ignore_index=True)
    steps.to_parquet(tmp_path / "scores.parquet")
    drawn = plot_predictivity(tmp_path / "ceiling.parquet", [tmp_path / "scores.parquet"],
                              tmp_path / "fig.png", dpi=50)
    assert set(drawn["time"]) == {2}
    assert dict(zip(drawn["layer"], drawn["score"])) == {"a": pytest.approx(2.2), "b": pytest.approx(2.4)}
