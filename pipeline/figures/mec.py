"""MEC figures (thesis Figs. 4.1–4.5, spec §3.4–3.7): rate-map galleries, score distributions,
predictivity with the ceiling, knockout curves, decoding error against predictivity.

Every function reads tables or stores written by the MEC rules (workflow/rules/mec.smk) and only
draws; the numbers it shows come from those tables (the KS distances through
`pipeline.mec.comparison.ks_table`, the medians through `median_over_units`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.compare.aggregate import median_over_units
from pipeline.figures.style import plt, save

SCORES = (("grid_score", "grid score"), ("border_score", "border score"))


def _final(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of the last epoch (the trained model; controls have one epoch)."""
    if "epoch" not in table.columns:
        return table
    return table[table["epoch"] == table["epoch"].max()]


def _model_name(table: pd.DataFrame, path) -> str:
    if "model" in table.columns and table["model"].nunique() == 1:
        return str(table["model"].iloc[0])
    return Path(path).parent.name


def _grid_shape(attrs) -> tuple[int, int]:
    bin_size = float(attrs["bin_size_cm"])
    return (round(float(attrs["arena_height_cm"]) / bin_size),
            round(float(attrs["arena_width_cm"]) / bin_size))


def _spread(order: np.ndarray, n: int) -> np.ndarray:
    """n entries of `order` evenly spaced from its first to its last (all when fewer)."""
    if order.size <= n:
        return order
    return order[np.unique(np.round(np.linspace(0, order.size - 1, n)).astype(int))]


def plot_mec_ratemaps(neural, ratemaps, data_scores, model_scores, out, *, dpi=150, layer="g",
                      n_units=8) -> pd.DataFrame:
    """Rate maps of data units (top row) and model units (bottom row), by grid score.

    Each row shows `n_units` units spread evenly over the grid-score ranking, from the highest
    score to the lowest, so the gallery shows the range of the population, not only its grid
    cells. Model maps are the last epoch of `layer`.

    Parameters
    ----------
    neural : path
        Rate-map NeuralAssembly (results/neural/{dataset}.zarr).
    ratemaps : path
        Model rate-map store (results/mec/ratemaps/{model}/{dataset}.zarr).
    data_scores, model_scores : path
        `assembly_scores` and `store_scores` tables (Parquet).
    out : path
        Figure file.

    Returns
    -------
    pandas.DataFrame
        The units drawn: source (data | model), unit_id, grid_score, border_score.
    """
    from pipeline.data.assembly import read_assembly
    from pipeline.io import read_zarr
    from pipeline.mec.comparison import _layer
    from pipeline.mec.ratemaps import grid_images

    assembly = read_assembly(neural)
    mean = assembly.mean("trial").transpose("stimulus", "neuroid")
    data_maps = grid_images(mean.values, mean["stimulus_id"].values, _grid_shape(assembly.attrs))
    data_table = pd.read_parquet(data_scores).set_index("unit_id")
    data_table = data_table.reindex(mean["neuroid_id"].values.astype(str))
    store = read_zarr(ratemaps)
    name = _layer(store, layer)
    epoch = store["epoch"].values.max()
    values = store[name].sel(epoch=epoch).transpose("stimulus", ...).values
    model_maps = grid_images(values, store["stimulus_id"].values, _grid_shape(store.attrs))
    model_table = _final(pd.read_parquet(model_scores))
    if "layer" in model_table.columns:
        model_table = model_table[model_table["layer"] == name]
    model_table = model_table.set_index("unit_id").reindex(np.arange(model_maps.shape[0]))
    rows = [("data", data_maps, data_table), (f"model {name}", model_maps, model_table)]
    fig, axes = plt.subplots(2, n_units, figsize=(1.3 * n_units, 3.4), squeeze=False)
    drawn = []
    for r, (label, maps, table) in enumerate(rows):
        score = table["grid_score"].to_numpy(dtype=float)
        order = np.argsort(np.where(np.isfinite(score), -score, np.inf), kind="stable")
        chosen = _spread(order, n_units)
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= chosen.size:
                ax.axis("off")
                continue
            u = chosen[c]
            ax.imshow(np.ma.masked_invalid(maps[u]), origin="lower", cmap="jet",
                      interpolation="nearest")
            ax.set_title(f"g {score[u]:.2f}", fontsize=7)
            drawn.append({"source": label.split()[0], "unit_id": table.index[u],
                          "grid_score": score[u],
                          "border_score": float(table["border_score"].iloc[u])})
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.suptitle("rate maps by grid score (left: highest)", fontsize=9)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return pd.DataFrame(drawn)


def plot_mec_score_distributions(data_scores, model_scores, out, *, dpi=150) -> pd.DataFrame:
    """Cumulative distributions of grid and border scores: data against each model.

    Model units are the last epoch's. The legend gives each model's KS distance to the data
    (`pipeline.mec.comparison.ks_table`: two-sample, units with a NaN score left out).

    Parameters
    ----------
    data_scores : path
        `assembly_scores` table of the data.
    model_scores : sequence of path
        `store_scores` tables, one per model or control.

    Returns
    -------
    pandas.DataFrame
        The KS table drawn in the legend (model, epoch, score, ks_distance, p_value, ...).
    """
    from pipeline.mec.comparison import ks_table

    data = pd.read_parquet(data_scores)
    models = {}
    for path in model_scores:
        table = pd.read_parquet(path)
        models[_model_name(table, path)] = _final(table)
    ks = ks_table(data, models)
    fig, axes = plt.subplots(1, len(SCORES), figsize=(4.2 * len(SCORES), 3.4), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, (column, label) in zip(axes[0], SCORES):
        values = np.sort(data[column].dropna().to_numpy(dtype=float))
        ax.step(values, np.arange(1, values.size + 1) / max(values.size, 1), where="post",
                color="black", lw=2, label=f"data (n={values.size})")
        for k, (name, table) in enumerate(models.items()):
            values = np.sort(table[column].dropna().to_numpy(dtype=float))
            if not values.size:
                continue
            d = ks[(ks["model"] == name) & (ks["score"] == column)]["ks_distance"]
            ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", lw=1,
                    color=colours[k % len(colours)],
                    label=f"{name} (KS {float(d.iloc[0]):.2f})" if len(d) else name)
        threshold = 0.3 if column == "grid_score" else 0.5
        ax.axvline(threshold, color="grey", ls=":", lw=1)
        ax.set(xlabel=label, ylabel="fraction of units", ylim=(0, 1.02))
        ax.legend(fontsize=6, frameon=False, loc="lower right")
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return ks


def _best_layer(table: pd.DataFrame) -> pd.DataFrame:
    """Per model, mapping and epoch: the layer with the highest median score (spec §3.4)."""
    summary = median_over_units(table, by=[c for c in ("model", "mapping", "epoch", "layer")
                                           if c in table.columns])
    keys = [c for c in ("model", "mapping", "epoch") if c in summary.columns]
    summary = summary.dropna(subset=["score"])
    best = summary.loc[summary.groupby(keys)["score"].idxmax()]
    return best.reset_index(drop=True)


def _predictivity_summary(tables) -> pd.DataFrame:
    frames = [pd.read_parquet(p) if not isinstance(p, pd.DataFrame) else p for p in tables]
    frames = [f for f in frames if len(f)]
    if not frames:
        raise ValueError("no predictivity rows to plot")
    return _best_layer(pd.concat(frames, ignore_index=True))


def plot_mec_predictivity(interanimal, predictivity, out, *, dpi=150) -> pd.DataFrame:
    """Best-layer median predictivity of every model and control, with the inter-animal ceiling.

    One panel per mapping; filled bars are the last epoch, open markers the untrained one
    (epoch 0) where the table has it; the grey band is the ceiling's median ± s.e.m.

    Parameters
    ----------
    interanimal : path
        MEC inter-animal table (results/mec/interanimal/{dataset}.parquet).
    predictivity : sequence of path
        MEC predictivity tables, one per model or control.

    Returns
    -------
    pandas.DataFrame
        The bars: model, mapping, epoch, layer, score, score_sem, ...
    """
    ceiling = median_over_units(pd.read_parquet(interanimal), by=["mapping"])
    best = _predictivity_summary(predictivity)
    final = best[best["epoch"] == best.groupby("model")["epoch"].transform("max")]
    untrained = best[(best["epoch"] == 0)
                     & (best.groupby("model")["epoch"].transform("max") > 0)]
    mappings = list(dict.fromkeys(final["mapping"]))
    order = (final[final["mapping"] == mappings[0]].sort_values("score", ascending=False)
             ["model"].tolist())
    fig, axes = plt.subplots(1, len(mappings), figsize=(max(4.0, 0.45 * len(order) + 1.5)
                                                         * len(mappings), 3.6), squeeze=False)
    for ax, mapping in zip(axes[0], mappings):
        rows = final[final["mapping"] == mapping].set_index("model").reindex(order)
        x = np.arange(len(order))
        ax.bar(x, rows["score"], yerr=rows["score_sem"].fillna(0), color="tab:blue",
               capsize=2, label="trained")
        before = untrained[untrained["mapping"] == mapping].set_index("model").reindex(order)
        if before["score"].notna().any():
            ax.plot(x, before["score"], "o", mfc="none", color="black", ms=4, label="untrained")
        c = ceiling[ceiling["mapping"] == mapping]
        if len(c):
            m, s = float(c["score"].iloc[0]), float(np.nan_to_num(c["score_sem"].iloc[0]))
            ax.axhspan(m - s, m + s, color="grey", alpha=0.3, lw=0)
            ax.axhline(m, color="grey", lw=1, label="inter-animal")
        ax.set_xticks(x, order, rotation=60, ha="right", fontsize=6)
        ax.set(title=mapping, ylabel="predictivity (median score)")
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return final


def plot_mec_knockouts(knockouts, out, *, dpi=150) -> pd.DataFrame:
    """Relative decoding degradation after knocking out high-score g units vs random ones.

    One panel per model and score type: the cell-type knockout against the threshold, and the
    mean (± s.d. band) over the random draws of as many heterogeneous units; the top axis
    labels give the fraction of units removed.

    Parameters
    ----------
    knockouts : sequence of path
        Knockout tables (model, score_type, threshold, kind, draw, n_removed,
        fraction_removed, error_cm, relative_degradation).

    Returns
    -------
    pandas.DataFrame
        The lines: model, score_type, threshold, kind, mean and sd of relative_degradation,
        fraction_removed.
    """
    table = pd.concat([pd.read_parquet(p) for p in knockouts], ignore_index=True)
    table = table[table["kind"] != "intact"]
    lines = (table.groupby(["model", "score_type", "threshold", "kind"])
             .agg(mean=("relative_degradation", "mean"), sd=("relative_degradation", "std"),
                  fraction_removed=("fraction_removed", "mean")).reset_index())
    panels = list(lines.groupby(["model", "score_type"]).groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False,
                             sharey=True)
    for ax, (model, score_type) in zip(axes[0], panels):
        part = lines[(lines["model"] == model) & (lines["score_type"] == score_type)]
        for kind, colour in (("cell_type", "tab:red"), ("random", "tab:grey")):
            rows = part[part["kind"] == kind].sort_values("threshold")
            if not len(rows):
                continue
            ax.plot(rows["threshold"], 100 * rows["mean"], "o-", ms=3, color=colour,
                    label="high-score units" if kind == "cell_type" else "random units")
            ax.fill_between(rows["threshold"], 100 * (rows["mean"] - rows["sd"].fillna(0)),
                            100 * (rows["mean"] + rows["sd"].fillna(0)), color=colour,
                            alpha=0.2, lw=0)
        rows = part[part["kind"] == "cell_type"].sort_values("threshold")
        for _, row in rows.iterrows():
            ax.annotate(f"{100 * row['fraction_removed']:.0f}%", (row["threshold"], 0),
                        xycoords=("data", "axes fraction"), fontsize=5, ha="center",
                        va="bottom", color="tab:red")
        ax.set(title=f"{model}\n{score_type}", xlabel="score threshold")
        ax.title.set_fontsize(7)
    axes[0][0].set_ylabel("relative degradation (%)")
    axes[0][-1].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return lines


def plot_mec_decoding_vs_predictivity(tables, out, *, dpi=150, mapping=None) -> pd.DataFrame:
    """Task performance (top-3 decoding error) against neural predictivity, one point per model.

    Parameters
    ----------
    tables : sequence of path
        Decoding tables (with ``error_cm``) and MEC predictivity tables (with ``score``), in
        any order; they are told apart by their columns.
    mapping : str, optional
        Mapping whose predictivity is drawn; default the first in the tables.

    Returns
    -------
    pandas.DataFrame
        model, error_cm (last epoch), score (best layer, last epoch); the title gives the
        Spearman correlation over models.
    """
    decoding, predictivity = [], []
    for path in tables:
        table = pd.read_parquet(path)
        if "error_cm" in table.columns:
            decoding.append(table)
        elif "score" in table.columns:
            predictivity.append(table)
        else:
            raise ValueError(f"{path}: neither a decoding table (error_cm) nor a predictivity "
                             f"table (score)")
    if not decoding or not predictivity:
        raise ValueError("plot_mec_decoding_vs_predictivity needs decoding and predictivity "
                         f"tables; got {len(decoding)} and {len(predictivity)}")
    errors = pd.concat([_final(d.assign(model=d["model"].astype(str)))
                        .groupby("model", as_index=False)["error_cm"].mean() for d in decoding])
    best = _predictivity_summary(predictivity)
    mapping = mapping or best["mapping"].iloc[0]
    best = best[(best["mapping"] == mapping)
                & (best["epoch"] == best.groupby("model")["epoch"].transform("max"))]
    points = errors.merge(best[["model", "score", "score_sem"]], on="model", how="inner")
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.errorbar(points["error_cm"], points["score"], yerr=points["score_sem"].fillna(0),
                fmt="o", ms=4, capsize=2)
    for _, row in points.iterrows():
        ax.annotate(row["model"], (row["error_cm"], row["score"]), fontsize=5,
                    xytext=(3, 3), textcoords="offset points")
    rho = (stats.spearmanr(points["error_cm"], points["score"])[0] if len(points) > 2
           else np.nan)
    ax.set(xlabel="decoding error (cm, top-3 place cells)",
           ylabel=f"predictivity ({mapping}, median)",
           title=f"Spearman r = {rho:.2f} over {len(points)} models")
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return points
