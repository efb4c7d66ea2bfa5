"""Neural dynamics figures (spec §4.4, thesis Fig. 2.4): predictivity over time against the
ceiling band, and early vs late phase per model (feedforward vs recurrent)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.figures.style import mapping_area_grid, plt, save

CEILING = "inter-animal"


def _label(row):
    mapping = row.get("time_mapping")
    return row["model"] if not isinstance(mapping, str) or not mapping else f"{row['model']} ({mapping})"


def _read(path, columns):
    table = pd.read_csv(path)
    missing = sorted(set(columns) - set(table.columns))
    if missing:
        raise ValueError(f"{path}: columns {missing} missing; expected a temporal_summary table")
    return table


def plot_predictivity_over_time(bins_path, out, *, dpi=150) -> pd.DataFrame:
    """Median predictivity per bin for each model, a panel per (map kind × mapping, area), with
    the inter-animal ceiling's median ± s.e.m. over units as a grey band.

    Parameters
    ----------
    bins_path : path
        ``temporal_summary`` per-bin table (CSV): model, area, temporal, mapping, time_bin,
        median, sem.
    out : path
        Figure file.

    Returns
    -------
    pandas.DataFrame
        The points drawn.
    """
    table = _read(bins_path, ("model", "area", "temporal", "mapping", "time_bin", "median", "sem"))
    table["row"] = table["temporal"] + " · " + table["mapping"]
    table["label"] = table.apply(_label, axis=1)
    rows, areas = list(dict.fromkeys(table["row"])), list(dict.fromkeys(table["area"]))
    fig, axes = mapping_area_grid(rows, areas, width=3.2, height=2.6)
    models = [m for m in dict.fromkeys(table["label"]) if m != CEILING]
    colours = dict(zip(models, plt.get_cmap("tab10").colors * 3))
    for i, row_name in enumerate(rows):
        for j, area in enumerate(areas):
            ax = axes[i][j]
            panel = table[(table["row"] == row_name) & (table["area"] == area)].sort_values("time_bin")
            ceiling = panel[panel["model"] == CEILING]
            t_ms = 1000 * ceiling["time_bin"]
            ax.fill_between(t_ms, ceiling["median"] - ceiling["sem"].fillna(0),
                            ceiling["median"] + ceiling["sem"].fillna(0), color="0.8", label="ceiling ± s.e.m.")
            for label, group in panel[panel["model"] != CEILING].groupby("label", sort=False):
                ax.plot(1000 * group["time_bin"], group["median"], lw=1.2, color=colours[label], label=label)
            ax.set(title=f"{area}\n{row_name}", xlabel="time bin start (ms)")
        axes[i][0].set_ylabel("median score")
    axes[0][-1].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return table


def plot_phases(phases_path, out, *, dpi=150) -> pd.DataFrame:
    """Early vs late phase medians (± s.e.m.) per model, a panel per (map kind × mapping, area);
    the ceiling's phases are the grey bars.

    Parameters
    ----------
    phases_path : path
        ``temporal_summary`` phase table (CSV): model, area, temporal, mapping, phase, median, sem.
    out : path
        Figure file.
    """
    table = _read(phases_path, ("model", "area", "temporal", "mapping", "phase", "median", "sem"))
    table["row"] = table["temporal"] + " · " + table["mapping"]
    table["label"] = table.apply(_label, axis=1)
    rows, areas = list(dict.fromkeys(table["row"])), list(dict.fromkeys(table["area"]))
    phases = list(dict.fromkeys(table["phase"]))
    labels = [CEILING] + [m for m in dict.fromkeys(table["label"]) if m != CEILING]
    colours = {CEILING: "0.75", **dict(zip(labels[1:], plt.get_cmap("tab10").colors * 3))}
    fig, axes = mapping_area_grid(rows, areas, width=0.9 + 0.6 * len(labels), height=2.6)
    width = 0.8 / len(labels)
    for i, row_name in enumerate(rows):
        for j, area in enumerate(areas):
            ax = axes[i][j]
            panel = table[(table["row"] == row_name) & (table["area"] == area)].set_index(["label", "phase"])
            for k, label in enumerate(labels):
                values = [panel["median"].get((label, p), np.nan) for p in phases]
                errors = [panel["sem"].get((label, p), np.nan) for p in phases]
                ax.bar(np.arange(len(phases)) + (k - (len(labels) - 1) / 2) * width, values, width,
                       yerr=np.nan_to_num(errors), color=colours[label], label=label, capsize=2)
            ax.set_xticks(np.arange(len(phases)), phases)
            ax.set(title=f"{area}\n{row_name}")
        axes[i][0].set_ylabel("median score")
    axes[0][-1].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return table
