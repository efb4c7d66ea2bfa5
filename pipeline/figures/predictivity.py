"""Predictivity by layer for each area and mapping, with the inter-animal ceiling drawn in."""

from __future__ import annotations

import pandas as pd

from pipeline.compare.aggregate import final_epoch, median_over_units
from pipeline.figures.style import mapping_area_grid, save


def plot_predictivity(interanimal_path, predictivity_paths, out, *, dpi=150) -> pd.DataFrame:
    """Median noise-corrected score per layer (final epoch), one panel per mapping × area.

    Models that share their layers are drawn against the layer names; models of different
    architectures against relative depth (first compared layer 0, readout 1). A recurrent
    model is drawn at each layer's last time step.

    Returns
    -------
    pandas.DataFrame
        The points drawn: `median_over_units` rows (model, area, mapping, layer, time, score,
        ...) with their x ``position``.
    """
    ceiling = pd.read_parquet(interanimal_path)
    scores = pd.concat([pd.read_parquet(p) for p in predictivity_paths], ignore_index=True)
    # each model's layers in network order, as extracted
    model_layers = {m: list(dict.fromkeys(rows["layer"])) for m, rows in scores.groupby("model", sort=False)}
    layers = next(iter(model_layers.values()))
    shared = all(names == layers for names in model_layers.values())
    position = {m: {name: (k if shared else k / max(len(names) - 1, 1)) for k, name in enumerate(names)}
                for m, names in model_layers.items()}
    by_layer = median_over_units(final_epoch(scores))
    by_area = median_over_units(ceiling)
    areas = list(dict.fromkeys(ceiling["area"]))
    mappings = list(dict.fromkeys(ceiling["mapping"]))
    drawn = []
    fig, axes = mapping_area_grid(mappings, areas, width=2.4, height=2.2)
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
                rows["position"] = [position[model][name] for name in rows.index]
                ax.plot(rows["position"], rows["score"], marker="o", ms=3, lw=1, label=model)
                drawn.append(rows.reset_index())
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
    return pd.concat(drawn, ignore_index=True) if drawn else pd.DataFrame()
