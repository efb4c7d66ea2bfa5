"""Representational geometry figures (P3): dimensionality over training, linear-probe accuracy
per layer, and rule × rule RDM similarity per layer.

They read the tables of `pipeline.compare.geometry` (one per model, with model-name columns)
and `pipeline.compare.rule_similarity`. Seeds are averaged; a recurrent model's last time step
stands for the layer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from pipeline.figures.style import plt, save

CLASS_PARTS = ("arch", "objective", "rule")


def _check_columns(table: pd.DataFrame, needed: set[str], what: str) -> None:
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"{what} lacks column(s) {sorted(missing)}; found {list(table.columns)}")


def _frame(table) -> pd.DataFrame:
    """A table given as a DataFrame or a Parquet path."""
    return table if isinstance(table, pd.DataFrame) else pd.read_parquet(table)


def _last_time(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of each model's last time step (feedforward layers have time 0 only)."""
    if "time" not in table.columns:
        return table
    return table[table["time"] == table.groupby("model")["time"].transform("max")]


def _class_labels(table: pd.DataFrame) -> pd.Series:
    """"rule" when the models share one arch × objective, else "arch · objective · rule"."""
    one_family = table[["arch", "objective"]].drop_duplicates().shape[0] == 1
    parts = ["rule"] if one_family else list(CLASS_PARTS)
    return table[parts].astype(str).agg(" · ".join, axis=1)


def _layer_colours(layers):
    cmap = plt.get_cmap("viridis")
    return {layer: cmap(k / max(len(layers) - 1, 1) * 0.9) for k, layer in enumerate(layers)}


def geometry_summary(layers: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max over seeds of participation ratio and components, per class, layer
    and epoch (the points `plot_geometry` draws)."""
    _check_columns(layers, {"model", *CLASS_PARTS, "layer", "epoch", "participation_ratio",
                            "n_components", "variance"}, "geometry table")
    table = _last_time(layers).assign(group=lambda t: _class_labels(t))
    grouped = table.groupby(["group", "layer", "epoch"], sort=False)
    out = grouped.agg(participation_ratio=("participation_ratio", "mean"),
                      participation_ratio_min=("participation_ratio", "min"),
                      participation_ratio_max=("participation_ratio", "max"),
                      n_components=("n_components", "mean"),
                      n_components_min=("n_components", "min"),
                      n_components_max=("n_components", "max"),
                      variance=("variance", "first"), n_models=("model", "nunique"))
    return out.reset_index()


def plot_geometry(tables, out, *, dpi=150) -> pd.DataFrame:
    """Participation ratio and components for the variance share over epochs, and the final
    normalised PCA spectrum, per layer; one column per learning rule (arch · objective · rule
    when the models differ in more than the rule).

    Parameters
    ----------
    tables : list of path-like or DataFrame
        The geometry tables of every model (results/geometry/layers/...) and, in any order,
        their spectra (results/geometry/spectrum/...; told apart by a `component` column).
    out : path-like
        Figure file; its suffix gives the format.

    Returns
    -------
    pandas.DataFrame
        The drawn points (`geometry_summary`).
    """
    frames = [_frame(table) for table in tables]
    layers = [f for f in frames if "component" not in f.columns]
    spectra = [f for f in frames if "component" in f.columns]
    if not layers:
        raise ValueError("plot_geometry needs at least one geometry table (without a `component` column)")
    summary = geometry_summary(pd.concat(layers, ignore_index=True))
    spectrum = pd.concat(spectra, ignore_index=True) if spectra else None
    if spectrum is not None:
        _check_columns(spectrum, {"model", *CLASS_PARTS, "layer", "epoch", "component",
                                  "explained_variance_ratio"}, "spectrum table")
        spectrum = _last_time(spectrum)
        spectrum = spectrum[spectrum["epoch"] == spectrum.groupby("model")["epoch"].transform("max")]
        spectrum = spectrum.assign(group=_class_labels(spectrum))
    groups = list(dict.fromkeys(summary["group"]))
    n_rows = 3 if spectrum is not None else 2
    fig, axes = plt.subplots(n_rows, len(groups), figsize=(2.6 * len(groups) + 1, 2.2 * n_rows),
                             squeeze=False, sharex="row", sharey="row")
    variance = summary["variance"].iloc[0]
    for column, group in enumerate(groups):
        rows = summary[summary["group"] == group]
        colours = _layer_colours(list(dict.fromkeys(rows["layer"])))
        for layer, colour in colours.items():
            line = rows[rows["layer"] == layer].sort_values("epoch")
            for ax, key in zip(axes[:2, column], ("participation_ratio", "n_components")):
                ax.plot(line["epoch"], line[key], "o-", ms=3, lw=1.2, color=colour, label=layer)
                if line["n_models"].max() > 1:
                    ax.fill_between(line["epoch"], line[f"{key}_min"], line[f"{key}_max"],
                                    color=colour, alpha=0.2, lw=0)
            if spectrum is not None:
                curve = (spectrum[(spectrum["group"] == group) & (spectrum["layer"] == layer)]
                         .groupby("component")["explained_variance_ratio"].mean())
                curve = curve[curve > 0]
                axes[2, column].loglog(curve.index, curve.values, lw=1.2, color=colour)
        axes[0, column].set_title(group, fontsize=9)
        axes[1, column].set_xlabel("epoch")
        for ax in axes[:2, column]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, -1].legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                       title="layer", title_fontsize=6)
    axes[0, 0].set_ylabel("participation ratio")
    axes[1, 0].set_ylabel(f"components for\n{variance:.0%} variance")
    if spectrum is not None:
        axes[2, 0].set_ylabel("explained variance ratio\n(final epoch)")
        for ax in axes[2]:
            ax.set_xlabel("component")
    fig.suptitle("Representational dimensionality per layer (mean over seeds, band: min–max)",
                 fontsize=9)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return summary


def probe_summary(layers: pd.DataFrame) -> pd.DataFrame:
    """Linear-probe accuracy at each model's final epoch per family (arch · objective), rule and
    layer: mean and s.d. over seeds, the chance level, and the untrained (epoch 0) mean of the
    family's models as `untrained`."""
    _check_columns(layers, {"model", *CLASS_PARTS, "layer", "epoch", "probe_accuracy",
                            "probe_chance"}, "geometry table")
    table = _last_time(layers).assign(family=lambda t: t["arch"] + " · " + t["objective"])
    final = table[table["epoch"] == table.groupby("model")["epoch"].transform("max")]
    grouped = final.groupby(["family", "rule", "layer"], sort=False)
    out = grouped.agg(probe_accuracy=("probe_accuracy", "mean"),
                      probe_accuracy_sd=("probe_accuracy", "std"),
                      probe_chance=("probe_chance", "first"), epoch=("epoch", "max"),
                      n_models=("model", "nunique")).reset_index()
    untrained = (table[(table["epoch"] == 0) & (table["epoch"] < table.groupby("model")["epoch"].transform("max"))]
                 .groupby(["family", "layer"])["probe_accuracy"].mean().rename("untrained"))
    return out.join(untrained, on=["family", "layer"])


def plot_probe_accuracy(tables, out, *, dpi=150) -> pd.DataFrame:
    """Linear-probe accuracy per layer by learning rule at the final epoch, one panel per
    architecture × objective; the untrained network (dashed) and chance (dotted) drawn in.

    Parameters
    ----------
    tables : list of path-like or DataFrame
        Geometry tables of every model (spectra, if passed, are ignored).

    Returns
    -------
    pandas.DataFrame
        The drawn points (`probe_summary`).
    """
    frames = [_frame(table) for table in tables]
    layers = pd.concat([f for f in frames if "component" not in f.columns], ignore_index=True)
    summary = probe_summary(layers)
    families = list(dict.fromkeys(summary["family"]))
    rules = list(dict.fromkeys(summary["rule"]))
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, len(families), figsize=(3.4 * len(families) + 1, 2.8), squeeze=False,
                             sharey=True)
    for ax, family in zip(axes[0], families):
        rows = summary[summary["family"] == family]
        order = list(dict.fromkeys(rows["layer"]))
        x = {layer: k for k, layer in enumerate(order)}
        for k, rule in enumerate(rules):
            line = rows[rows["rule"] == rule]
            if line.empty:
                continue
            ax.errorbar(line["layer"].map(x), line["probe_accuracy"],
                        yerr=line["probe_accuracy_sd"].fillna(0), fmt="o-", ms=3, lw=1.2, capsize=2,
                        color=colours[k % len(colours)], label=rule)
        base = rows.drop_duplicates("layer").set_index("layer").reindex(order)
        if base["untrained"].notna().any():
            ax.plot(range(len(order)), base["untrained"], "--", color="0.5", lw=1, label="untrained")
        ax.axhline(base["probe_chance"].iloc[0], color="0.6", ls=":", lw=1, label="chance")
        ax.set_xticks(range(len(order)), order, rotation=30, fontsize=7)
        ax.set_title(family, fontsize=9)
        ax.set_ylim(0, 1.02)
    axes[0, 0].set_ylabel("linear-probe accuracy\n(cross-validated)")
    axes[0, -1].legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Linear decodability of the stimulus labels per layer (final epoch, mean ± s.d. "
                 "over seeds)", fontsize=9)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return summary


def plot_rule_similarity(table, out, *, dpi=150) -> pd.DataFrame:
    """Rule × rule RDM similarity heat maps, one per layer (columns) and architecture ×
    objective (rows), at the last epoch in the table; each cell gives the similarity and its
    bootstrap interval over stimuli. The diagonal compares seeds of one rule (blank with one);
    a family of a single model gets no row.

    Returns
    -------
    pandas.DataFrame
        The drawn cells.
    """
    table = _frame(table)
    _check_columns(table, {"arch", "objective", "layer", "epoch", "rule_a", "rule_b", "similarity",
                           "ci_low", "ci_high", "compare", "ci"}, "rule similarity table")
    if "time" in table.columns:
        table = table[table["time"] == table["time"].max()]
    table = table[table["epoch"] == table["epoch"].max()]
    table = table.assign(family=table["arch"] + " · " + table["objective"])
    # a family of one model (one rule, one seed) has nothing to compare: no panel
    table = table[table.groupby("family")["similarity"].transform(lambda v: v.notna().any())]
    if table.empty:
        fig, ax = plt.subplots(figsize=(4, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no architecture × objective with two models to compare", ha="center",
                va="center", fontsize=8)
        save(fig, out, dpi=dpi)
        return table
    families = list(dict.fromkeys(table["family"]))
    n_layers = max(table[table["family"] == f]["layer"].nunique() for f in families)
    n_rules = table["rule_a"].nunique()
    size = 0.5 * n_rules + 1.2
    fig, axes = plt.subplots(len(families), n_layers, figsize=(size * n_layers + 1, size * len(families)),
                             squeeze=False)
    finite = table["similarity"].dropna()
    vmin = min(0.0, finite.min()) if not finite.empty else 0.0
    image = None
    for row, family in enumerate(families):
        rows = table[table["family"] == family]
        layers = list(dict.fromkeys(rows["layer"]))
        rules = list(dict.fromkeys(rows["rule_a"]))
        for column in range(n_layers):
            ax = axes[row, column]
            if column >= len(layers):
                ax.axis("off")
                continue
            cells = rows[rows["layer"] == layers[column]]
            grid = cells.pivot(index="rule_a", columns="rule_b", values="similarity").reindex(
                index=rules, columns=rules)
            low = cells.pivot(index="rule_a", columns="rule_b", values="ci_low").reindex(index=rules, columns=rules)
            high = cells.pivot(index="rule_a", columns="rule_b", values="ci_high").reindex(index=rules, columns=rules)
            image = ax.imshow(grid.to_numpy(float), vmin=vmin, vmax=1.0, cmap="viridis")
            for i in range(len(rules)):
                for j in range(len(rules)):
                    value = grid.iat[i, j]
                    if np.isfinite(value):
                        text = f"{value:.2f}"
                        if np.isfinite(low.iat[i, j]) and len(rules) <= 6:
                            text += f"\n[{low.iat[i, j]:.2f}, {high.iat[i, j]:.2f}]"
                        ax.text(j, i, text, ha="center", va="center", fontsize=5,
                                color="white" if value < (vmin + 1) / 2 else "black")
            ax.set_xticks(range(len(rules)), rules, rotation=45, fontsize=6)
            ax.set_yticks(range(len(rules)), rules, fontsize=6)
            ax.set_title(f"{family}\n{layers[column]}" if column == 0 else layers[column], fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label=f"RDM similarity ({table['compare'].iloc[0]})")
    fig.suptitle(f"Rule × rule RDM similarity per layer (epoch {table['epoch'].max()}, "
                 f"{table['ci'].iloc[0]:.0%} bootstrap interval over stimuli)", fontsize=8)
    save(fig, out, dpi=dpi)
    return table
