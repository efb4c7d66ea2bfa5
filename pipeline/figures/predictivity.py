"""Predictivity by layer for each area and mapping, with the inter-animal ceiling drawn in."""

from __future__ import annotations

import pandas as pd

from pipeline.compare.aggregate import best_layer, summarize
from pipeline.figures.style import plt, save
from pipeline.io import write_csv


def final_epoch(scores: pd.DataFrame) -> pd.DataFrame:
    """Rows of each model's last epoch."""
    return scores[scores["epoch"] == scores.groupby("model")["epoch"].transform("max")]


def summary_table(ceiling: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per area and mapping: the ceiling, and each model's best layer at its final epoch.

    The layer is chosen on validation splits inside each split's training stimuli and
    reported on held-out stimuli (`best_layer`); RSA and CKA fit nothing, so they have no
    layer choice here (their per-layer scores are in the figure).

    Parameters
    ----------
    ceiling : pandas.DataFrame
        `interanimal` scores of one dataset.
    scores : pandas.DataFrame
        `predictivity` scores of any number of models on the same dataset.
    """
    ceiling = summarize(ceiling)
    best = best_layer(final_epoch(scores))
    merged = best.merge(ceiling[["dataset", "area", "mapping", "score", "score_sem"]],
                        on=["dataset", "area", "mapping"], suffixes=("", "_ceiling"))
    merged["fraction_of_ceiling"] = merged["score"] / merged["score_ceiling"]
    return merged


def plot_predictivity(interanimal_path, predictivity_paths, out, summary_out, *, dpi=150) -> None:
    """Median noise-corrected score per layer (final epoch), one panel per mapping × area.

    Models that share their layers are drawn against the layer names; models of different
    architectures against relative depth (first compared layer 0, readout 1). A recurrent
    model is drawn at each layer's last time step; its summary row names the (layer, time)
    chosen. Also writes `summary_out` (CSV): the ceiling and each model's best layer per area.
    """
    ceiling = pd.read_parquet(interanimal_path)
    scores = pd.concat([pd.read_parquet(p) for p in predictivity_paths], ignore_index=True)
    # each model's layers in network order, as extracted
    model_layers = {m: list(dict.fromkeys(rows["layer"])) for m, rows in scores.groupby("model", sort=False)}
    layers = next(iter(model_layers.values()))
    shared = all(names == layers for names in model_layers.values())
    position = {m: {name: (k if shared else k / max(len(names) - 1, 1)) for k, name in enumerate(names)}
                for m, names in model_layers.items()}
    by_layer = summarize(final_epoch(scores))
    by_area = summarize(ceiling)
    areas = list(dict.fromkeys(ceiling["area"]))
    mappings = list(dict.fromkeys(ceiling["mapping"]))
    fig, axes = plt.subplots(len(mappings), len(areas), figsize=(2.4 * len(areas), 2.2 * len(mappings)),
                             sharex=True, sharey="row", squeeze=False)
    for i, mapping in enumerate(mappings):
        for j, area in enumerate(areas):
            ax = axes[i][j]
            ceil = by_area[(by_area["area"] == area) & (by_area["mapping"] == mapping)]
            if len(ceil):
                mid, sem = ceil["score"].iloc[0], ceil["score_sem"].fillna(0).iloc[0]
                ax.axhspan(mid - sem, mid + sem, color="0.85", zorder=0)
                ax.axhline(mid, color="0.5", lw=1, zorder=0)
            sub = by_layer[(by_layer["area"] == area) & (by_layer["mapping"] == mapping)]
            for model, rows in sub.groupby("model", sort=True):
                if "time" in rows.columns:          # recurrent models: each layer's last step
                    rows = rows[rows["time"] == rows.groupby("layer")["time"].transform("max")]
                rows = rows.set_index("layer").reindex(model_layers[model])
                ax.plot([position[model][name] for name in rows.index], rows["score"], marker="o",
                        ms=3, lw=1, label=model)
            if i == 0:
                ax.set_title(area)
            if j == 0:
                ax.set_ylabel(f"{mapping}\nmedian score")
    for ax in axes[-1]:
        if shared:
            ax.set_xticks(range(len(layers)), layers, rotation=60, fontsize=7)
        else:
            ax.set_xlabel("relative depth (first layer → readout)", fontsize=7)
    axes[0][-1].legend(fontsize=6, frameon=False, loc="lower right")
    fig.suptitle("Noise-corrected predictivity by layer; grey: inter-animal ceiling (median ± s.e.m.)",
                 fontsize=9)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    write_csv(summary_table(ceiling, scores), summary_out)
