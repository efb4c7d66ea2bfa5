"""Model recovery figures and the report's opening summary; they only read the recovery tables.

`plot_recovery_matrix`: per mapping and area group, the confusion of true and winning class over
the generator datasets, with the proportion recovered and its binomial interval.
`plot_recovery_margin`: the true class's margin over the best wrong class per area and mapping,
with its bootstrap interval. `plot_layer_area`: predictivity by relative layer depth per area,
one line per class (the true class bold), the generator's depth marked. `recovery_summary`: the
reStructuredText page the HTML report opens with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.figures.comparison import area_order
from pipeline.figures.style import mapping_area_grid, plt, save
from pipeline.io import atomic_path

_GROUPS = ("early", "late")


def _read(table, needed, what):
    table = pd.read_csv(table) if isinstance(table, (str, Path)) else table
    missing = set(needed) - set(table.columns)
    if missing:
        raise ValueError(f"{what} lacks column(s) {sorted(missing)}; found {list(table.columns)}")
    return table


def plot_recovery_matrix(matrix, out, *, dpi=150):
    """Heat maps (rows: mappings; columns: early, late areas) of P(winner | true class)."""
    matrix = _read(matrix, {"mapping", "group", "true_class", "winner", "count", "n", "proportion",
                            "ci_low", "ci_high"}, "recovery matrix")
    mappings = list(dict.fromkeys(matrix["mapping"]))
    groups = [g for g in _GROUPS if g in set(matrix["group"])]
    classes = sorted(set(matrix["true_class"]) | set(matrix["winner"]))
    side = max(1.6, 0.4 * len(classes))                  # inches per heat map
    fig, axes = plt.subplots(len(mappings), len(groups), squeeze=False,
                             figsize=(len(groups) * (side + 1.8), len(mappings) * (side + 1.0) + 1.5))
    for i, mapping in enumerate(mappings):
        for j, group in enumerate(groups):
            ax = axes[i, j]
            rows = matrix[(matrix["mapping"] == mapping) & (matrix["group"] == group)]
            counts = (rows.pivot_table(index="true_class", columns="winner", values="count", aggfunc="sum")
                      .reindex(index=classes, columns=classes).fillna(0))
            share = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0)
            ax.imshow(share.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis")
            for (r, c), n in np.ndenumerate(counts.to_numpy()):
                if n:
                    ax.text(c, r, int(n), ha="center", va="center", fontsize=7,
                            color="black" if share.iat[r, c] > 0.6 else "white")
            top = rows.iloc[0]
            ax.set_title(f"{mapping} · {group} areas\n{top['recovered']}/{top['n']} recovered "
                         f"[{top['ci_low']:.2f}, {top['ci_high']:.2f}]", fontsize=7)
            ax.set_xticks(range(len(classes)), classes if i == len(mappings) - 1 else [""] * len(classes),
                          rotation=60, ha="right", fontsize=6)
            ax.set_yticks(range(len(classes)), classes if j == 0 else [""] * len(classes), fontsize=6)
    fig.supxlabel("winning class", fontsize=8)
    fig.supylabel("true (generator) class", fontsize=8)
    fig.tight_layout()
    save(fig, out, dpi=dpi)


def plot_recovery_margin(table, out, *, dpi=150):
    """The true class's margin over the best wrong class per area (one line per mapping)."""
    table = _read(table, {"area", "mapping", "margin", "margin_low", "margin_high", "generator"},
                  "recovery table")
    areas = area_order(table["area"])
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(areas), 3.2))
    mappings = list(dict.fromkeys(table["mapping"]))
    width = 0.8 / max(len(mappings), 1)
    for k, mapping in enumerate(mappings):
        rows = table[table["mapping"] == mapping].set_index("area").reindex(areas)
        x = np.arange(len(areas)) + (k - (len(mappings) - 1) / 2) * width
        error = np.vstack([rows["margin"] - rows["margin_low"], rows["margin_high"] - rows["margin"]])
        ax.errorbar(x, rows["margin"], yerr=np.clip(error, 0, None), fmt="o", capsize=2, label=mapping)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(areas)), areas)
    ax.set_ylabel("margin of the true class\n(score − best wrong class)")
    ax.set_title(f"generator {table['generator'].iloc[0]}", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    save(fig, out, dpi=dpi)


def plot_layer_area(depth, out, *, dpi=150):
    """Predictivity by relative depth per area and mapping; the generator's depth dashed."""
    depth = _read(depth, {"area", "mapping", "class", "depth", "score", "is_true", "generator_depth"},
                  "depth table")
    areas = area_order(depth["area"])
    mappings = list(dict.fromkeys(depth["mapping"]))
    fig, axes = mapping_area_grid(mappings, areas, width=2.0, height=1.8)
    for i, mapping in enumerate(mappings):
        for j, area in enumerate(areas):
            ax = axes[i, j]
            rows = depth[(depth["mapping"] == mapping) & (depth["area"] == area)]
            for name, line in rows.groupby("class", sort=True):
                line = line.sort_values("depth")
                true = bool(line["is_true"].iloc[0])
                ax.plot(line["depth"], line["score"], marker="o", ms=2.5, lw=2.2 if true else 0.8,
                        color="black" if true else None, label=f"{name} (true)" if true else name)
            if not rows.empty:
                ax.axvline(rows["generator_depth"].iloc[0], color="red", ls="--", lw=0.8)
            if i == 0:
                ax.set_title(area, fontsize=8)
            if j == 0:
                ax.set_ylabel(mapping, fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=min(len(labels), 4), frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.02 * (len(labels) // 4)))
    fig.supxlabel("relative layer depth (0 first, 1 last); red: the generator's layer", fontsize=8, y=0.04)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save(fig, out, dpi=dpi)


def _rst_table(header, rows):
    """A reStructuredText list-table."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append("   * - " + str(row[0]))
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines)


def recovery_summary(tables, matrix, out):
    """The report's opening page: per generator dataset, area and mapping, the winning class
    (the truth marked), the true class's rank and margin, and whether its best layer sits at
    the generator's depth; then the proportion recovered per mapping and area group."""
    frames = [_read(t, {"dataset", "area", "mapping", "generator", "true_class", "winner", "rank",
                        "margin", "margin_low", "margin_high", "best_layer", "depth_layer", "at_depth"},
                    f"recovery table {t}") for t in tables]
    matrix = _read(matrix, {"mapping", "group", "n", "recovered", "ci_low", "ci_high", "chance"},
                   "recovery matrix")
    parts = ["Model recovery", "=" * 14, "",
             "The virtual animals of these datasets were generated by a trained hypothesis (the "
             "generator, held out by seed unless it is also a candidate). Each row asks whether a "
             "mapping ranks the generator's class (architecture · objective · rule, seeds pooled) "
             "first among the candidates, by best-layer median score over units. **Bold** = the "
             "winner is the truth; margin = true class minus best wrong class, bootstrap interval "
             "over units; depth = the true class's best layer is at the generator's layer depth.", ""]
    for table in frames:
        dataset, generator = table["dataset"].iloc[0], table["generator"].iloc[0]
        title = f"{dataset}: generator {generator}"
        parts += [title, "-" * len(title), ""]
        won = int((table["winner"] == table["true_class"]).sum())
        at_depth = int(table["at_depth"].astype(str).eq("True").sum())
        parts += [f"The truth wins **{won} of {len(table)}** area × mapping cells; its best layer "
                  f"sits at the generator's depth in {at_depth} of the {len(table)}.", ""]
        rows = []
        for row in table.itertuples():
            won = row.winner == row.true_class
            winner = f"**{row.winner}**" if won else f"{row.winner} (truth: {row.true_class})"
            rank = "—" if pd.isna(row.rank) else int(row.rank)
            margin = ("—" if pd.isna(row.margin) else
                      f"{row.margin:+.3f} [{row.margin_low:+.3f}, {row.margin_high:+.3f}]")
            at = "—" if pd.isna(row.at_depth) else (
                f"yes ({row.best_layer})" if str(row.at_depth) == "True"
                else f"no ({row.best_layer}; generator depth {row.depth_layer})")
            rows.append([row.area, row.mapping, winner, rank, margin, at])
        parts += [_rst_table(["area", "mapping", "winner", "rank of truth", "margin [CI]", "depth"], rows), ""]
    summary = matrix.drop_duplicates(["mapping", "group"])
    parts += ["Recovered over generators", "-" * 25, "",
              _rst_table(["mapping", "areas", "recovered", "binomial CI", "chance"],
                         [[r.mapping, r.group, f"{r.recovered}/{r.n}", f"[{r.ci_low:.2f}, {r.ci_high:.2f}]",
                           f"{r.chance:.2f}"] for r in summary.itertuples()]), ""]
    with atomic_path(out) as tmp:
        Path(tmp).write_text("\n".join(parts) + "\n")
