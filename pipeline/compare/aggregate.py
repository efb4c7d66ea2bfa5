"""Aggregation of score tables (spec §1.3): per-unit means, medians over units, best layer."""

from __future__ import annotations

import logging

import pandas as pd

from pipeline.compare.consistency import SCORES

log = logging.getLogger(__name__)


def _default_by(frame, candidates):
    return [c for c in candidates if c in frame.columns]


def summarize(scores, by=None):
    """Median and s.e.m. over units of the per-unit split-averaged scores (spec §1.3).

    Each unit (animal, neuroid_id) is first nan-averaged over splits; RSA rows are one "unit"
    per animal, so RSA is summarised over animals. NaN units are left out of the median and
    s.e.m. and counted in `n_nan`.

    Parameters
    ----------
    scores : pandas.DataFrame
        Output of `interanimal` or `predictivity` (optionally with dataset/model columns).
    by : sequence of str, optional
        Grouping columns; default those of dataset, model, area, mapping, layer, epoch present.

    Returns
    -------
    pandas.DataFrame
        `by` columns, then for each score `<score>` (median) and `<score>_sem`, `n_units`, `n_nan`.
    """
    by = list(by) if by is not None else _default_by(scores, ("dataset", "model", "area", "mapping", "layer", "epoch"))
    per_unit = scores.groupby(by + ["animal", "neuroid_id"], sort=True)[list(SCORES)].mean()
    grouped = per_unit.groupby(level=by, sort=True)
    out = pd.DataFrame(index=grouped.size().index)
    for name in SCORES:
        out[name] = grouped[name].median()
        out[f"{name}_sem"] = grouped[name].sem()
    out["n_units"] = grouped.size()
    out["n_nan"] = grouped["score"].apply(lambda s: int(s.isna().sum()))
    return out.reset_index()


def best_layer(summary, metric="score", by=None):
    """The layer with the highest median `metric` per area (spec §1.3, "max over layers").

    The choice uses the same held-out-stimulus medians it reports, as the thesis does; with
    hundreds of units per area the optimism of a max over a handful of layers is small, but
    it is not zero. Groups whose medians are all NaN are dropped (logged).

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of `summarize` with a `layer` column.
    metric : str
        Column to maximise.
    by : sequence of str, optional
        Groups in which a layer is chosen; default dataset, model, area, mapping, epoch present.

    Returns
    -------
    pandas.DataFrame
        One row of `summary` per group.
    """
    if "layer" not in summary.columns:
        raise ValueError(f"best_layer needs a 'layer' column; found {list(summary.columns)}.")
    by = list(by) if by is not None else _default_by(summary, ("dataset", "model", "area", "mapping", "epoch"))
    finite = summary[summary[metric].notna()]
    dropped = summary.groupby(by).ngroups - finite.groupby(by).ngroups
    if dropped:
        log.warning("best_layer: %d groups have no finite %s; dropped", dropped, metric)
    return finite.loc[finite.groupby(by, sort=True)[metric].idxmax()].reset_index(drop=True)
