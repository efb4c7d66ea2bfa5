"""Object solution time figures (spec §4.3, Fig. 2.5): OST consistency per model with its
shuffle null interval, and each model's OST against the reference OST, image by image.

Reads only the tables of `pipeline.compare.ost` (`consistency_table` and the per-model OST
tables).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.figures.style import plt, save

CONSISTENCY_COLUMNS = {"model", "rho", "null_low", "null_high", "n_images"}
OST_COLUMNS = {"model", "ost_ms", "reference_ost_ms"}


def _check_columns(table: pd.DataFrame, needed: set[str], what: str) -> None:
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"{what} lacks column(s) {sorted(missing)}; found {list(table.columns)}")


def plot_ost(consistency: pd.DataFrame, ost_tables, out, *, dpi: int = 150) -> None:
    """Left: OST consistency (Spearman ρ) per model, the grey band its shuffle null interval.
    Right and on: one scatter per model of model OST vs reference OST over the images both
    solve.

    Parameters
    ----------
    consistency : pandas.DataFrame
        `pipeline.compare.ost.consistency_table` output.
    ost_tables : list of pandas.DataFrame
        Per-model OST tables (`pipeline.compare.ost.model_ost`'s second output).
    out : path-like
        Figure file; its suffix gives the format.
    """
    _check_columns(consistency, CONSISTENCY_COLUMNS, "OST consistency table")
    for table in ost_tables:
        _check_columns(table, OST_COLUMNS, "OST table")
    models = list(consistency["model"])
    fig, axes = plt.subplots(1, 1 + len(ost_tables), figsize=(3.2 * (1 + len(ost_tables)), 3.2),
                             squeeze=False)
    ax = axes[0, 0]
    y = np.arange(len(models))
    for k, row in enumerate(consistency.itertuples()):
        ax.fill_betweenx([k - 0.4, k + 0.4], row.null_low, row.null_high, color="0.85", lw=0)
    ax.barh(y, consistency["rho"].fillna(0.0), height=0.5, color="tab:blue")
    for k, row in enumerate(consistency.itertuples()):
        label = f"n={row.n_images}" if np.isfinite(row.rho) else f"undefined (n={row.n_images})"
        ax.annotate(label, (0, k), xytext=(3, 8), textcoords="offset points", fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, models, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("OST consistency (Spearman ρ)")
    ax.set_title("grey: shuffled-image null", fontsize=8)
    for ax, table in zip(axes[0, 1:], ost_tables):
        both = np.isfinite(table["ost_ms"]) & np.isfinite(table["reference_ost_ms"])
        ax.scatter(table["reference_ost_ms"][both], table["ost_ms"][both], s=10, alpha=0.7)
        ax.set_xlabel("reference OST (ms)")
        ax.set_ylabel("model OST (ms)")
        ax.set_title(f"{table['model'].iloc[0]}\n{both.sum()} of {len(table)} images solved by both",
                     fontsize=7)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
