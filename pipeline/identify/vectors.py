"""A procedurally generated, modality-free classification task: labelled random vectors.

The second task family of the identification grid (spec_ch5-6 B.3 trains on images, SimCLR
views and speech cochleagrams; B.7.3 holds a task out), so a classifier trained on one task can
be tested on a task with nothing image-like about it. Latent vectors z ~ N(0, I_m) are labelled
by a random two-layer teacher (argmax of tanh(z A) C, so classes are not linearly separable in
z), and observed as x = z E + σ ε in d = 3·size² dimensions through a random embedding E. Each
feature is mapped to 0…255 by the Gaussian CDF of its standardised value and laid out as a
size × size × 3 "image" in a fixed random order, so neighbouring pixels are unrelated: every
architecture of the pipeline reads it, none can exploit spatial structure. Classes are
balanced by drawing until each has its quota.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.special import ndtr

from pipeline.data.stimuli import stimulus_set_sha256

SETS = ("train", "test")

__all__ = ["SETS", "make_vector_sets"]


def _draw_balanced(rng, teacher, per_class: int, n_classes: int, latent_dim: int) -> tuple:
    """(z, labels) with exactly `per_class` latents of each class, in random order."""
    hidden, readout = teacher
    kept_z, kept_y = [], []
    counts = np.zeros(n_classes, dtype=int)
    while counts.min() < per_class:
        z = rng.standard_normal((4096, latent_dim))
        labels = np.argmax(np.tanh(z @ hidden) @ readout, axis=1)
        for cls in range(n_classes):
            take = z[labels == cls][:per_class - counts[cls]]
            counts[cls] += len(take)
            kept_z.append(take)
            kept_y.append(np.full(len(take), cls))
    z, labels = np.concatenate(kept_z), np.concatenate(kept_y)
    order = rng.permutation(len(z))
    return z[order], labels[order]


def make_vector_sets(size=16, n_classes=16, train_per_class=64, test_per_class=32,
                     latent_dim=16, noise=0.5, seed=0) -> dict[str, xr.Dataset]:
    """Train and test sets of the vector task, in the stimulus-set layout.

    Parameters
    ----------
    size : int
        The vectors have 3·size² features, stored as (size, size, 3) uint8 "images".
    n_classes : int
        Classes of the teacher (names c00, c01, …; the same at every label level).
    train_per_class, test_per_class : int
        Vectors per class in each set.
    latent_dim : int
        Dimension m of the latent z.
    noise : float
        Standard deviation σ of the observation noise, relative to the unit-variance latent
        directions (features are standardised afterwards).
    seed : int
        Seed of the teacher, the embedding, the layout and the draws.

    Returns
    -------
    dict of str to xarray.Dataset
        "train" and "test": `image` (stimulus, y, x, channel) uint8, coords stimulus_id,
        superordinate, basic, subordinate; attrs name (`vectors_<set>`) and sha256.
    """
    for key, value, low in (("size", size, 1), ("n_classes", n_classes, 2),
                            ("train_per_class", train_per_class, 1),
                            ("test_per_class", test_per_class, 1),
                            ("latent_dim", latent_dim, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"make_vector_sets: {key} must be an integer ≥ {low}; got {value!r}")
    if not noise >= 0:
        raise ValueError(f"make_vector_sets: noise must be ≥ 0; got {noise!r}")
    rng = np.random.default_rng(seed)
    d = 3 * size * size
    teacher = (rng.standard_normal((latent_dim, 4 * n_classes)),
               rng.standard_normal((4 * n_classes, n_classes)))
    embedding = rng.standard_normal((latent_dim, d)) / np.sqrt(latent_dim)
    layout = rng.permutation(d)
    scale = np.sqrt((embedding ** 2).sum(0) + noise ** 2)       # each feature's std
    names = np.array([f"c{c:02d}" for c in range(n_classes)])
    out = {}
    for key, per_class, stream in zip(SETS, (train_per_class, test_per_class),
                                      rng.spawn(len(SETS))):
        z, labels = _draw_balanced(stream, teacher, per_class, n_classes, latent_dim)
        x = z @ embedding + noise * stream.standard_normal((len(z), d))
        pixels = np.clip(np.round(ndtr(x / scale) * 255), 0, 255).astype(np.uint8)
        images = pixels[:, layout].reshape(len(z), size, size, 3)
        name = f"vectors_{key}"
        classes = names[labels]
        ds = xr.Dataset(
            {"image": (("stimulus", "y", "x", "channel"), images)},
            coords={"stimulus_id": ("stimulus", [f"{name}_{i:05d}" for i in range(len(z))]),
                    "superordinate": ("stimulus", classes), "basic": ("stimulus", classes),
                    "subordinate": ("stimulus", classes)},
        )
        ds.attrs["name"] = name
        ds.attrs["sha256"] = stimulus_set_sha256(ds)
        out[key] = ds
    return out
