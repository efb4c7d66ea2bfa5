"""Aggregation of score tables (spec §1.3): per-unit means, medians over units, best layer,
and `summarize`, the per-dataset headline table (results/scores/summary/{dataset}.csv).

Best-layer protocol (no selection on test data). `predictivity` scores every layer twice
for each train/test split s: on the split's test stimuli (rows with stage "test") and on a
validation split inside its training stimuli (stage "select": maps fit on a seeded
``train_frac`` of the training stimuli, scored on the rest; `splits.inner_splits`). For
each (model, epoch, area, mapping) and split s, `best_layer` picks the layer with the
highest median over units of the "select" score (units nan-averaged over split-halves),
then reports that layer's "test" scores on split s (a recurrent model's candidates are its
(layer, time step) pairs, chosen the same way). Each unit's reported value is the
nan-mean over splits of the chosen layers' test scores, and the summary is the median and
s.e.m. over units, as for one layer. The test stimuli of split s never enter the choice
for split s, so the reported score is not inflated by the max over layers.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipeline.compare.ceilings import brainscore_ceiled
from pipeline.compare.scoring import POPULATION_MAPPINGS, SCORES

log = logging.getLogger(__name__)

SUMMARY_METRICS = (*SCORES, "r_full")
_GROUPS = ("dataset", "model", "area", "mapping", "layer", "epoch", "time", "n_stimuli")


def _default_by(frame, candidates):
    return [c for c in candidates if c in frame.columns]


def _time_filled(scores):
    """Scores with a missing ``time`` (rows of tables from before the column) read as step 0.

    Feedforward layers are time 0, and groupby would drop NaN keys, so concatenations of old
    and new tables are kept whole.
    """
    if "time" in scores.columns and scores["time"].isna().any():
        scores = scores.assign(time=scores["time"].fillna(0).astype(np.int64))
    return scores


def _test_rows(scores):
    if "stage" in scores.columns:
        return scores[scores["stage"] == "test"]
    return scores


def _over_units(per_unit, by, metrics):
    """Median and s.e.m. over units (rows of `per_unit`), per group."""
    grouped = per_unit.groupby(level=by, sort=True) if by else per_unit.groupby(lambda _: 0)
    out = pd.DataFrame(index=grouped.size().index)
    for name in metrics:
        out[name] = grouped[name].median()
        out[f"{name}_sem"] = grouped[name].sem()
    out["n_units"] = grouped.size()
    out["n_nan"] = grouped["score"].apply(lambda s: int(s.isna().sum()))
    return out


def _brainscore(rows, by):
    """Brain-Score's aggregate: median over neuroids per split, mean over splits; ceiled r²/c."""
    keys = by + ["split"]
    per_unit_split = rows.groupby(keys + ["animal", "neuroid_id"], sort=True)[
        ["r_full", "ceiling_brainscore"]].mean()
    per_split = per_unit_split.groupby(level=keys, sort=True).median()
    agg = per_split.groupby(level=by, sort=True).mean() if by else per_split.mean().to_frame().T
    population = agg.index.get_level_values("mapping").isin(POPULATION_MAPPINGS) if "mapping" in by else False
    ceiled = np.where(population, brainscore_ceiled(agg["r_full"], agg["ceiling_brainscore"], convention="ratio"),
                      brainscore_ceiled(agg["r_full"], agg["ceiling_brainscore"]))
    return pd.DataFrame({"brainscore_raw": agg["r_full"], "brainscore_ceiling": agg["ceiling_brainscore"],
                         "brainscore_score": ceiled}, index=agg.index)


def median_over_units(scores, by=None):
    """Median and s.e.m. over units of the per-unit averaged scores (spec §1.3).

    Each unit (animal, neuroid_id) is first nan-averaged over splits (and, pairwise, over
    source animals; with per-half rows, over halves); RSA/CKA rows are one "unit" per animal,
    so they are summarised over animals. Only held-out rows (stage "test") count. NaN units
    are left out of the medians and counted in `n_nan`.

    Parameters
    ----------
    scores : pandas.DataFrame
        Output of `interanimal`, `interanimal_curve` or `predictivity` (optionally with
        dataset/model columns).
    by : sequence of str, optional
        Grouping columns; default those of dataset, model, area, mapping, layer, epoch, time,
        n_stimuli present.

    Returns
    -------
    pandas.DataFrame
        `by` columns, then for score, score_full, score_thesis and r_full (raw, uncorrected)
        the median and ``<name>_sem``; n_units, n_nan; Brain-Score's aggregate
        (brainscore_raw: median over neuroids of r_full, mean over splits; brainscore_ceiling
        likewise of the SB split-half reliability; brainscore_score = raw² / ceiling, raw /
        ceiling for RSA and CKA); nc_lower and nc_upper, the rsatoolbox RSA noise ceilings
        (means over animals; NaN for other mappings).
    """
    by = list(by) if by is not None else _default_by(scores, _GROUPS)
    rows = _test_rows(_time_filled(scores))
    metrics = [m for m in SUMMARY_METRICS if m in rows.columns]      # r_full: tables before it lack it
    per_unit = rows.groupby(by + ["animal", "neuroid_id"], sort=True)[metrics].mean()
    out = _over_units(per_unit, by, metrics)
    if {"r_full", "ceiling_brainscore", "split"} <= set(rows.columns):
        out = out.join(_brainscore(rows, by))
    if {"nc_lower", "nc_upper"} <= set(rows.columns):
        per_animal = rows.groupby(by + ["animal"], sort=True)[["nc_lower", "nc_upper"]].mean()
        out = out.join(per_animal.groupby(level=by, sort=True).mean() if by else per_animal.mean().to_frame().T)
    return out.reset_index(drop=not by)


def chosen_layers(scores, metric, by):
    """The layer (and time step) chosen for each group and split on the validation rows.

    The choice step of `best_layer` (module docstring): per group of `by` and split, the
    candidate with the highest median over units of the "select" `metric`; ties go to the
    earlier candidate in network order.

    Returns
    -------
    chosen : pandas.DataFrame
        Columns `by`, split, then the candidate columns: one row per group and split.
    candidate : list of str
        ["layer"], or ["layer", "time"] for tables with a time column not in `by`.
    order : pandas.DataFrame
        The candidates in network order (then time), with their position in column ``order``.
    """
    by = list(by)
    scores = _time_filled(scores)
    candidate = ["layer", "time"] if "time" in scores.columns and "time" not in by else ["layer"]
    select = scores[scores["stage"] == "select"]
    fitted = scores["mapping"].isin(select["mapping"].unique())
    skipped = sorted(set(scores.loc[~fitted, "mapping"]))
    if skipped:
        log.info("best_layer: mappings %s have no validation rows (nothing fitted); left out", skipped)
    if select.empty:
        raise ValueError("best_layer: no validation rows (stage 'select'); run predictivity with "
                         "select_layers=True.")
    order = scores[candidate].drop_duplicates().reset_index(drop=True)   # network order, then time
    order["order"] = np.arange(len(order))
    keys = by + ["split"] + candidate
    per_unit = select.groupby(keys + ["animal", "neuroid_id"], sort=False)[metric].mean()
    medians = per_unit.groupby(level=keys, sort=False).median().dropna().reset_index()
    medians = medians.merge(order, on=candidate)
    medians = medians.sort_values(by + ["split", metric, "order"], ascending=[True] * (len(by) + 1) + [False, True])
    return medians.drop_duplicates(by + ["split"])[keys], candidate, order


def best_layer(scores, metric="score", by=None):
    """Each group's best layer (and time step) chosen on validation splits, reported on held-out data.

    See the module docstring for the protocol. With a ``time`` column (recurrent models), the
    candidates are the (layer, time) pairs, chosen jointly the same way. Mappings without
    validation rows (RSA and CKA, which fit nothing and use all stimuli) have no training data
    to choose on; they are left out (logged).

    Parameters
    ----------
    scores : pandas.DataFrame
        Rows of `predictivity` (with ``stage`` and ``split``), not a summary.
    metric : str
        Score whose median over units chooses the layer.
    by : sequence of str, optional
        Groups in which a layer is chosen; default dataset, model, area, mapping, epoch present.

    Returns
    -------
    pandas.DataFrame
        One row per group: `by`, ``layer`` and, with a time column, ``time`` (the candidate
        chosen most often over splits; ties go to the earlier layer, then the earlier step),
        ``layers_chosen`` ("layer:count, ..."; "layer@t<step>:count" when the table has more
        than one time step), ``n_splits``, and the `median_over_units` statistics of the chosen
        candidates' test scores.
    """
    missing = {"layer", "split", "stage", "neuroid_id", "animal"} - set(scores.columns)
    if missing:
        raise ValueError(
            f"best_layer needs predictivity rows with columns layer, split, stage, neuroid_id, animal; "
            f"missing {sorted(missing)}. Pass the score table itself (not a summary), from "
            "predictivity(..., select_layers=True).")
    by = list(by) if by is not None else _default_by(scores, ("dataset", "model", "area", "mapping", "epoch"))
    scores = _time_filled(scores)
    chosen, candidate, order = chosen_layers(scores, metric, by)
    keys = by + ["split"] + candidate
    test = _test_rows(scores).merge(chosen, on=keys)
    per_unit = test.groupby(by + ["animal", "neuroid_id"], sort=True)[list(SUMMARY_METRICS)].mean()
    out = _over_units(per_unit, by, SUMMARY_METRICS)
    counts = chosen.groupby(by + candidate, sort=False).size().reset_index(name="count")
    counts = counts.merge(order, on=candidate)
    counts = counts.sort_values(by + ["count", "order"], ascending=[True] * len(by) + [False, True])
    top = counts.drop_duplicates(by).set_index(by)
    show_time = "time" in candidate and scores["time"].nunique() > 1
    counts["label"] = (counts["layer"].astype(str) + "@t" + counts["time"].astype(str) if show_time
                       else counts["layer"].astype(str))
    listing = counts.groupby(by, sort=True).apply(
        lambda g: ", ".join(f"{label}:{n}" for label, n in zip(g["label"], g["count"])), include_groups=False)
    for at, name in enumerate(candidate):
        out.insert(at, name, top[name])
    out.insert(len(candidate), "layers_chosen", listing)
    out.insert(len(candidate) + 1, "n_splits", chosen.groupby(by, sort=True).size())
    return out.reset_index()


def final_epoch(scores):
    """Rows of each model's last scored epoch."""
    return scores[scores["epoch"] == scores.groupby("model")["epoch"].transform("max")]


def summarize(ceiling, scores):
    """Per area and mapping: the inter-animal ceiling and each model's best layer at its final epoch.

    The layer is chosen on validation splits inside each split's training stimuli and
    reported on held-out stimuli (`best_layer`); RSA and CKA fit nothing, so they have no
    layer choice here (their per-layer scores are in the predictivity figure).

    Parameters
    ----------
    ceiling : pandas.DataFrame
        `interanimal` scores of one dataset.
    scores : pandas.DataFrame
        `predictivity` scores of any number of models on the same dataset.

    Returns
    -------
    pandas.DataFrame
        The `best_layer` columns, then ``score_ceiling`` and ``score_sem_ceiling`` (the
        ceiling's median and s.e.m. over units) and ``fraction_of_ceiling``.
    """
    ceiling = median_over_units(ceiling)
    best = best_layer(final_epoch(scores))
    merged = best.merge(ceiling[["dataset", "area", "mapping", "score", "score_sem"]],
                        on=["dataset", "area", "mapping"], suffixes=("", "_ceiling"))
    merged["fraction_of_ceiling"] = merged["score"] / merged["score_ceiling"]
    return merged
