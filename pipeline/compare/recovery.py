"""Model recovery: does a metric pick the hypothesis that generated the (virtual) brain?

A virtual dataset whose generator is a trained model (`pipeline.data.synthetic_mouse.ModelGenerator`)
knows its truth: the generator's class (architecture × objective × learning rule) and, per area,
the relative depth of the layer that played it. `recovery` scores every candidate class on one
such dataset, per area and mapping, from the candidates' predictivity tables:

- a model's score is its best layer's median over units (`metric`, final epoch), the layer
  chosen on validation splits as in `pipeline.compare.aggregate.best_layer`; RSA and CKA fit
  nothing and have no validation rows, so their layer is the one with the highest median over
  animals on all stimuli (marked ``selection = "in-sample"``);
- a class's score is the mean over its seeds (seeds pooled);
- ``rank`` is the true class's rank among classes (1 = first), ``margin`` its score minus the
  best wrong class's, with a percentile interval from resampling the units with replacement
  (paired: the same resample for every candidate; the splits' layer choices fixed);
- ``at_depth`` says whether the true class's best layer (the layer chosen most often over its
  seeds and splits) is the candidate layer nearest the generator layer's relative depth.

`recovery_matrix` gathers the class tables of several generator datasets into a confusion
matrix per mapping and area group (early: VISp, VISl, VISal; late: VISrl, VISam, VISpm; the
winner of a group is the class with the highest mean score over its areas), with the
proportion recovered and its exact (Clopper–Pearson) binomial interval.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from pipeline.compare.aggregate import _test_rows, _time_filled, chosen_layers, final_epoch
from pipeline.data.assembly import ALLEN_AREAS
from pipeline.data.synthetic_mouse import nearest_depth
from pipeline.models.names import parse_model_name

log = logging.getLogger(__name__)

AREA_GROUPS = {"early": tuple(ALLEN_AREAS[:3]), "late": tuple(ALLEN_AREAS[3:])}
_UNIT = ["animal", "neuroid_id"]


def class_name(model: str) -> str:
    """The hypothesis class {arch}-{objective}-{rule} of a model name (its seed dropped)."""
    spec = parse_model_name(model)
    return f"{spec.arch}-{spec.objective}-{spec.rule}"


def _network_layers(scores) -> dict[str, list[str]]:
    """Each model's layers in network order (the order the predictivity table lists them)."""
    return {model: list(rows["layer"].drop_duplicates()) for model, rows in scores.groupby("model", sort=False)}


def unit_scores(scores, metric="score") -> pd.DataFrame:
    """Per model, area, mapping and unit: the best layer's `metric`, with the choices made.

    Fitted mappings: the layer of each split is chosen on its validation rows (`chosen_layers`)
    and the unit's value is the mean over splits of the chosen layers' test scores. Mappings
    without validation rows (RSA, CKA): the layer with the highest median over units of the
    test score on all stimuli.

    Returns
    -------
    pandas.DataFrame
        Columns model, area, mapping, animal, neuroid_id, value, layer (the layer chosen most
        often, ties to the earlier), at-layer counts in ``layer_counts`` ({layer: count}),
        selection ("validation" or "in-sample").
    """
    scores = _time_filled(final_epoch(scores))
    if "time" in scores.columns and scores["time"].nunique() > 1:
        raise ValueError("recovery: score tables with several time steps (recurrent models) are not "
                         "supported; score feedforward candidates")
    by = ["model", "area", "mapping"]
    order = {layer: k for model_layers in _network_layers(scores).values()
             for k, layer in enumerate(model_layers)}
    test = _test_rows(scores)
    fitted = set(scores.loc[scores["stage"] == "select", "mapping"]) if "stage" in scores else set()
    parts = []
    if fitted:
        rows = scores[scores["mapping"].isin(fitted)]
        chosen, _, _ = chosen_layers(rows, metric, by)
        picked = test.merge(chosen, on=list(chosen.columns))     # by, split, layer (and time)
        values = picked.groupby(by + _UNIT, sort=True)[metric].mean().rename("value").reset_index()
        counts = chosen.groupby(by + ["layer"], sort=False).size().rename("count").reset_index()
        parts.append((values, counts, "validation"))
    free = test[~test["mapping"].isin(fitted)]
    if not free.empty:
        per_unit = free.groupby(by + ["layer"] + _UNIT, sort=False)[metric].mean()
        medians = per_unit.groupby(level=by + ["layer"], sort=False).median().dropna().reset_index()
        medians["order"] = medians["layer"].map(order)
        medians = medians.sort_values(by + [metric, "order"], ascending=[True] * 3 + [False, True])
        best = medians.drop_duplicates(by)[by + ["layer"]]
        values = per_unit.rename("value").reset_index().merge(best, on=by + ["layer"])
        values = values.drop(columns="layer")
        parts.append((values, best.assign(count=1), "in-sample"))
    out = []
    for values, counts, selection in parts:
        counts = counts.assign(order=counts["layer"].map(order))
        counts = counts.sort_values(by + ["count", "order"], ascending=[True] * 3 + [False, True])
        top = counts.drop_duplicates(by)[by + ["layer"]]
        listing = counts.groupby(by, sort=False).apply(
            lambda g: dict(zip(g["layer"], g["count"].astype(int))), include_groups=False
        ).rename("layer_counts").reset_index()
        out.append(values.merge(top, on=by).merge(listing, on=by).assign(selection=selection))
    if not out:
        raise ValueError("recovery: the score tables have no test rows")
    return pd.concat(out, ignore_index=True)


def _class_matrix(units, models, classes):
    """(class, unit) matrix of model values → per-class aggregation helpers."""
    wide = units.pivot_table(index="model", columns=_UNIT, values="value", aggfunc="mean", dropna=False)
    wide = wide.reindex(models)
    member = np.array([[classes[m] == c for m in models] for c in dict.fromkeys(classes.values())], float)
    return wide.to_numpy(), member


def _class_scores(values, member):
    """Class score = mean over its models of each model's median over units (NaN units left out)."""
    with warnings.catch_warnings():                 # a model without any valid unit: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(values, axis=-1)     # (..., model)
    return np.einsum("...m,cm->...c", medians, member) / member.sum(axis=1)


def recovery(scores, generator: str, area_depths: dict, *, metric="score", n_boot=1000, ci=0.95,
             seed=0):
    """Recovery of one generator hypothesis on one virtual dataset, per area and mapping.

    Parameters
    ----------
    scores : pandas.DataFrame
        Predictivity rows of every candidate model on the dataset (any epochs; the final one is
        used), with ``stage`` select/test rows from ``select_layers=True``.
    generator : str
        The generator's model name; its class is the truth.
    area_depths : dict of str to float
        Area → relative depth (0 … 1) of the generator layer that played it (truth.zarr attrs).
    metric : str
        Score column that ranks candidates.
    n_boot : int
        Bootstrap resamples of the units for the margin's interval.
    ci : float
        Coverage of that interval.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    table : pandas.DataFrame
        One row per area and mapping with a defined score (cells without one are logged and
        left out): generator, true_class, winner, true_score, winner_score,
        rank, n_classes, margin, margin_low, margin_high, p_not_first (share of resamples in
        which the true class is not first), generator_depth, depth_layer (the true class's layer
        nearest the generator's depth), best_layer (its layer chosen most often over seeds and
        splits), layers_chosen, at_depth (best_layer is depth_layer), at_depth_fraction (share
        of the seeds' and splits' choices at depth_layer), selection, n_units. rank, margin and the depth columns are NaN
        when the true class is not among the candidates.
    classes : pandas.DataFrame
        One row per area, mapping and class: score, rank, n_models, is_true.
    depth : pandas.DataFrame
        Layer–area correspondence: per area, mapping, class and layer, the median over units of
        the test `metric` (mean over seeds), the layer's relative depth, is_true and the
        generator's depth.
    """
    if not 0 < ci < 1:
        raise ValueError(f"recovery: ci must be in (0, 1); got {ci!r}")
    if int(n_boot) < 1:
        raise ValueError(f"recovery: n_boot must be >= 1; got {n_boot!r}")
    missing = {"model", "area", "mapping", "layer", "split", "animal", "neuroid_id", metric} - set(scores.columns)
    if missing:
        raise ValueError(f"recovery: the score tables lack columns {sorted(missing)}; pass predictivity tables")
    unknown = sorted(set(scores["area"]) - set(area_depths))
    if unknown:
        raise ValueError(f"recovery: areas {unknown} have no generator depth (area_depths has "
                         f"{sorted(area_depths)})")
    true_class = class_name(generator)
    models = sorted(scores["model"].unique())
    classes = {m: class_name(m) for m in models}
    class_list = list(dict.fromkeys(classes.values()))
    if true_class not in class_list:
        log.warning("recovery: the generator's class %s is not among the candidates %s; only the "
                    "winners are reported", true_class, class_list)
    layers = _network_layers(_time_filled(final_epoch(scores)))
    units = unit_scores(scores, metric)
    undefined = (set(map(tuple, scores[["area", "mapping"]].drop_duplicates().to_numpy()))
                 - set(map(tuple, units[["area", "mapping"]].drop_duplicates().to_numpy())))
    if undefined:
        log.warning("recovery: no defined %s in any layer of any candidate for (area, mapping) %s; "
                    "those cells are left out", metric, sorted(undefined))
    rng = np.random.default_rng(seed)
    alpha = (1 - ci) / 2
    rows, class_rows = [], []
    for (area, mapping), group in units.groupby(["area", "mapping"], sort=True):
        values, member = _class_matrix(group, models, classes)
        score = _class_scores(values, member)
        order = np.argsort(-score, kind="stable")
        rank_of = np.empty(len(class_list), int)
        rank_of[order] = np.arange(1, len(class_list) + 1)
        for c, name in enumerate(class_list):
            class_rows.append({"area": area, "mapping": mapping, "class": name, "score": score[c],
                               "rank": rank_of[c], "n_models": int(member[c].sum()),
                               "is_true": name == true_class})
        winner = class_list[order[0]]
        row = {"area": area, "mapping": mapping, "generator": generator, "true_class": true_class,
               "winner": winner, "winner_score": score[order[0]], "n_classes": len(class_list),
               "selection": group["selection"].iloc[0], "n_units": values.shape[1],
               "generator_depth": float(area_depths[area])}
        if true_class in class_list:
            t = class_list.index(true_class)
            wrong = np.delete(np.arange(len(class_list)), t)
            boot = rng.integers(0, values.shape[1], size=(int(n_boot), values.shape[1]))
            resampled = _class_scores(values[:, boot].transpose(1, 0, 2), member)   # (boot, class)
            margins = resampled[:, t] - (resampled[:, wrong].max(axis=1) if wrong.size else np.nan)
            true_models = [m for m in models if classes[m] == true_class]
            picks = group[group["model"].isin(true_models)].drop_duplicates("model")
            counts: dict[str, int] = {}
            for chosen in picks["layer_counts"]:
                for layer, n in chosen.items():
                    counts[layer] = counts.get(layer, 0) + int(n)
            arch_layers = layers[true_models[0]]
            best = max(counts, key=lambda layer: (counts[layer], -arch_layers.index(layer)))
            depth_layer = arch_layers[nearest_depth(float(area_depths[area]), len(arch_layers))]
            row.update({
                "true_score": score[t], "rank": int(rank_of[t]),
                "margin": score[t] - (score[wrong].max() if wrong.size else np.nan),
                "margin_low": np.nanquantile(margins, alpha) if wrong.size else np.nan,
                "margin_high": np.nanquantile(margins, 1 - alpha) if wrong.size else np.nan,
                "p_not_first": float(np.mean(~(margins > 0))) if wrong.size else 0.0,
                "depth_layer": depth_layer, "best_layer": best,
                "layers_chosen": ", ".join(f"{layer}:{n}" for layer, n in counts.items()),
                "at_depth": best == depth_layer,
                "at_depth_fraction": counts.get(depth_layer, 0) / sum(counts.values()),
            })
        rows.append(row)
    columns = ["area", "mapping", "generator", "true_class", "winner", "true_score", "winner_score",
               "rank", "n_classes", "margin", "margin_low", "margin_high", "p_not_first",
               "generator_depth", "depth_layer", "best_layer", "layers_chosen", "at_depth",
               "at_depth_fraction", "selection", "n_units"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    table = _area_sorted(table)
    return table, _area_sorted(pd.DataFrame(class_rows)), depth_profiles(scores, area_depths, true_class, metric)


def _area_sorted(frame):
    """Rows in ALLEN_AREAS order (areas outside it last), then as they were."""
    rank = {area: k for k, area in enumerate(ALLEN_AREAS)}
    key = frame["area"].map(lambda a: rank.get(a, len(rank)))
    return frame.assign(_k=key).sort_values(["_k"], kind="stable").drop(columns="_k").reset_index(drop=True)


def depth_profiles(scores, area_depths, true_class, metric="score"):
    """Predictivity by relative layer depth: per area, mapping, class and layer, the median over
    units of the test `metric` at the final epoch (mean over the class's seeds)."""
    scores = _test_rows(_time_filled(final_epoch(scores)))
    layers = _network_layers(scores)
    per_unit = scores.groupby(["model", "area", "mapping", "layer"] + _UNIT, sort=False)[metric].mean()
    medians = per_unit.groupby(level=["model", "area", "mapping", "layer"], sort=False).median().reset_index()
    medians["class"] = medians["model"].map(class_name)
    medians["depth"] = [layers[m].index(layer) / max(len(layers[m]) - 1, 1)
                        for m, layer in zip(medians["model"], medians["layer"])]
    out = (medians.groupby(["area", "mapping", "class", "layer", "depth"], sort=False)[metric]
           .mean().rename("score").reset_index())
    out["is_true"] = out["class"] == true_class
    out["generator_depth"] = out["area"].map({a: float(d) for a, d in area_depths.items()})
    return _area_sorted(out)


def recovery_matrix(classes, *, ci=0.95):
    """Confusion matrix of recovery over generator datasets, per mapping and area group.

    Parameters
    ----------
    classes : pandas.DataFrame
        The `recovery` class tables of several datasets, concatenated, with a ``dataset``
        column; each dataset has one true class (``is_true``).
    ci : float
        Coverage of the exact binomial interval of the proportion recovered.

    Returns
    -------
    pandas.DataFrame
        One row per mapping, group, true class and winning class: ``count`` (generator datasets
        with that outcome), then per mapping and group ``n`` (datasets), ``recovered`` (winner =
        truth), ``proportion``, ``ci_low``, ``ci_high`` (Clopper–Pearson) and ``chance`` (1 /
        number of classes).
    """
    needed = {"dataset", "area", "mapping", "class", "score", "is_true"}
    if needed - set(classes.columns):
        raise ValueError(f"recovery_matrix: class tables lack {sorted(needed - set(classes.columns))}")
    outcomes = []
    for (dataset, mapping), rows in classes.groupby(["dataset", "mapping"], sort=True):
        truth = rows.loc[rows["is_true"].astype(str) == "True", "class"].unique()
        if truth.size == 0:
            log.warning("recovery_matrix: the generator class of dataset %r is not among the candidates; "
                        "left out of the matrix (its recovery table still names the winners)", dataset)
            continue
        if truth.size > 1:
            raise ValueError(f"recovery_matrix: dataset {dataset!r} has {truth.size} true classes "
                             f"{sorted(truth)}; each dataset has one generator")
        for group, areas in AREA_GROUPS.items():
            in_group = rows[rows["area"].isin(areas)]
            if in_group.empty:
                continue
            mean = in_group.groupby("class", sort=True)["score"].mean()
            outcomes.append({"dataset": dataset, "mapping": mapping, "group": group,
                             "true_class": truth[0], "winner": mean.idxmax(),
                             "n_classes": mean.size})
    if not outcomes:
        raise ValueError("recovery_matrix: no dataset has its generator's class among the candidates")
    outcomes = pd.DataFrame(outcomes)
    counts = (outcomes.groupby(["mapping", "group", "true_class", "winner"], sort=True).size()
              .rename("count").reset_index())
    summary = []
    for (mapping, group), rows in outcomes.groupby(["mapping", "group"], sort=True):
        n, k = len(rows), int((rows["winner"] == rows["true_class"]).sum())
        interval = binomtest(k, n).proportion_ci(confidence_level=ci, method="exact")
        summary.append({"mapping": mapping, "group": group, "n": n, "recovered": k,
                        "proportion": k / n, "ci_low": interval.low, "ci_high": interval.high,
                        "chance": 1 / rows["n_classes"].max()})
    return counts.merge(pd.DataFrame(summary), on=["mapping", "group"])
