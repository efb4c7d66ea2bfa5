"""Noise ceilings and ceiled scores under the conventions of the thesis, Brain-Score and rsatoolbox.

All functions take the components the score tables store (DESIGN "Scores": ``r``,
``r_mapping``, ``r_target``, and the all-trial numerator ``r_full``), so a convention is a
column computed from a table, not a second pass over the data.

- **Thesis** (spec §1.2): ``score_thesis = r / sqrt(SB(r_mapping) · SB(r_target))``, computed
  by `corrected_scores` (with score and score_full); `thesis_score` is that column under
  its own name.
- **Brain-Score** (anchors §4; brain-score/vision ``metrics/internal_consistency/ceiling.py``
  and ``benchmark_helpers/neural_common.py``): the raw score is the Pearson r between a map's
  test predictions and the trial-averaged target, per neuroid; its median over neuroids,
  averaged over cross-validation splits, is the benchmark's raw score. The ceiling is
  ``InternalConsistency``: repetitions split in half, Pearson r per neuroid between the
  two half means, Spearman-Brown with n = 2, median over neuroids, mean over splits.
  The map's own reliability does not enter (the thesis' r_mapping term has no
  counterpart). Since vision#2169 (December 2025) the ceiled score is
  ``raw² / ceiling`` (the SB reliability is already a ceiling on explained variance);
  before, it was ``(raw / ceiling)²``, and RDM/CKA benchmarks use ``raw / ceiling``.
  DESIGN's "r²/SB reliability" is the current convention. Here the split-half r is the
  stored ``r_target`` (test stimuli of each split, averaged over trial split-halves),
  where Brain-Score uses all stimuli: the same quantity, estimated on fewer stimuli.
- **rsatoolbox** RSA ceilings: `pipeline.compare.rsa.rsa_noise_ceiling`, re-exported.
"""

from __future__ import annotations

import numpy as np

from pipeline.compare.rsa import rsa_noise_ceiling

__all__ = [
    "BRAINSCORE_CONVENTIONS", "brainscore_aggregate", "brainscore_ceiled", "brainscore_ceiling",
    "brainscore_neuroid_ceiling", "rsa_noise_ceiling", "thesis_score",
]

BRAINSCORE_CONVENTIONS = ("explained_variance", "explained_variance_v1", "ratio")


def spearman_brown(r, n=2):
    """Reliability of the mean of n parallel halves, from the correlation r of one pair.

    Spec §1: SB(r) = n·r / (1 + (n-1)·r). Negative r is kept, not clipped.
    """
    return n * r / (1 + (n - 1) * r)


def corrected_scores(r, r_mapping, r_target, r_full):
    """The three noise-corrected scores from their correlation terms (arrays broadcast).

    SB enters only the denominators (spec §1.2). NaN where r_mapping or r_target <= 0.

    Returns
    -------
    score, score_full, score_thesis : ndarray
    """
    valid = (r_mapping > 0) & (r_target > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sb = np.sqrt(spearman_brown(r_mapping) * spearman_brown(r_target))
        score = np.where(valid, r / np.sqrt(r_mapping * r_target), np.nan)
        score_full = np.where(valid, r_full / sb, np.nan)
        score_thesis = np.where(valid, r / sb, np.nan)
    return score, score_full, score_thesis


def thesis_score(r, r_mapping, r_target):
    """The thesis' noise-corrected r, ``r / sqrt(SB(r_mapping) · SB(r_target))`` (spec §1.2).

    The ``score_thesis`` of `corrected_scores`. NaN where r_mapping or r_target <= 0.
    """
    return corrected_scores(r, r_mapping, r_target, r)[2]


def brainscore_neuroid_ceiling(r_target):
    """Per-neuroid Brain-Score ceiling: the Spearman-Brown (n = 2) split-half reliability.

    Parameters
    ----------
    r_target : array_like
        Pearson r between the target's two half-trial means (the stored ``r_target``).

    Returns
    -------
    ndarray
        ``2 r / (1 + r)``; negative r is kept, as Brain-Score keeps it.
    """
    return spearman_brown(np.asarray(r_target, dtype=np.float64))


def brainscore_aggregate(values, *, neuroid_axis=-1, split_axis=None):
    """Brain-Score's aggregation: median over neuroids, then mean over cross-validation splits.

    Used for the raw score (``CrossRegressedCorrelation``) and for the ceiling
    (``InternalConsistency``). NaN values are skipped, as xarray's median and mean skip them.

    Parameters
    ----------
    values : array_like
        Per-neuroid values, e.g. shape (split, neuroid).
    neuroid_axis : int
        Axis of neuroids.
    split_axis : int or None
        Axis of splits, numbered as in `values`; None when there is none.

    Returns
    -------
    float or ndarray
        `values` without the neuroid and split axes.
    """
    values = np.asarray(values, dtype=np.float64)
    neuroid_axis = neuroid_axis % values.ndim
    if split_axis is not None:
        split_axis = split_axis % values.ndim
        if split_axis == neuroid_axis:
            raise ValueError(f"brainscore_aggregate: split_axis and neuroid_axis are both axis {split_axis}.")
    median = np.nanmedian(values, axis=neuroid_axis)
    if split_axis is None:
        return median
    return np.nanmean(median, axis=split_axis - (split_axis > neuroid_axis))


def brainscore_ceiling(r_target, *, neuroid_axis=-1, split_axis=None):
    """Brain-Score ``InternalConsistency`` ceiling from per-neuroid split-half correlations.

    ``brainscore_aggregate(brainscore_neuroid_ceiling(r_target))``: Spearman-Brown per
    neuroid, median over neuroids, mean over splits.
    """
    return brainscore_aggregate(brainscore_neuroid_ceiling(r_target), neuroid_axis=neuroid_axis,
                                split_axis=split_axis)


def brainscore_ceiled(raw, ceiling, *, convention="explained_variance"):
    """Brain-Score's ceiled score from a raw score and a ceiling (arrays broadcast).

    Brain-Score applies this to the aggregated raw score and ceiling; applied per row
    (``r_full`` with `brainscore_neuroid_ceiling`), it is its neuroid-wise variant
    (``neuroid_wise_explained_var``) before aggregation.

    Parameters
    ----------
    raw : array_like
        Raw Pearson r of predictions against the trial-averaged target (``r_full``).
    ceiling : array_like
        From `brainscore_ceiling` or `brainscore_neuroid_ceiling`.
    convention : {"explained_variance", "explained_variance_v1", "ratio"}
        "explained_variance": ``raw² / ceiling``, Brain-Score since vision#2169;
        "explained_variance_v1": ``(raw / ceiling)²``, Brain-Score before it;
        "ratio": ``raw / ceiling``, Brain-Score's RDM and CKA benchmarks.

    Returns
    -------
    ndarray
        Not clipped (Brain-Score's raw values are not either; see vision#2112).
    """
    raw, ceiling = np.asarray(raw, dtype=np.float64), np.asarray(ceiling, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if convention == "explained_variance":
            return raw**2 / ceiling
        if convention == "explained_variance_v1":
            return (raw / ceiling) ** 2
        if convention == "ratio":
            return raw / ceiling
    raise ValueError(f"brainscore_ceiled convention must be one of {BRAINSCORE_CONVENTIONS}; got {convention!r}.")
