"""Knockouts: the masks select what the thresholds say, random draws come from the other units,
and the batched masked readout equals running the network with the mask."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.mec.knockouts import knockout_masks, knockout_table, masked_errors
from pipeline.mec.placecells import PlaceCells
from pipeline.mec.training import evaluate
from pipeline.models.path_integrator import PathIntegrator
from pipeline.objectives.path_integration import PathIntegrationTask


def scores_table(n, seed=0):
    rng = np.random.default_rng(seed)
    grid = rng.uniform(-0.5, 1.2, n)
    grid[:3] = np.nan                                  # no central peak: never a grid cell
    return pd.DataFrame({"unit_id": np.arange(n), "grid_score": grid,
                         "border_score": rng.uniform(-0.5, 0.9, n)})


def test_masks_follow_thresholds_and_draw_from_the_other_units():
    scores = scores_table(40)
    masks, table = knockout_masks(scores, 40, {"grid": [0.0, 0.5, 0.8], "border": [0.5]}, n_draws=7)
    assert table.kind.iloc[0] == "intact" and masks[0].all()
    for (score_type, threshold), part in table.iloc[1:].groupby(["score_type", "threshold"]):
        column = scores[f"{score_type}_score"].fillna(-np.inf).to_numpy()
        selected = column > threshold
        cell = masks[part.index[part.kind == "cell_type"][0]]
        np.testing.assert_array_equal(cell == 0, selected)
        draws = masks[part.index[part.kind == "random"]]
        if selected.sum() > (~selected).sum():                     # too few others to draw
            assert len(draws) == 0
            continue
        assert len(draws) == 7
        assert ((draws == 0).sum(1) == selected.sum()).all()        # as many units
        assert not (draws[:, selected] == 0).any()                 # never a selected one
        if (~selected).sum() > selected.sum():
            assert len({tuple(d) for d in draws}) > 1              # the draws differ
    assert table.fraction_removed.between(0, 1).all()


@pytest.fixture(scope="module")
def net_and_task():
    torch.manual_seed(0)
    cells = PlaceCells(32, width=1.0, seed=0)
    task = PathIntegrationTask("placecell", cells)
    return PathIntegrator("ugrnn_relu", 32, 32, n_units=24, n_input=8).eval(), task


def test_masked_readout_equals_running_the_network_with_the_mask(net_and_task):
    model, task = net_and_task
    rng = np.random.default_rng(1)
    masks = (rng.random((5, 24)) > 0.3).astype(np.float32)
    masks[0] = 1
    ours = masked_errors(model, task, masks, n_batches=2, batch_size=16, n_steps=10, width=1.0)
    for mask, error in zip(masks, ours):
        _, direct = evaluate(model, task, n_batches=2, batch_size=16, n_steps=10, width=1.0,
                             g_mask=torch.as_tensor(mask))
        assert error == pytest.approx(direct, rel=1e-5)


def test_table_degradation_is_relative_to_the_intact_network(net_and_task):
    model, task = net_and_task
    table = knockout_table(model, task, scores_table(24), {"grid": [0.0]}, n_draws=3,
                           n_batches=1, batch_size=16, n_steps=10, width=1.0)
    intact = table.error_cm.iloc[0]
    np.testing.assert_allclose(table.relative_degradation, (table.error_cm - intact) / intact,
                               rtol=1e-6)
    assert table.relative_degradation.iloc[0] == 0
    with pytest.raises(ValueError, match="unknown score type"):
        knockout_masks(scores_table(5), 5, {"speed": [0.1]})
