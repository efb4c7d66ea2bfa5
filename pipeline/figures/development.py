"""Representational development figures (P1): each model's last convolutional layer's RDM over
epochs (a PNG strip and an animated GIF), its correlation with each level's category model over
training, and the RSA similarity to each brain area over training with the noise ceiling.

They read the tables of `pipeline.compare.development` (one per model, with model-name columns
and `layer_kind`). A recurrent model's last time step stands for each layer.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.ticker import MaxNLocator

from pipeline.figures.rdms import category_order
from pipeline.figures.style import plt, save
from pipeline.io import atomic_path

GIF_FPS = 2


def _frame(table) -> pd.DataFrame:
    """A table given as a DataFrame or a Parquet path."""
    return table if isinstance(table, pd.DataFrame) else pd.read_parquet(table)


def _check_columns(table: pd.DataFrame, needed: set[str], what: str) -> None:
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"{what} lacks column(s) {sorted(missing)}; found {list(table.columns)}")


def _last_time(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of each model's last time step (feedforward layers have time 0 only)."""
    return table[table["time"] == table.groupby("model")["time"].transform("max")]


def model_labels(table: pd.DataFrame) -> dict[str, str]:
    """Model -> its rule, with the seed when the table has several and arch · objective when it
    holds more than one family."""
    models = table.drop_duplicates("model").set_index("model")
    one_family = models[["arch", "objective"]].drop_duplicates().shape[0] == 1
    one_seed = models["seed"].nunique() == 1
    labels = {}
    for model, row in models.iterrows():
        label = row["rule"] if one_family else f"{row['arch']} · {row['objective']} · {row['rule']}"
        labels[model] = label if one_seed else f"{label} s{row['seed']}"
    return labels


def last_conv_layer(table: pd.DataFrame) -> str:
    """One model's last layer of kind "conv" in network order (table order); its last layer other
    than the readout when none is convolutional."""
    layers = table.drop_duplicates("layer")
    conv = layers[layers["layer_kind"] == "conv"]["layer"]
    if len(conv):
        return str(conv.iloc[-1])
    others = layers[layers["layer"] != "readout"]["layer"]
    return str((others if len(others) else layers["layer"]).iloc[-1])


def _model_rdms(table, order):
    """(model, layer, epochs, RDMs (epoch, stimulus, stimulus) in `order`) of one model's RDM table,
    for its last conv layer at its last time step; the diagonal is left blank (NaN)."""
    needed = ["model", "arch", "objective", "rule", "seed", "layer", "layer_kind"]
    if isinstance(table, pd.DataFrame):
        rows = table
    else:
        meta = pd.read_parquet(table, columns=needed)
        _check_columns(meta, set(needed), f"RDM table {table}")
        rows = pd.read_parquet(table, filters=[("layer", "==", last_conv_layer(meta))])
    _check_columns(rows, {*needed, "epoch", "time", "stimulus_a", "stimulus_b", "dissimilarity"}, "RDM table")
    layer = last_conv_layer(rows)
    rows = rows[rows["layer"] == layer]
    rows = rows[rows["time"] == rows["time"].max()]
    index = pd.Index(order)
    epochs = sorted(int(e) for e in rows["epoch"].unique())
    stack = np.full((len(epochs), len(order), len(order)), np.nan)
    for k, epoch in enumerate(epochs):
        at = rows[rows["epoch"] == epoch]
        a = index.get_indexer(at["stimulus_a"].astype(str))
        b = index.get_indexer(at["stimulus_b"].astype(str))
        if (a < 0).any() or (b < 0).any():
            raise ValueError(f"RDM table of {rows['model'].iloc[0]}: stimuli that are not in the stimulus set")
        stack[k, a, b] = stack[k, b, a] = at["dissimilarity"].to_numpy(float)
    return rows.iloc[:1], layer, epochs, stack


def _colour_range(stack):
    finite = stack[np.isfinite(stack)]
    return (np.percentile(finite, 1), np.percentile(finite, 99)) if finite.size else (0.0, 1.0)


def _save_gif(animation, fig, path, *, dpi) -> None:
    """Write an animation as a GIF atomically (PillowWriter picks the format from the suffix)."""
    with atomic_path(path) as tmp:
        named = tmp.with_name(tmp.name + ".gif")
        try:
            animation.save(named, writer=PillowWriter(fps=GIF_FPS), dpi=dpi)
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)
    plt.close(fig)


def plot_development_rdms(tables, out, *, stimuli, gif, dpi=150) -> dict[str, tuple]:
    """Each model's last conv layer RDM at every epoch, stimuli ordered by category.

    Writes a strip (`out`: a row per model, a column per epoch) and an animated GIF (`gif`: a
    frame per epoch, a panel per model). Each model keeps one colour scale over its epochs (1st to
    99th percentile of its dissimilarities), so the change over training shows.

    Parameters
    ----------
    tables : list of path-like or DataFrame
        The RDM tables of `pipeline.compare.development` (results/development/rdms/...).
    stimuli : path-like
        The stimulus set (its label levels give the category order, `figures.rdms.category_order`).

    Returns
    -------
    dict of str to (layer, epochs, ndarray (epoch, stimulus, stimulus))
        What was drawn, by model.
    """
    order = category_order(stimuli)
    drawn, heads = {}, []
    for table in tables:
        head, layer, epochs, stack = _model_rdms(table, order)
        drawn[str(head["model"].iloc[0])] = (layer, epochs, stack)
        heads.append(head)
    if not drawn:
        raise ValueError("plot_development_rdms needs at least one RDM table")
    labels = model_labels(pd.concat(heads))
    all_epochs = sorted(set().union(*(epochs for _, epochs, _ in drawn.values())))
    fig, axes = plt.subplots(len(drawn), len(all_epochs), figsize=(1.2 * len(all_epochs) + 1, 1.3 * len(drawn)),
                             squeeze=False)
    for row, (model, (layer, epochs, stack)) in enumerate(drawn.items()):
        vmin, vmax = _colour_range(stack)
        for column, epoch in enumerate(all_epochs):
            ax = axes[row, column]
            ax.set_xticks([])
            ax.set_yticks([])
            if epoch in epochs:
                ax.imshow(stack[epochs.index(epoch)], cmap="viridis", vmin=vmin, vmax=vmax)
            if row == 0:
                ax.set_title(f"epoch {epoch}", fontsize=7)
            if column == 0:
                ax.set_ylabel(labels[model].replace(" · ", "\n") + f"\n{layer}", fontsize=6)
    fig.suptitle(f"RDM of the last convolutional layer over training ({_metric(tables)}; "
                 "stimuli by category)", fontsize=8)
    fig.tight_layout()
    save(fig, out, dpi=dpi)

    n_cols = min(len(drawn), 4)
    n_rows = -(-len(drawn) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.0 * n_cols, 2.1 * n_rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    images = {}
    for ax, (model, (layer, epochs, stack)) in zip(axes.flat, drawn.items()):
        vmin, vmax = _colour_range(stack)
        images[model] = ax.imshow(stack[0], cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_title(f"{labels[model]}\n{layer}", fontsize=7)
    title = fig.suptitle("", fontsize=9)

    def show(k):
        epoch = all_epochs[k]
        for model, (_, epochs, stack) in drawn.items():
            if epoch in epochs:
                images[model].set_data(stack[epochs.index(epoch)])
        title.set_text(f"epoch {epoch}")
        return [*images.values(), title]

    _save_gif(FuncAnimation(fig, show, frames=len(all_epochs)), fig, gif, dpi=dpi)
    return drawn


def _metric(tables) -> str:
    """The RDM metric named in the first table."""
    first = tables[0]
    frame = first if isinstance(first, pd.DataFrame) else pd.read_parquet(first, columns=["metric"])
    return f"{frame['metric'].iloc[0]} distance"


def _grid(n_panels, width, height):
    n_cols = min(n_panels, 4)
    n_rows = -(-n_panels // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width * n_cols + 1, height * n_rows), squeeze=False,
                             sharex=True, sharey=True)
    for ax in axes.flat[n_panels:]:
        ax.axis("off")
    return fig, axes


def plot_development_hierarchy(tables, out, *, dpi=150) -> pd.DataFrame:
    """Correlation of each model's last conv layer RDM with each level's category model over
    epochs (band: bootstrap interval over stimuli), its correlation with the final-epoch RDM
    (grey, dashed) and each level's half-time (dotted verticals); a panel per model.

    Parameters
    ----------
    tables : list of path-like or DataFrame
        The trajectory tables and, in any order, the halftimes tables (told apart by a
        `half_time` column).

    Returns
    -------
    pandas.DataFrame
        The drawn trajectory rows.
    """
    frames = [_frame(table) for table in tables]
    trajectory = [f for f in frames if "reference" in f.columns]
    if not trajectory:
        raise ValueError("plot_development_hierarchy needs at least one trajectory table (with `reference`)")
    trajectory = _last_time(pd.concat(trajectory, ignore_index=True))
    _check_columns(trajectory, {"model", "arch", "objective", "rule", "seed", "layer", "layer_kind", "epoch",
                                "reference", "similarity", "ci_low", "ci_high", "compare"}, "trajectory table")
    halftimes = [f for f in frames if "half_time" in f.columns]
    halftimes = _last_time(pd.concat(halftimes, ignore_index=True)) if halftimes else None
    labels = model_labels(trajectory)
    models = list(labels)
    fig, axes = _grid(len(models), 2.4, 2.0)
    colours = plt.get_cmap("viridis")
    drawn = []
    for ax, model in zip(axes.flat, models):
        rows = trajectory[trajectory["model"] == model]
        layer = last_conv_layer(rows)
        rows = rows[rows["layer"] == layer]
        drawn.append(rows)
        levels = [r for r in dict.fromkeys(rows["reference"]) if r != "final"]
        for k, level in enumerate(levels):
            colour = colours(k / max(len(levels) - 1, 1) * 0.85)
            line = rows[rows["reference"] == level].sort_values("epoch")
            ax.plot(line["epoch"], line["similarity"], "o-", ms=3, lw=1.2, color=colour, label=level)
            ax.fill_between(line["epoch"], line["ci_low"], line["ci_high"], color=colour, alpha=0.2, lw=0)
            if halftimes is not None:
                half = halftimes[(halftimes["model"] == model) & (halftimes["layer"] == layer)
                                 & (halftimes["level"] == level)]["half_time"]
                if len(half) and np.isfinite(half.iloc[0]):
                    ax.axvline(half.iloc[0], color=colour, ls=":", lw=1)
        final = rows[rows["reference"] == "final"].sort_values("epoch")
        ax.plot(final["epoch"], final["similarity"], "--", color="0.5", lw=1, label="final-epoch RDM")
        ax.set_title(f"{labels[model]} · {layer}", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"RDM correlation ({trajectory['compare'].iloc[0]})", fontsize=8)
    axes[0, 0].legend(fontsize=6, frameon=False)
    fig.suptitle("Category structure of the last convolutional layer over training "
                 "(dotted: half-times; band: bootstrap interval over stimuli)", fontsize=9)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return pd.concat(drawn, ignore_index=True)


def plot_development_brain(tables, out, *, dpi=150) -> pd.DataFrame:
    """RSA similarity of each model to each brain area over epochs, at the layer most similar to the
    area at the model's final epoch (RSA fits nothing, so the layer is chosen on all stimuli);
    grey band: the area's noise ceiling (lower to upper). A panel per dataset (rows) and area.

    Returns
    -------
    pandas.DataFrame
        The drawn rows, with the chosen layer of each model and area.
    """
    table = pd.concat([_frame(t) for t in tables], ignore_index=True)
    if table.empty:
        raise ValueError("plot_development_brain: the brain tables are empty (no dataset was recorded on "
                         "this stimulus set)")
    _check_columns(table, {"model", "arch", "objective", "rule", "seed", "dataset", "area", "layer", "epoch",
                           "time", "similarity", "similarity_sem", "nc_lower", "nc_upper", "compare"}, "brain table")
    table = _last_time(table)
    final = table[table["epoch"] == table.groupby("model")["epoch"].transform("max")].dropna(subset=["similarity"])
    best = final.loc[final.groupby(["dataset", "model", "area"])["similarity"].idxmax()]
    chosen = table.merge(best[["dataset", "model", "area", "layer"]], on=["dataset", "model", "area", "layer"])
    labels = model_labels(table)
    datasets = list(dict.fromkeys(table["dataset"]))
    areas = list(dict.fromkeys(table["area"]))
    fig, axes = plt.subplots(len(datasets), len(areas), figsize=(2.3 * len(areas) + 1.5, 2.1 * len(datasets)),
                             squeeze=False, sharex=True, sharey=True)
    colours = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20").colors
    for row, dataset in enumerate(datasets):
        for column, area in enumerate(areas):
            ax = axes[row, column]
            cell = chosen[(chosen["dataset"] == dataset) & (chosen["area"] == area)]
            if cell.empty:
                ax.axis("off")
                continue
            ceiling = cell.iloc[0]
            if np.isfinite(ceiling["nc_lower"]):
                ax.axhspan(ceiling["nc_lower"], ceiling["nc_upper"], color="0.85", lw=0, label="noise ceiling")
            for k, model in enumerate(labels):
                line = cell[cell["model"] == model].sort_values("epoch")
                if line.empty:
                    continue
                colour = colours[k % len(colours)]
                ax.plot(line["epoch"], line["similarity"], "o-", ms=3, lw=1.2, color=colour,
                        label=f"{labels[model]} ({line['layer'].iloc[0]})" if len(areas) == 1 else labels[model])
                ax.fill_between(line["epoch"], line["similarity"] - line["similarity_sem"].fillna(0),
                                line["similarity"] + line["similarity_sem"].fillna(0), color=colour, alpha=0.15, lw=0)
            ax.set_title(f"{dataset} · {area}" if len(datasets) > 1 else area, fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"RSA ({table['compare'].iloc[0]})", fontsize=8)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=6, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("Similarity to the brain over training (best final-epoch layer per area; band: ± s.e.m. "
                 "over animals)", fontsize=9)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return chosen
