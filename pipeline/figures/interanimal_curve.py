"""Inter-animal consistency against the number of stimuli (spec §2.3, thesis Fig. 3.13B)."""

from __future__ import annotations

import pandas as pd

from pipeline.compare.aggregate import median_over_units
from pipeline.figures.style import plt, save


def plot_interanimal_curve(curve_path, out, *, dpi=150) -> pd.DataFrame:
    """Median consistency (± s.e.m. over units) per area against stimuli used, a panel per mapping.

    Parameters
    ----------
    curve_path : path
        `interanimal_curve` table (Parquet) with an `n_stimuli` column.
    out : path
        Figure file.

    Returns
    -------
    pandas.DataFrame
        The points drawn: `median_over_units` of the table per area, mapping and n_stimuli.
    """
    table = pd.read_parquet(curve_path)
    if "n_stimuli" not in table.columns:
        raise ValueError(f"{curve_path}: no 'n_stimuli' column; expected an interanimal_curve table")
    summary = median_over_units(table)
    mappings = list(dict.fromkeys(table["mapping"]))
    areas = list(dict.fromkeys(table["area"]))
    colours = dict(zip(areas, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(1, len(mappings), figsize=(3.4 * len(mappings), 3), sharey=True, squeeze=False)
    for ax, mapping in zip(axes[0], mappings):
        for area in areas:
            rows = summary[(summary["mapping"] == mapping) & (summary["area"] == area)].sort_values("n_stimuli")
            ax.errorbar(rows["n_stimuli"], rows["score"], yerr=rows["score_sem"].fillna(0), marker="o", ms=3,
                        lw=1, capsize=2, color=colours[area], label=area)
        ax.set(title=mapping, xlabel="stimuli used")
    axes[0][0].set_ylabel("inter-animal consistency\n(median score)")
    axes[0][-1].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return summary
