"""Shared figure helpers: a non-interactive backend and atomic saving."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from pipeline.io import atomic_path  # noqa: E402


def mapping_area_grid(mappings, areas, *, width, height):
    """Figure with one panel per mapping (rows) × area (columns), sharing x, and y per row."""
    return plt.subplots(len(mappings), len(areas), figsize=(width * len(areas), height * len(mappings)),
                        sharex=True, sharey="row", squeeze=False)


def save(fig, path, *, dpi=150) -> None:
    """Save `fig` to `path` atomically (format from the suffix) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
