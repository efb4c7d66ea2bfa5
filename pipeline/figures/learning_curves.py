"""Learning curves: loss and train/test accuracy per epoch, one line per model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.figures.style import plt, save
from pipeline.models.names import parse_model_name

PANELS = [("loss", "training loss"), ("train_acc", "train accuracy"), ("test_acc", "test accuracy")]


def plot_learning_curves(model_dirs, out, *, dpi=150) -> pd.DataFrame:
    """Plot every model's metrics.csv; colour by learning rule, line style by seed.

    Parameters
    ----------
    model_dirs : list of path
        Training runs `results/models/{model}` (their `metrics.csv`); the folder names the model.
    out : path
        Figure file.

    Returns
    -------
    pandas.DataFrame
        The curves drawn: every metrics.csv row with its `model` name.
    """
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2), squeeze=False)
    rules = sorted({parse_model_name(Path(d).name).rule for d in model_dirs})
    colours = dict(zip(rules, plt.get_cmap("tab10").colors))
    drawn = []
    for folder in map(Path, model_dirs):
        spec = parse_model_name(folder.name)
        metrics = pd.read_csv(folder / "metrics.csv")
        drawn.append(metrics.assign(model=spec.name))
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
    return pd.concat(drawn, ignore_index=True)
