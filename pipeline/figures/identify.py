"""Learning-rule identification figures (spec_ch5-6 B.7, thesis Figs. 6.4–6.15); they only read
the tables of rule `identify`.

`plot_identify_accuracy`: mean test accuracy (± s.d. over splits) per observable × classifier,
for the random splits, the class pairs (pooled), the trajectory-averaged control and each
holdout, with chance.
`plot_identify_confusion`: row-normalised confusion matrices, one per observable × classifier.
`plot_identify_trajectory`: accuracy against the number of samples per period, and the
train-third × test-third matrices. `plot_identify_units`: accuracy against the fraction of units
measured, one line per noise level. `plot_identify_importance`: random-forest Gini and
permutation importance per statistic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.figures.style import plt, save

THIRDS = ("early", "middle", "late")


def _read(table, needed, what) -> pd.DataFrame:
    table = pd.read_parquet(table) if isinstance(table, (str, Path)) else table
    missing = set(needed) - set(table.columns)
    if missing:
        raise ValueError(f"{what} lacks column(s) {sorted(missing)}; found {list(table.columns)}")
    return table


def _empty(out, dpi, message):
    """A figure that says why there is nothing to draw (an analysis the config left out)."""
    fig, ax = plt.subplots(figsize=(4, 1.5))
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=8, wrap=True)
    ax.axis("off")
    save(fig, out, dpi=dpi)


def _accuracy(table, analysis):
    return _read(table, {"analysis", "observable", "classifier", "accuracy", "chance"},
                 "accuracy table").query("analysis == @analysis")


def plot_identify_accuracy(accuracy, out, *, dpi=150) -> pd.DataFrame:
    """Grouped bars: observables along x, one bar per classifier; a panel per analysis
    (random splits, trajectory-averaged, each held-out factor). Returns the drawn means."""
    table = _read(accuracy, {"analysis", "observable", "classifier", "accuracy", "chance",
                             "held_out_by"}, "accuracy table")
    table = table.assign(panel=np.where(table["analysis"] == "holdout",
                                        "holdout: " + table["held_out_by"].astype(str),
                                        table["analysis"]))
    panels = [p for p in ["separability", "pairwise", "averaged"] if p in set(table["panel"])]
    panels += sorted(p for p in set(table["panel"]) if p.startswith("holdout"))
    if not panels:
        _empty(out, dpi, "no separability results")
        return table.iloc[:0]
    observables = list(dict.fromkeys(table["observable"]))
    classifiers = list(dict.fromkeys(table["classifier"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), sharey=True,
                             squeeze=False)
    width = 0.8 / len(classifiers)
    means = []
    for ax, panel in zip(axes[0], panels):
        rows = table[table["panel"] == panel]
        stats = rows.groupby(["observable", "classifier"])["accuracy"].agg(["mean", "std"])
        for k, classifier in enumerate(classifiers):
            values = stats.reindex([(o, classifier) for o in observables])
            ax.bar(np.arange(len(observables)) + (k - (len(classifiers) - 1) / 2) * width,
                   values["mean"], width, yerr=values["std"].fillna(0), label=classifier,
                   capsize=2)
        ax.axhline(rows["chance"].mean(), color="k", ls="--", lw=1, label="chance")
        ax.set_xticks(range(len(observables)), [o.replace("_", "\n") for o in observables],
                      fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(panel, fontsize=8)
        means.append(stats.reset_index().assign(panel=panel))
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, -1].legend(fontsize=6, loc="lower right")
    save(fig, out, dpi=dpi)
    return pd.concat(means, ignore_index=True)


def plot_identify_confusion(confusion, out, *, dpi=150) -> None:
    """Confusion matrices summed over splits, rows normalised (P(predicted | true))."""
    table = _read(confusion, {"observable", "classifier", "true", "predicted", "count"},
                  "confusion table")
    if table.empty:
        _empty(out, dpi, "no confusion matrices")
        return
    observables = list(dict.fromkeys(table["observable"]))
    classifiers = list(dict.fromkeys(table["classifier"]))
    classes = sorted(set(table["true"]) | set(table["predicted"]))
    fig, axes = plt.subplots(len(classifiers), len(observables), squeeze=False,
                             figsize=(2.2 * len(observables), 2.2 * len(classifiers)))
    for i, classifier in enumerate(classifiers):
        for j, observable in enumerate(observables):
            rows = table[(table["classifier"] == classifier) & (table["observable"] == observable)]
            counts = rows.pivot_table(index="true", columns="predicted", values="count",
                                      aggfunc="sum").reindex(index=classes, columns=classes)
            counts = counts.fillna(0).to_numpy()
            share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
            ax = axes[i, j]
            ax.imshow(share, vmin=0, vmax=1, cmap="viridis")
            for (r, c), value in np.ndenumerate(share):
                ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if value > 0.6 else "white")
            ax.set_xticks(range(len(classes)), classes, fontsize=6, rotation=45)
            ax.set_yticks(range(len(classes)), classes, fontsize=6)
            ax.set_title(f"{observable} · {classifier}", fontsize=7)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("true", fontsize=8)
    save(fig, out, dpi=dpi)


def plot_identify_trajectory(accuracy, out, *, dpi=150) -> None:
    """Top row: accuracy vs number of samples, a line per period; bottom row: train-third ×
    test-third accuracy; one column per observable (classifiers as line styles / rows)."""
    table = _read(accuracy, {"analysis", "observable", "classifier", "accuracy", "period",
                             "n_samples", "train_third", "test_third"}, "accuracy table")
    traj = table[table["analysis"] == "trajectory"]
    thirds = table[table["analysis"] == "thirds"]
    if traj.empty and thirds.empty:
        _empty(out, dpi, "no trajectory analyses in this run")
        return
    observables = list(dict.fromkeys(pd.concat([traj, thirds])["observable"]))
    classifiers = list(dict.fromkeys(pd.concat([traj, thirds])["classifier"]))
    n_rows = 1 + len(classifiers)
    fig, axes = plt.subplots(n_rows, len(observables), squeeze=False,
                             figsize=(3 * len(observables), 2.6 * n_rows))
    styles = ["-", "--", ":", "-."]
    for j, observable in enumerate(observables):
        ax = axes[0, j]
        rows = traj[traj["observable"] == observable]
        for (period, classifier), group in rows.groupby(["period", "classifier"], sort=False):
            mean = group.groupby("n_samples")["accuracy"].mean()
            ax.plot(mean.index, mean.values, marker="o", ms=3,
                    ls=styles[classifiers.index(classifier) % len(styles)],
                    label=f"{period} · {classifier}")
        if not rows.empty:
            ax.axhline(rows["chance"].mean(), color="k", ls="--", lw=1)
            ax.legend(fontsize=5)
        ax.set_ylim(0, 1)
        ax.set_xlabel("trajectory samples", fontsize=7)
        ax.set_title(observable, fontsize=8)
        for i, classifier in enumerate(classifiers, start=1):
            ax = axes[i, j]
            rows = thirds[(thirds["observable"] == observable)
                          & (thirds["classifier"] == classifier)]
            grid = (rows.groupby(["train_third", "test_third"])["accuracy"].mean()
                    .unstack().reindex(index=list(THIRDS), columns=list(THIRDS)))
            ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis")
            for (r, c), value in np.ndenumerate(grid.to_numpy(dtype=float)):
                if np.isfinite(value):
                    ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=6,
                            color="black" if value > 0.6 else "white")
            ax.set_xticks(range(3), THIRDS, fontsize=6)
            ax.set_yticks(range(3), THIRDS, fontsize=6)
            ax.set_title(f"thirds · {classifier} (train ↓, test →)", fontsize=7)
    axes[0, 0].set_ylabel("test accuracy")
    save(fig, out, dpi=dpi)


def plot_identify_units(accuracy, out, *, dpi=150) -> None:
    """Accuracy (mean over draws and splits) against the unit fraction on a log axis, a line
    per noise level; a panel per observable × classifier."""
    table = _read(accuracy, {"analysis", "observable", "classifier", "accuracy", "fraction",
                             "noise"}, "accuracy table")
    rows = table[table["analysis"] == "units"]
    if rows.empty:
        _empty(out, dpi, "no unit-subsampling analysis in this run "
                         "(identify.observables.units selects its runs)")
        return
    observables = list(dict.fromkeys(rows["observable"]))
    classifiers = list(dict.fromkeys(rows["classifier"]))
    fig, axes = plt.subplots(len(classifiers), len(observables), squeeze=False, sharey=True,
                             figsize=(3 * len(observables), 2.6 * len(classifiers)))
    for i, classifier in enumerate(classifiers):
        for j, observable in enumerate(observables):
            ax = axes[i, j]
            part = rows[(rows["observable"] == observable) & (rows["classifier"] == classifier)]
            for noise, group in part.groupby("noise"):
                mean = group.groupby("fraction")["accuracy"].mean()
                ax.plot(mean.index, mean.values, marker="o", ms=3, label=f"noise {noise:g}")
            ax.axhline(part["chance"].mean(), color="k", ls="--", lw=1)
            ax.set_xscale("log")
            ax.set_ylim(0, 1)
            ax.set_title(f"{observable} · {classifier}", fontsize=7)
            ax.set_xlabel("fraction of units", fontsize=7)
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, -1].legend(fontsize=6)
    save(fig, out, dpi=dpi)


def plot_identify_importance(importance, out, *, dpi=150) -> pd.DataFrame:
    """Horizontal bars of each statistic's mean importance over splits, Gini beside
    permutation, a panel per observable. Returns the means drawn."""
    table = _read(importance, {"observable", "kind", "statistic", "importance"},
                  "importance table")
    if table.empty:
        _empty(out, dpi, "no random-forest importance (rf not among the classifiers)")
        return table
    means = table.groupby(["observable", "kind", "statistic"])["importance"].mean().reset_index()
    observables = list(dict.fromkeys(table["observable"]))
    kinds = list(dict.fromkeys(table["kind"]))
    n_stats = max(means.groupby("observable")["statistic"].nunique())
    fig, axes = plt.subplots(1, len(observables), squeeze=False,
                             figsize=(3.4 * len(observables), 0.18 * n_stats + 1.2))
    height = 0.8 / len(kinds)
    for ax, observable in zip(axes[0], observables):
        rows = means[means["observable"] == observable]
        order = (rows[rows["kind"] == kinds[0]].sort_values("importance")["statistic"].tolist())
        for k, kind in enumerate(kinds):
            values = rows[rows["kind"] == kind].set_index("statistic")["importance"].reindex(order)
            ax.barh(np.arange(len(order)) + k * height, values.values, height, label=kind)
        ax.set_yticks(np.arange(len(order)) + height * (len(kinds) - 1) / 2, order, fontsize=5)
        ax.set_title(observable, fontsize=8)
        ax.set_xlabel("importance (summed over time)", fontsize=7)
    axes[0, -1].legend(fontsize=6)
    save(fig, out, dpi=dpi)
    return means
