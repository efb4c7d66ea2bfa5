"""Probe-set RDMs of each area's pooled population and of each model layer."""

from __future__ import annotations

import numpy as np

from pipeline.compare.rsa import rdm
from pipeline.data.assembly import read_assembly
from pipeline.figures.style import plt, save
from pipeline.io import read_zarr


def category_order(stimuli_path) -> np.ndarray:
    """stimulus_id sorted by superordinate, basic and subordinate class (blocks in the RDMs).

    Label levels a set lacks are left out of the sort (natural scenes have none: stored order).
    """
    stimuli = read_zarr(stimuli_path)
    levels = [stimuli[level].values.astype(str) for level in ("subordinate", "basic", "superordinate")
              if level in stimuli.coords]
    ids = stimuli["stimulus_id"].values.astype(str)
    return ids[np.lexsort(levels)] if levels else ids


def plot_rdms(neural_path, activations_path, stimuli_path, out, *, dpi=150) -> dict[str, np.ndarray]:
    """RDMs (1 − Pearson r) of the trial-mean responses per area and of every layer (final epoch).

    Stimuli are sorted by category, so the hierarchy shows as blocks. A recurrent model's
    layers are shown at their last time step.

    Returns
    -------
    dict of str to ndarray
        The RDMs drawn (stimulus × stimulus, in category order) by panel title.
    """
    neural = read_assembly(neural_path)
    order = category_order(stimuli_path)
    activations = read_zarr(activations_path)
    layers = list(activations.data_vars)
    panels, drawn = [], {}
    for area in dict.fromkeys(neural["area"].values):
        population = neural.where(neural["area"] == area, drop=True).mean("trial")
        panels.append((area, population))
    for layer in layers:
        features = activations[layer].isel(epoch=-1).load()
        title = f"{layer} (epoch {int(features['epoch'])})"
        if "time" in features.dims:
            features = features.isel(time=-1)
            title = f"{layer} (epoch {int(features['epoch'])}, t{int(features['time'])})"
        panels.append((title, features))
    n_cols = max(len(set(neural["area"].values)), len(layers))
    fig, axes = plt.subplots(2, n_cols, figsize=(1.9 * n_cols, 4.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (title, data) in enumerate(panels):
        row, col = (0, k) if k < len(panels) - len(layers) else (1, k - (len(panels) - len(layers)))
        data = data.set_index(stimulus="stimulus_id").sel(stimulus=order)
        matrix = rdm(np.asarray(data.transpose("stimulus", ...).values, dtype=np.float64))
        drawn[title] = matrix
        axes[row][col].imshow(matrix, cmap="viridis", vmin=0, vmax=np.nanpercentile(matrix, 99))
        axes[row][col].set_title(title, fontsize=8)
    fig.suptitle("Probe-set RDMs: brain areas (top), model layers (bottom)", fontsize=9)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return drawn
