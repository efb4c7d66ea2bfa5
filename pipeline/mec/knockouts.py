"""Knockouts of cell types in a path integrator's g layer (spec §3.7, §4.5).

For each score (grid, border) and threshold of a sweep, the g units scoring above the
threshold are silenced (their output set to 0 before the readout) and the decoding error
(eq. 4.16) is measured on held-out trajectories in the training arena; the same number of
units drawn at random among the other units (the "heterogeneous" ones: at or below the
threshold, or without a score) are silenced in each of `n_draws` draws (spec: 100). The metric
is the relative degradation versus the intact network,

    (error_knockout − error_intact) / error_intact,

the spec's (P_full − P_ko)/P_full [inferred] with performance read as the negative error.

The recurrent part does not see a knockout (g only feeds the readout), so it runs once per
batch and every mask is applied to that batch's g: readout(g ∘ m) = g (W ∘ m)ᵀ + b, all masks
of a chunk in one product.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from pipeline.mec.trajectories import simulate_trajectories
from pipeline.mec.training import EVAL_SEED
from pipeline.objectives.path_integration import decoding_error

log = logging.getLogger(__name__)

SCORE_COLUMNS = {"grid": "grid_score", "border": "border_score"}
MASK_CHUNK = 16

__all__ = ["knockout_masks", "knockout_table", "masked_errors"]


def knockout_masks(scores: pd.DataFrame, n_units: int, thresholds: dict, *, n_draws: int = 100,
                   random_state: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """The masks of the sweep and what each one is.

    Parameters
    ----------
    scores : DataFrame
        One row per g unit: ``unit_id`` (index into g) and the columns of `SCORE_COLUMNS`.
    n_units : int
        Width of g.
    thresholds : dict
        Score type ("grid", "border") → list of thresholds.
    n_draws : int
        Random heterogeneous knockouts per cell-type knockout.
    random_state : int

    Returns
    -------
    (masks (mask, unit) float32 with 1 = kept, DataFrame of score_type, threshold, kind
    ("intact", "cell_type", "random"), draw (-1 unless random), n_removed, fraction_removed)
    """
    rng = np.random.default_rng(random_state)
    masks, rows = [np.ones(n_units, dtype=np.float32)], [
        {"score_type": "", "threshold": np.nan, "kind": "intact", "draw": -1, "n_removed": 0}]
    ids = scores["unit_id"].to_numpy(dtype=np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= n_units:
        raise ValueError(f"knockouts: unit_id outside the g layer's {n_units} units")
    for score_type, values in thresholds.items():
        if score_type not in SCORE_COLUMNS:
            raise ValueError(f"knockouts: unknown score type {score_type!r}; known: "
                             f"{', '.join(SCORE_COLUMNS)}")
        score = np.full(n_units, np.nan)
        score[ids] = scores[SCORE_COLUMNS[score_type]].to_numpy(dtype=np.float64)
        for threshold in values:
            selected = np.nan_to_num(score, nan=-np.inf) > threshold
            others = np.flatnonzero(~selected)
            n = int(selected.sum())
            mask = np.ones(n_units, dtype=np.float32)
            mask[selected] = 0
            masks.append(mask)
            rows.append({"score_type": score_type, "threshold": threshold, "kind": "cell_type",
                         "draw": -1, "n_removed": n})
            if n == 0 or n > others.size:
                log.info("%s > %g: %d units; no random draws (%d others)", score_type, threshold,
                         n, others.size)
                continue
            for draw in range(n_draws):
                mask = np.ones(n_units, dtype=np.float32)
                mask[rng.choice(others, n, replace=False)] = 0
                masks.append(mask)
                rows.append({"score_type": score_type, "threshold": threshold, "kind": "random",
                             "draw": draw, "n_removed": n})
    table = pd.DataFrame(rows)
    table["fraction_removed"] = table["n_removed"] / n_units
    return np.stack(masks), table


@torch.no_grad()
def masked_errors(model, task, masks: np.ndarray, *, n_batches: int, batch_size: int,
                  n_steps: int, width: float, seed: int = EVAL_SEED) -> np.ndarray:
    """Decoding error (m) of the network with each mask (mask, g unit) applied to g."""
    device = next(model.parameters()).device
    M = torch.as_tensor(masks, device=device)
    W, b = model.readout.weight, model.readout.bias
    generator = torch.Generator().manual_seed(seed)
    errors = torch.zeros(len(M), dtype=torch.float64)
    for _ in tqdm(range(n_batches), desc="knockouts", unit="batch", disable=None):
        traj = simulate_trajectories(batch_size, n_steps, width=width,
                                     generator=generator).to(device)
        g = model.run(*task.inputs(traj))["g"].reshape(-1, W.shape[1])
        true = traj.position.reshape(-1, 2)
        for start in range(0, len(M), MASK_CHUNK):
            chunk = M[start:start + MASK_CHUNK]
            out = torch.einsum("su,cpu->csp", g, W[None] * chunk[:, None, :]) + b
            for i, o in enumerate(out):
                errors[start + i] += float(decoding_error(task.decode(o), true))
    return (errors / n_batches).numpy()


def knockout_table(model, task, scores: pd.DataFrame, thresholds: dict, *, n_draws: int = 100,
                   n_batches: int = 100, batch_size: int = 200, n_steps: int = 20,
                   width: float = 2.2, random_state: int = 0) -> pd.DataFrame:
    """The knockout sweep of one network (module docstring).

    Returns
    -------
    pandas.DataFrame
        `knockout_masks`' columns plus error_cm and relative_degradation (0 for intact).
    """
    n_units = model.readout.in_features
    masks, table = knockout_masks(scores, n_units, thresholds, n_draws=n_draws,
                                  random_state=random_state)
    log.info("knockouts: %d masks (%d cell-type) on %d g units, %d x %d trajectories",
             len(masks), int((table.kind == "cell_type").sum()), n_units, n_batches, batch_size)
    errors = masked_errors(model, task, masks, n_batches=n_batches, batch_size=batch_size,
                           n_steps=n_steps, width=width)
    table["error_cm"] = 100.0 * errors
    table["relative_degradation"] = (errors - errors[0]) / errors[0]
    return table
