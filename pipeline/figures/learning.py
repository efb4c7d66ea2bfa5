"""Learning curves: loss and train/test accuracy per epoch, one line per model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.figures.style import plt, save
from pipeline.models.names import parse_model_name

PANELS = [("loss", "training loss"), ("train_acc", "train accuracy"), ("test_acc", "test accuracy")]


def plot_learning_curves(metrics_paths, out, *, dpi=150) -> None:
    """Plot every model's metrics.csv; colour by learning rule, line style by seed.

    Parameters
    ----------
    metrics_paths : list of path
        `results/models/{model}/metrics.csv` files; the model name is the parent folder.
    out : path
        Figure file.
    """
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2), squeeze=False)
    rules = sorted({parse_model_name(Path(p).parent.name).rule for p in metrics_paths})
    colours = dict(zip(rules, plt.get_cmap("tab10").colors))
    for path in metrics_paths:
        spec = parse_model_name(Path(path).parent.name)
        metrics = pd.read_csv(path)
        for ax, (column, _) in zip(axes[0], PANELS):
            ax.plot(metrics["epoch"], metrics[column], marker="o", ms=3,
                    color=colours[spec.rule], ls=["-", "--", ":", "-."][spec.seed % 4],
                    label=spec.name)
    for ax, (_, title) in zip(axes[0], PANELS):
        ax.set(xlabel="epoch", title=title)
    for ax in axes[0][1:]:
        ax.set_ylim(0, 1)
    axes[0][-1].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    save(fig, out, dpi=dpi)
