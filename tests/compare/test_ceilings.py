"""Ceiling conventions: the thesis', Brain-Score's (against a plain re-run of its procedure and
against virtual neurons with known reliability) and rsatoolbox's RSA ceilings."""

import numpy as np
import pytest
from scipy.stats import pearsonr

from pipeline.compare import rsa
from pipeline.compare.ceilings import (
    brainscore_aggregate,
    brainscore_ceiled,
    brainscore_ceiling,
    brainscore_neuroid_ceiling,
    rsa_noise_ceiling,
    thesis_score,
)
from pipeline.compare.ceilings import corrected_scores


def test_thesis_score_is_the_consistency_engines_column():
    rng = np.random.default_rng(0)
    r, r_mapping, r_target = rng.uniform(-0.2, 1.0, (3, 50))
    with np.errstate(invalid="ignore"):
        expected = np.where((r_mapping > 0) & (r_target > 0),
                            r / np.sqrt(2 * r_mapping / (1 + r_mapping) * 2 * r_target / (1 + r_target)), np.nan)
    np.testing.assert_allclose(thesis_score(r, r_mapping, r_target), expected, atol=1e-15)
    np.testing.assert_array_equal(thesis_score(r, r_mapping, r_target),
                                  corrected_scores(r, r_mapping, r_target, r)[2])


def _trial_halves_brainscore_style(trials, n_splits, rng):
    """Brain-Score ``InternalConsistency`` written out: per split, repetitions halved at random,
    averaged, Pearson r per neuroid across stimuli, Spearman-Brown (n=2), median over neuroids;
    then the mean over splits. Returns the ceiling and the per-(split, neuroid) half r."""
    n_stimuli, n_trials, n_neuroids = trials.shape
    per_split, r_half = [], np.empty((n_splits, n_neuroids))
    for split in range(n_splits):
        order = rng.permutation(n_trials)
        first = trials[:, order[:n_trials // 2]].mean(1)
        second = trials[:, order[n_trials // 2:]].mean(1)
        for n in range(n_neuroids):
            r_half[split, n] = pearsonr(first[:, n], second[:, n])[0]
        per_split.append(np.median([2 * r / (1 + r) for r in r_half[split]]))
    return np.mean(per_split), r_half


def test_brainscore_ceiling_reproduces_its_internal_consistency(simulate):
    assembly, _ = simulate(n_animals=1, units_per_animal=40, n_trials=10, seed=1)
    expected, r_half = _trial_halves_brainscore_style(assembly.values, 10, np.random.default_rng(0))
    assert brainscore_ceiling(r_half, split_axis=0) == pytest.approx(expected, abs=1e-12)
    assert brainscore_ceiling(r_half.T, neuroid_axis=0, split_axis=1) == pytest.approx(expected, abs=1e-12)


def test_brainscore_aggregate_is_median_over_neuroids_then_mean_over_splits():
    values = np.random.default_rng(2).standard_normal((4, 3, 9))          # (layer, split, neuroid)
    values[0, 1, 2] = np.nan                                               # skipped, as xarray does
    expected = [np.mean([np.nanmedian(values[layer, s]) for s in range(3)]) for layer in range(4)]
    np.testing.assert_allclose(brainscore_aggregate(values, split_axis=1), expected, atol=1e-15)
    np.testing.assert_allclose(brainscore_aggregate(values[:, 0]), np.nanmedian(values[:, 0], axis=-1))
    with pytest.raises(ValueError, match="both axis"):
        brainscore_aggregate(values, neuroid_axis=1, split_axis=1)


def test_brainscore_neuroid_ceiling_is_spearman_brown_keeping_negative_r():
    np.testing.assert_allclose(brainscore_neuroid_ceiling([0.5, 0.0, -0.2]), [2 / 3, 0.0, -0.4 / 0.8])


def test_brainscore_conventions():
    raw, ceiling = np.array([0.4, -0.4]), 0.8
    np.testing.assert_allclose(brainscore_ceiled(raw, ceiling), [0.2, 0.2])
    np.testing.assert_allclose(brainscore_ceiled(raw, ceiling, convention="explained_variance_v1"), [0.25, 0.25])
    np.testing.assert_allclose(brainscore_ceiled(raw, ceiling, convention="ratio"), [0.5, -0.5])
    with pytest.raises(ValueError, match="convention must be one of"):
        brainscore_ceiled(raw, ceiling, convention="r2")


def test_a_noise_free_model_scores_one_under_brainscores_current_convention(simulate):
    # Virtual neurons with known rates: SB(split-half r) estimates the full-trial reliability,
    # and the noise-free rates correlate with the trial mean at r² ≈ that reliability, so
    # r² / ceiling ≈ 1 (vision#2169), while the older (r / ceiling)² ≈ 1 / ceiling > 1.
    assembly, rates = simulate(n_animals=1, units_per_animal=200, n_trials=8, noise_sd=2.0, seed=3)
    trials = assembly.values
    rng = np.random.default_rng(4)
    _, r_half = _trial_halves_brainscore_style(trials, 5, rng)
    ceiling = brainscore_ceiling(r_half, split_axis=0)
    signal = rates.var(0, ddof=1)
    true_reliability = signal / (signal + 2.0**2 / trials.shape[1])
    assert ceiling == pytest.approx(np.median(true_reliability), abs=0.03)
    mean = trials.mean(1)
    raw = brainscore_aggregate([pearsonr(rates[:, n], mean[:, n])[0] for n in range(rates.shape[1])])
    assert brainscore_ceiled(raw, ceiling) == pytest.approx(1.0, abs=0.05)
    assert brainscore_ceiled(raw, ceiling, convention="explained_variance_v1") == pytest.approx(
        1 / ceiling, rel=0.05)
    assert ceiling < 0.9                                    # the two conventions really differ here


def test_rsa_noise_ceiling_is_rsatoolbox_style_from_rsa():
    assert rsa_noise_ceiling is rsa.rsa_noise_ceiling
