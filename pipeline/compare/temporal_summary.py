"""Medians over units of time-resolved score tables (spec §4.2): per bin and per phase.

The tables of `pipeline.compare.temporal` hold one row per unit, bin and split. A unit's score
is its mean over splits (and over a phase's bins); a group's value is the median over units,
with its s.e.m. Model tables first keep, per area, the layer chosen on validation rows
(`choose_layers`), so no test data chooses what is reported.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PHASES = {"early": (0.13, 0.14), "late": (0.20, 0.21)}
"""Spec §4.2 (Majaj-Hong, after image onset): early 130–140 ms, late 200–210 ms."""

def _unit_means(table, keys, bins=None):
    """Mean over splits (and over the bins in `bins`, a (start, stop) window) per unit."""
    rows = table if "stage" not in table.columns else table[table["stage"] == "test"]
    if bins is not None:
        rows = rows[(rows["time_bin"] >= bins[0] - 1e-9) & (rows["time_bin"] < bins[1] - 1e-9)]
    return rows.groupby(keys + ["neuroid_id"], dropna=False)["score"].mean().reset_index()


def choose_layers(table, metric="score"):
    """Per (model keys, area, temporal, mapping), the layer with the highest median over units of
    the validation rows' mean over bins (stage "select"; no test data). Returns those keys and
    ``layer``; a table without select rows (animals) has no layer to choose and is returned empty."""
    if "stage" not in table.columns or "layer" not in table.columns:
        return pd.DataFrame()
    keys = [k for k in ("dataset", "model", "time_mapping", "area", "temporal", "mapping") if k in table.columns]
    select = table[table["stage"] == "select"]
    per_unit = select.groupby(keys + ["layer", "neuroid_id"], dropna=False)[metric].mean()
    medians = per_unit.groupby(keys + ["layer"], dropna=False).median().reset_index().dropna(subset=[metric])
    best = medians.loc[medians.groupby(keys, dropna=False)[metric].idxmax()]
    return best[keys + ["layer"]]


def _chosen(table):
    """Rows of the chosen layer of each group (`choose_layers`), or the table itself for animals."""
    chosen = choose_layers(table)
    if chosen.empty:
        return table
    return table.merge(chosen, on=list(chosen.columns))


def bin_medians(table):
    """Median over units (and its s.e.m.) of the per-unit mean over splits, per bin.

    Model tables keep the chosen layer per area (`choose_layers`). Columns: the group keys,
    time_bin, time_bin_end, median, sem, n_units.
    """
    rows = _chosen(table)
    keys = [k for k in ("dataset", "model", "time_mapping", "layer", "area", "temporal", "mapping")
            if k in rows.columns]
    per_unit = _unit_means(rows, keys + ["time_bin", "time_bin_end"])
    grouped = per_unit.groupby(keys + ["time_bin", "time_bin_end"], dropna=False)["score"]
    out = grouped.agg(median="median", n_units="count").reset_index()
    out["sem"] = grouped.agg(lambda s: s.std(ddof=1) / np.sqrt(max(s.count(), 1))).values
    return out


def phase_medians(table, phases=None):
    """Median over units of each unit's mean score over the bins of each phase (spec §4.2).

    Parameters
    ----------
    table : pandas.DataFrame
        From `temporal_interanimal` or `temporal_predictivity` (model tables: the chosen layer
        per area, `choose_layers`).
    phases : dict of str to (float, float)
        Phase name → [start, stop) in seconds of the bins' starts; `PHASES` (spec: early
        130–140 ms, late 200–210 ms) by default.

    Returns
    -------
    pandas.DataFrame
        Group keys, phase, median, sem, n_units.
    """
    phases = PHASES if phases is None else phases
    rows = _chosen(table)
    keys = [k for k in ("dataset", "model", "time_mapping", "layer", "area", "temporal", "mapping")
            if k in rows.columns]
    out = []
    for phase, window in phases.items():
        per_unit = _unit_means(rows, keys, tuple(window))
        if per_unit.empty:
            log.warning("phase %s %s: no bin starts inside it", phase, list(window))
            continue
        grouped = per_unit.groupby(keys, dropna=False)["score"]
        frame = grouped.agg(median="median", n_units="count").reset_index()
        frame["sem"] = grouped.agg(lambda s: s.std(ddof=1) / np.sqrt(max(s.count(), 1))).values
        frame.insert(len(keys), "phase", phase)
        out.append(frame)
    if not out:
        raise ValueError(f"phase_medians: no bin of the table starts inside any phase {phases}")
    return pd.concat(out, ignore_index=True)
