"""Hypotheses compared: best-layer predictivity by model part, and against task performance.

A model is (architecture, objective, learning rule, seed). These figures average seeds and ask
which parts matter: predictivity per area by rule, or by architecture × objective, with the
inter-animal ceiling drawn in; and predictivity against linear-evaluation accuracy (the
"is a better task model a better brain model" question).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from pipeline.data.assembly import ALLEN_AREAS
from pipeline.figures.style import mapping_area_grid, plt, save
from pipeline.models.names import parse_model_name

PARTS = ("arch", "objective", "rule")


def _check_columns(table: pd.DataFrame, needed: set[str], what: str) -> None:
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"{what} lacks column(s) {sorted(missing)}; found {list(table.columns)}")


def area_order(areas) -> list[str]:
    """Areas in the Allen hierarchy's order when they are Allen areas, else as they come."""
    areas = list(dict.fromkeys(areas))
    if set(areas) <= set(ALLEN_AREAS):
        return [a for a in ALLEN_AREAS if a in areas]
    return areas


def with_parts(summary: pd.DataFrame) -> pd.DataFrame:
    """`summary` with columns arch, objective, rule and seed parsed from `model`."""
    specs = [parse_model_name(m) for m in summary["model"]]
    return summary.assign(**{part: [getattr(s, part) for s in specs] for part in (*PARTS, "seed")})


def group_label(table: pd.DataFrame, parts: tuple[str, ...]) -> pd.Series:
    """One label per row joining its `parts`, e.g. "alexnet64 · simclr"."""
    return table[list(parts)].astype(str).agg(" · ".join, axis=1)


def by_parts(summary: pd.DataFrame, parts: tuple[str, ...]) -> pd.DataFrame:
    """Mean and s.d. over the other parts (seeds, at least) of the best-layer score.

    Parameters
    ----------
    summary : pandas.DataFrame
        The predictivity summary table (one row per model, area and mapping, with `score`
        and `score_ceiling`), as written by `pipeline.compare.aggregate.summarize`.
    parts : tuple of str
        Model-name parts that define a group, a subset of ("arch", "objective", "rule").

    Returns
    -------
    pandas.DataFrame
        Columns mapping, area, group, score (mean), score_sd, n_models, score_ceiling; groups
        in order of first appearance.
    """
    _check_columns(summary, {"model", "area", "mapping", "score", "score_ceiling"}, "summary table")
    unknown = set(parts) - set(PARTS)
    if not parts or unknown:
        raise ValueError(f"parts must be a non-empty subset of {PARTS}; got {parts!r}")
    table = with_parts(summary)
    table["group"] = group_label(table, parts)
    grouped = table.groupby(["mapping", "area", "group"], sort=False)
    return pd.DataFrame({
        "score": grouped["score"].mean(),
        "score_sd": grouped["score"].std(ddof=1),
        "n_models": grouped["score"].count(),
        "score_ceiling": grouped["score_ceiling"].first(),
    }).reset_index()


def _plot_groups(summary_path, out, parts: tuple[str, ...], dpi) -> pd.DataFrame:
    """One panel per mapping: each group's best-layer score per area, ceiling as a grey bar.

    Points are the mean over the models of a group (seeds, and any part not in `parts`) with
    their s.d. as error bars. Returns the points drawn (`by_parts`).
    """
    table = by_parts(pd.read_csv(summary_path), parts)
    mappings = list(dict.fromkeys(table["mapping"]))
    areas = area_order(table["area"])
    groups = list(dict.fromkeys(table["group"]))
    colours = plt.get_cmap("tab20" if len(groups) > 10 else "tab10").colors
    width = 0.8 / max(len(groups), 1)
    fig, axes = plt.subplots(len(mappings), 1,
                             figsize=(1.1 * len(areas) * max(1, len(groups) / 3) + 2, 2.4 * len(mappings)),
                             sharex=True, squeeze=False)
    for ax, mapping in zip(axes[:, 0], mappings):
        sub = table[table["mapping"] == mapping]
        ceilings = sub.groupby("area", sort=False)["score_ceiling"].first()
        for x, area in enumerate(areas):
            if area in ceilings and np.isfinite(ceilings[area]):
                ax.fill_between([x - 0.45, x + 0.45], 0, ceilings[area], color="0.88", zorder=0,
                                label="inter-animal ceiling" if x == 0 else None)
        for k, group in enumerate(groups):
            rows = sub[sub["group"] == group].set_index("area").reindex(areas)
            xs = np.arange(len(areas)) - 0.4 + width * (k + 0.5)
            ax.errorbar(xs, rows["score"], yerr=rows["score_sd"].fillna(0), fmt="o", ms=4,
                        color=colours[k % len(colours)], capsize=2, lw=1, label=group)
        ax.set_ylabel(f"{mapping}\nbest-layer score")
        ax.axhline(0, color="0.6", lw=0.6)
    axes[-1, 0].set_xticks(range(len(areas)), areas)
    axes[0, 0].legend(fontsize=7, frameon=False, ncol=min(len(groups) + 1, 4), loc="lower left",
                      bbox_to_anchor=(0, 1.02))
    fig.suptitle(f"Predictivity by {' × '.join(parts)} (final epoch, mean ± s.d. over models)",
                 fontsize=9, y=0.99 + 0.03 * np.ceil((len(groups) + 1) / 4))
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return table


def plot_predictivity_by_rule(summary_path, out, *, dpi=150) -> pd.DataFrame:
    """Best-layer predictivity per area by learning rule (mean ± s.d. over the other parts)."""
    return _plot_groups(summary_path, out, ("rule",), dpi)


def plot_predictivity_by_model(summary_path, out, *, dpi=150) -> pd.DataFrame:
    """Best-layer predictivity per area by architecture × objective (mean ± s.d. over the rest)."""
    return _plot_groups(summary_path, out, ("arch", "objective"), dpi)


def performance_table(summary: pd.DataFrame, transfer: pd.DataFrame) -> pd.DataFrame:
    """Each model's best-layer score per area and mapping beside its linear-evaluation top-1.

    Parameters
    ----------
    summary : pandas.DataFrame
        Predictivity summary (model, area, mapping, score, score_ceiling).
    transfer : pandas.DataFrame
        Linear-evaluation results of the same models (model, epoch, top1, chance); the last
        epoch of each model is used, as in the summary.

    Returns
    -------
    pandas.DataFrame
        The summary rows with `top1` and `chance` added, and arch/objective/rule/seed parsed.
    """
    _check_columns(summary, {"model", "area", "mapping", "score", "score_ceiling"}, "summary table")
    _check_columns(transfer, {"model", "epoch", "top1", "chance"}, "transfer table")
    last = transfer[transfer["epoch"] == transfer.groupby("model")["epoch"].transform("max")]
    missing = sorted(set(summary["model"]) - set(last["model"]))
    if missing:
        raise ValueError(f"transfer table has no rows for model(s) {missing}")
    merged = summary.merge(last[["model", "top1", "chance"]], on="model", how="left")
    return with_parts(merged)


def read_transfer(path) -> pd.DataFrame:
    """A model's linear-evaluation table, `model` taken from its name (results/transfer/{model}.csv)."""
    table = pd.read_csv(path)
    if "model" not in table.columns:
        table.insert(0, "model", Path(path).stem)
    return table


def rank_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman ρ between top-1 and score across models, per mapping and area (NaN under 3)."""
    rows = []
    for (mapping, area), sub in table.groupby(["mapping", "area"], sort=False):
        ok = sub[["top1", "score"]].dropna()
        rho = spearmanr(ok["top1"], ok["score"]).statistic if len(ok) >= 3 else np.nan
        rows.append({"mapping": mapping, "area": area, "rho": rho, "n_models": len(ok)})
    return pd.DataFrame(rows)


def plot_performance_vs_predictivity(summary_path, transfer_paths, out, *, dpi=150) -> pd.DataFrame:
    """Best-layer score against linear-evaluation top-1, one panel per mapping × area.

    Colour marks the objective, marker shape the architecture, fill the learning rule (bp
    filled); the grey line is the area's inter-animal ceiling and the dotted line chance
    top-1. Panel titles give Spearman's ρ across models. Returns the points drawn
    (`performance_table`).
    """
    transfer = pd.concat([read_transfer(p) for p in transfer_paths], ignore_index=True)
    table = performance_table(pd.read_csv(summary_path), transfer)
    rhos = rank_correlations(table).set_index(["mapping", "area"])["rho"]
    mappings = list(dict.fromkeys(table["mapping"]))
    areas = area_order(table["area"])
    objectives = list(dict.fromkeys(table["objective"]))
    archs = list(dict.fromkeys(table["arch"]))
    colours = dict(zip(objectives, plt.get_cmap("tab10").colors))
    markers = dict(zip(archs, "osD^vP*Xh<>"))
    fig, axes = mapping_area_grid(mappings, areas, width=2.3, height=2.2)
    for i, mapping in enumerate(mappings):
        for j, area in enumerate(areas):
            ax = axes[i][j]
            sub = table[(table["mapping"] == mapping) & (table["area"] == area)]
            ceiling = sub["score_ceiling"].iloc[0] if len(sub) else np.nan
            if np.isfinite(ceiling):
                ax.axhline(ceiling, color="0.6", lw=1, zorder=0)
            ax.axvline(sub["chance"].iloc[0] if len(sub) else np.nan, color="0.6", lw=0.8, ls=":")
            for _, row in sub.iterrows():
                colour = colours[row["objective"]]
                ax.scatter(row["top1"], row["score"], marker=markers[row["arch"]], s=22,
                           color=colour if row["rule"] == "bp" else "none", edgecolors=colour)
            rho = rhos.get((mapping, area), np.nan)
            ax.set_title(f"{area}  ρ={rho:.2f}" if np.isfinite(rho) else area, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{mapping}\nbest-layer score")
            if i == len(mappings) - 1:
                ax.set_xlabel("linear-eval top-1")
    handles = [plt.Line2D([], [], lw=4, color=c, label=o) for o, c in colours.items()]
    handles += [plt.Line2D([], [], ls="", marker=m, color="0.3", label=a) for a, m in markers.items()]
    fig.legend(handles=handles, fontsize=7, frameon=False, loc="upper center",
               ncol=min(len(handles), 6), bbox_to_anchor=(0.5, 1.0))
    fig.suptitle("Task performance vs neural predictivity (final epoch; open markers: non-bp rules)",
                 fontsize=9, y=1.06)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return table
