"""Random train/test splits and subsets of the stimuli (spec §1.3); trial halves: `pipeline.data.reliability`."""

from __future__ import annotations

import math
import zlib

import numpy as np


def stimulus_splits(n_stimuli, n_splits=10, train_frac=0.5, seed=0):
    """Random train/test splits of the stimuli.

    Follows mouse-vision's ``generate_train_test_img_splits``: split ``s`` permutes the
    stimuli with ``RandomState(seed + s)`` and takes the first ``ceil(train_frac * n_stimuli)``
    as training stimuli (59 of the 118 Allen natural scenes at ``train_frac=0.5``).

    Parameters
    ----------
    n_stimuli : int
        Number of stimuli.
    n_splits : int
        Number of splits.
    train_frac : float
        Fraction of stimuli used for fitting, in (0, 1).
    seed : int
        Seed of the first split.

    Returns
    -------
    list of (ndarray, ndarray)
        ``(train_idx, test_idx)`` per split, each sorted.
    """
    if not 0 < train_frac < 1:
        raise ValueError(f"train_frac must be in (0, 1); got {train_frac!r}.")
    n_train = math.ceil(train_frac * n_stimuli)
    if not 2 <= n_train <= n_stimuli - 2:
        raise ValueError(
            f"train_frac={train_frac} of {n_stimuli} stimuli leaves {n_train} training and "
            f"{n_stimuli - n_train} test stimuli; each side needs at least 2."
        )
    if n_splits < 1:
        raise ValueError(f"n_splits must be a positive integer; got {n_splits!r}.")
    splits = []
    for s in range(n_splits):
        order = np.random.RandomState(seed + s).permutation(n_stimuli)
        splits.append((np.sort(order[:n_train]), np.sort(order[n_train:])))
    return splits


def inner_splits(splits, train_frac=0.5, seed=0):
    """A validation split inside the training stimuli of each outer split (best-layer choice).

    Split ``s``'s training stimuli are permuted with ``RandomState(seed + s)`` and the first
    ``ceil(train_frac · n_train)`` fit the maps; the rest validate them. The outer test
    stimuli are never among them, so a layer chosen on these splits has not seen split
    ``s``'s test data (`pipeline.compare.aggregate.best_layer`).

    Parameters
    ----------
    splits : list of (ndarray, ndarray)
        Outer ``(train_idx, test_idx)`` splits, from `stimulus_splits`.
    train_frac : float
        Fraction of each outer training set used to fit, in (0, 1).
    seed : int
        Seed of the first split's permutation.

    Returns
    -------
    list of (ndarray, ndarray)
        ``(fit_idx, validation_idx)`` per outer split, stimulus indices (subsets of that
        split's ``train_idx``), each sorted.
    """
    inner = []
    for s, (train, _) in enumerate(splits):
        fit, validate = stimulus_splits(train.size, 1, train_frac, seed + s)[0]
        inner.append((train[fit], train[validate]))
    return inner


def stimulus_subset(n_stimuli, size, seed=0):
    """A random subset of `size` stimuli, sorted; all stimuli when `size` is None.

    Used for consistency as a function of the number of stimuli (spec §2.3, Fig. 3.13B):
    the subset is drawn with ``RandomState(seed)``, then split into train and test as usual.
    """
    if size is None or size >= n_stimuli:
        return np.arange(n_stimuli)
    if size < 4:
        raise ValueError(f"a stimulus subset needs at least 4 stimuli (2 to fit, 2 to test); got {size}.")
    return np.sort(np.random.RandomState(seed).permutation(n_stimuli)[:size])


def unit_subset(n_units, size, key, seed=0):
    """A seeded random subset of `size` of `n_units` source units (equalised source sizes).

    Parameters
    ----------
    n_units : int
        Units available in the source.
    size : int
        Units to keep; all are kept (in order) when ``size >= n_units``.
    key : str
        Names the (area, target, source) so that every job draws its own subset and the
        same job always draws the same one, on any worker.
    seed : int
        Global seed.

    Returns
    -------
    ndarray of int, sorted
    """
    if size >= n_units:
        return np.arange(n_units)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    return np.sort(rng.choice(n_units, size, replace=False))
