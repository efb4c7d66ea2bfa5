"""Models against MEC data (spec §3.4, §3.6): predictivity, unit scores, score distributions.

- `predictivity_table`: the consistency engine (`pipeline.compare.consistency.predictivity`) on a
  rate-map store, mapped per target animal, labelled with the source's model-name parts (or
  ``objective = "control"`` for the controls of `pipeline.mec.controls`);
- `store_scores`: grid and border scores (`pipeline.mec.scores.cell_scores`) of one layer's
  units at every stored epoch (the maps put back on the full bin grid, unvisited bins NaN);
- `ks_table`: the two-sample Kolmogorov–Smirnov distance between each model's score
  distribution and the data's (spec §3.6 "distribution match"; scipy's ks_2samp), per epoch and
  score; no fitting.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from pipeline.compare.consistency import predictivity
from pipeline.mec.ratemaps import grid_images
from pipeline.models.names import parse_model_name

log = logging.getLogger(__name__)

KS_SCORES = ("grid_score", "border_score")

__all__ = ["KS_SCORES", "ks_table", "predictivity_table", "source_labels", "store_scores"]


def source_labels(source: str) -> dict:
    """model, arch, objective, rule, seed of a trained model or a control."""
    try:
        spec = parse_model_name(source)
    except ValueError:
        return {"model": source, "arch": source, "objective": "control", "rule": "none",
                "seed": 0}
    return spec.labels


def predictivity_table(store: xr.Dataset, assembly: xr.DataArray, *, source: str, dataset: str,
                       **compare) -> pd.DataFrame:
    """Predictivity of every layer and epoch of a rate-map store (the engine, unchanged).

    `compare` is the config block ``mec.compare`` (the engine's keyword arguments) plus the
    execution keywords scheduler and n_workers.
    """
    scores = predictivity(store, assembly, epochs="all", **compare)
    labels = {"dataset": dataset, **source_labels(source)}
    for position, (column, value) in enumerate(labels.items()):
        scores.insert(position, column, value)
    return scores


def _layer(store: xr.Dataset, layer: str) -> str:
    if layer in store.data_vars:
        return layer
    if len(store.data_vars) == 1:                # a control: its one layer
        return next(iter(store.data_vars))
    raise ValueError(f"rate-map store has no layer {layer!r}; layers: {list(store.data_vars)}")


def store_scores(store: xr.Dataset, *, layer: str = "g", **grid_kwargs) -> pd.DataFrame:
    """Cell-type scores of the units of `layer` (a control's only layer) at every epoch."""
    from pipeline.mec.scores import cell_scores

    name = _layer(store, layer)
    n_y = round(float(store.attrs["arena_height_cm"]) / float(store.attrs["bin_size_cm"]))
    n_x = round(float(store.attrs["arena_width_cm"]) / float(store.attrs["bin_size_cm"]))
    frames = []
    for epoch in store["epoch"].values:
        values = store[name].sel(epoch=epoch).transpose("stimulus", ...).values
        maps = grid_images(values, store["stimulus_id"].values, (n_y, n_x))
        table = cell_scores(maps, **grid_kwargs)
        table.insert(0, "epoch", int(epoch))
        table.insert(0, "layer", name)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def ks_table(data_scores: pd.DataFrame, model_scores: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """KS distance between each model's (per epoch) and the data's score distributions.

    Units with a NaN score (no field, no central peak) are left out of both samples.

    Returns
    -------
    pandas.DataFrame
        model, epoch, score, ks_distance, p_value, n_model, n_data.
    """
    rows = []
    for name, table in model_scores.items():
        for epoch, part in table.groupby("epoch"):
            for score in KS_SCORES:
                data = data_scores[score].to_numpy(dtype=float)
                model = part[score].to_numpy(dtype=float)
                data, model = data[np.isfinite(data)], model[np.isfinite(model)]
                if data.size and model.size:
                    result = stats.ks_2samp(model, data)
                    d, p = float(result.statistic), float(result.pvalue)
                else:
                    d = p = np.nan
                rows.append({"model": name, "epoch": int(epoch), "score": score,
                             "ks_distance": d, "p_value": p, "n_model": model.size,
                             "n_data": data.size})
    return pd.DataFrame(rows)
