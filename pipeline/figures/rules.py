"""Predictivity per area by learning rule, against the inter-animal ceiling."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.figures.style import plt, save
from pipeline.models.names import parse_model_name


def by_rule(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean and s.d. over seeds of each rule's best-layer score, per area and mapping.

    Parameters
    ----------
    summary : pandas.DataFrame
        The predictivity summary table (one row per model, area and mapping, with `score`
        and `score_ceiling`), as written by `predictivity_figure`.

    Returns
    -------
    pandas.DataFrame
        Columns mapping, area, rule, score (mean over seeds), score_sd, n_seeds, score_ceiling.
    """
    missing = {"model", "area", "mapping", "score", "score_ceiling"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary table lacks column(s) {sorted(missing)}; found {list(summary.columns)}")
    table = summary.assign(rule=[parse_model_name(m).rule for m in summary["model"]])
    grouped = table.groupby(["mapping", "area", "rule"], sort=False)
    return pd.DataFrame({
        "score": grouped["score"].mean(),
        "score_sd": grouped["score"].std(ddof=1),
        "n_seeds": grouped["score"].count(),
        "score_ceiling": grouped["score_ceiling"].first(),
    }).reset_index()


def plot_rules(summary_path, out, *, dpi=150) -> None:
    """One panel per mapping: each rule's best-layer score per area, ceiling as a grey bar.

    Points are the mean over seeds with the s.d. over seeds as error bars.
    """
    table = by_rule(pd.read_csv(summary_path))
    mappings = list(dict.fromkeys(table["mapping"]))
    areas = list(dict.fromkeys(table["area"]))
    rules = list(dict.fromkeys(table["rule"]))
    colours = dict(zip(rules, plt.get_cmap("tab10").colors))
    width = 0.8 / max(len(rules), 1)
    fig, axes = plt.subplots(len(mappings), 1, figsize=(1.1 * len(areas) * max(1, len(rules) / 3) + 2,
                                                        2.4 * len(mappings)),
                             sharex=True, squeeze=False)
    for ax, mapping in zip(axes[:, 0], mappings):
        sub = table[table["mapping"] == mapping]
        ceilings = sub.groupby("area", sort=False)["score_ceiling"].first()
        for x, area in enumerate(areas):
            if area in ceilings and np.isfinite(ceilings[area]):
                ax.fill_between([x - 0.45, x + 0.45], 0, ceilings[area], color="0.88", zorder=0,
                                label="inter-animal ceiling" if x == 0 else None)
        for k, rule in enumerate(rules):
            rows = sub[sub["rule"] == rule].set_index("area").reindex(areas)
            xs = np.arange(len(areas)) - 0.4 + width * (k + 0.5)
            ax.errorbar(xs, rows["score"], yerr=rows["score_sd"].fillna(0), fmt="o", ms=4,
                        color=colours[rule], capsize=2, lw=1, label=rule)
        ax.set_ylabel(f"{mapping}\nbest-layer score")
        ax.axhline(0, color="0.6", lw=0.6)
    axes[-1, 0].set_xticks(range(len(areas)), areas)
    axes[0, 0].legend(fontsize=7, frameon=False, ncol=len(rules) + 1, loc="lower left",
                      bbox_to_anchor=(0, 1.02))
    fig.suptitle("Predictivity by learning rule (final epoch, mean ± s.d. over seeds)", fontsize=9, y=1.06)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
