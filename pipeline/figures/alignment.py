"""Backward-forward weight alignment over training: the angle between B and W per layer (spec A.9)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.figures.style import plt, save
from pipeline.models.names import parse_model_name

ROWS = [("weight_angle", "angle(B, W) [deg]", "linear"),
        ("norm_ratio", "‖B‖ / ‖W‖", "log")]


def read_alignment(model_dirs) -> pd.DataFrame:
    """Concatenate the runs' `alignment.csv` (results/models/{model}), labelled by model, rule and seed."""
    frames = []
    for folder in map(Path, model_dirs):
        spec = parse_model_name(folder.name)
        frame = pd.read_csv(folder / "alignment.csv")
        frames.append(frame.assign(model=spec.name, rule=spec.rule, seed=spec.seed))
    if not frames:
        raise ValueError("no training runs given (folders holding alignment.csv)")
    return pd.concat(frames, ignore_index=True)


def plot_alignment(model_dirs, out, *, dpi=150) -> pd.DataFrame:
    """One column per learning rule with separate backward weights; one line per layer.

    Lines are the mean over seeds, coloured from the first layer (dark) to the last (light).
    Rules whose table has no finite angle (backprop's B is W; Hebbian layers have no B)
    are named in the title instead of getting an empty panel.

    Returns
    -------
    pandas.DataFrame
        The rows drawn (rules with backward weights only), as read by `read_alignment`.
    """
    table = read_alignment(model_dirs)
    finite = table.groupby("rule")["weight_angle"].apply(lambda s: bool(np.isfinite(s).any())
                                                         and bool((s.abs() > 1e-6).any()))
    rules = [r for r in dict.fromkeys(table["rule"]) if finite.get(r, False)]
    skipped = [r for r in dict.fromkeys(table["rule"]) if r not in rules]
    fig, axes = plt.subplots(len(ROWS), max(len(rules), 1), figsize=(3.2 * max(len(rules), 1), 5.2),
                             sharex=True, sharey="row", squeeze=False)
    for j, rule in enumerate(rules):
        sub = table[table["rule"] == rule]
        layers = list(dict.fromkeys(sub["layer"]))
        colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(layers)))
        means = sub.groupby(["layer", "epoch"], sort=False)[[c for c, _, _ in ROWS]].mean()
        for layer, colour in zip(layers, colours):
            curve = means.loc[layer].sort_index()
            for i, (column, _, _) in enumerate(ROWS):
                axes[i][j].plot(curve.index, curve[column], color=colour, lw=1.2, marker="o", ms=2,
                                label=layer)
        axes[0][j].set_title(rule)
    for i, (_, label, scale) in enumerate(ROWS):
        axes[i][0].set_ylabel(label)
        for ax in axes[i]:
            ax.set_yscale(scale)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[0]:
        ax.axhline(90, color="0.7", lw=0.8, ls="--", zorder=0)
    if rules:
        axes[0][-1].legend(fontsize=6, frameon=False, title="layer", title_fontsize=6)
    note = f" (B = W or no B: {', '.join(skipped)})" if skipped else ""
    fig.suptitle(f"Backward vs forward weights per layer, mean over seeds{note}", fontsize=9)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
    return table[table["rule"].isin(rules)]
