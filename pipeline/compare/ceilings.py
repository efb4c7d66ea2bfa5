"""Noise ceilings and ceiled scores under the conventions of the thesis and Brain-Score.

All functions take the components the score tables store (DESIGN "Scores": ``r``,
``r_mapping``, ``r_target``, and the all-trial numerator ``r_full``), so a convention is a
column computed from a table, not a second pass over the data.

- **Thesis** (spec §1.2): ``score_thesis = r / sqrt(SB(r_mapping) · SB(r_target))``, computed
  by `corrected_scores` with score and score_full.
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
  `brainscore_neuroid_ceiling` and `brainscore_ceiled` give the per-row columns;
  `pipeline.compare.aggregate` does the median over neuroids and the mean over splits.
- **rsatoolbox** RSA noise ceilings: `pipeline.compare.rsa.rsa_noise_ceiling`.
"""

from __future__ import annotations

import numpy as np

BRAINSCORE_CONVENTIONS = ("explained_variance", "ratio")


def spearman_brown(r, n=2):
    """Reliability of the mean of n parallel halves, from the correlation r of one pair.

    Spec §1: SB(r) = n·r / (1 + (n-1)·r). Negative r is kept, not clipped.
    """
    return n * r / (1 + (n - 1) * r)


def corrected_scores(r, r_mapping, r_target, r_full):
    """The three noise-corrected scores from their correlation terms (arrays broadcast).

    SB enters only the denominators (spec §1.2). NaN where r_mapping or r_target <= 0 (the
    score is undefined there). Positive terms near 0 still give ratios of any size; the
    score tables keep them and flag, in ``defined``, the rows whose score was undefined in
    some split-half (`pipeline.compare.scoring`, "Undefined splits").

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
        Brain-Score's ceiling: per row, `brainscore_neuroid_ceiling`; aggregated, its median
        over neuroids averaged over splits.
    convention : {"explained_variance", "ratio"}
        "explained_variance": ``raw² / ceiling``, Brain-Score since vision#2169;
        "ratio": ``raw / ceiling``, Brain-Score's RDM and CKA benchmarks.

    Returns
    -------
    ndarray
        Not clipped (Brain-Score's raw values are not either; see vision#2112). A ceiling
        near 0 gives values of any size and a negative one flips the sign: per row, such
        rows have ``defined`` False in the score tables whenever a split-half's r_target
        was <= 0.
    """
    raw, ceiling = np.asarray(raw, dtype=np.float64), np.asarray(ceiling, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if convention == "explained_variance":
            return raw**2 / ceiling
        if convention == "ratio":
            return raw / ceiling
    raise ValueError(f"brainscore_ceiled convention must be one of {BRAINSCORE_CONVENTIONS}; got {convention!r}.")
