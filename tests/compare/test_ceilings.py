"""Ceiling conventions: the thesis' corrected scores and Brain-Score's ceiling and ceiled score,
through the columns the engine stores and the aggregate that summarises them (against a plain
re-run of Brain-Score's procedure and against virtual neurons with known reliability)."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from pipeline.compare.aggregate import median_over_units
from pipeline.compare.ceilings import brainscore_ceiled, brainscore_neuroid_ceiling, corrected_scores
from pipeline.compare.scoring import QUANTITIES


def test_corrected_scores_follow_their_formulas():
    rng = np.random.default_rng(0)
    r, r_mapping, r_target, r_full = rng.uniform(-0.2, 1.0, (4, 50))
    valid = (r_mapping > 0) & (r_target > 0)
    assert valid.any() and not valid.all()
    with np.errstate(invalid="ignore"):
        sb = np.sqrt(2 * r_mapping / (1 + r_mapping) * 2 * r_target / (1 + r_target))
        expected = [np.where(valid, r / np.sqrt(r_mapping * r_target), np.nan),
                    np.where(valid, r_full / sb, np.nan),
                    np.where(valid, r / sb, np.nan)]
    for got, want in zip(corrected_scores(r, r_mapping, r_target, r_full), expected):
        np.testing.assert_allclose(got, want, atol=1e-15)


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


def _table(r_half, r_full):
    """Score-table rows (split, neuroid) whose Brain-Score columns come from the split-half r
    (``ceiling_brainscore``, as the engine stores it) and a per-neuroid raw r (``r_full``)."""
    n_splits, n_neuroids = r_half.shape
    rows = pd.DataFrame({"area": "VISp", "animal": "m0", "mapping": "ridge",
                         "split": np.repeat(np.arange(n_splits), n_neuroids),
                         "neuroid_id": np.tile([f"u{n}" for n in range(n_neuroids)], n_splits)})
    for q in QUANTITIES:
        rows[q] = np.nan
    rows["score"] = 0.5
    rows["r_full"] = np.tile(r_full, n_splits)
    rows["ceiling_brainscore"] = brainscore_neuroid_ceiling(r_half).ravel()
    rows["score_brainscore"] = brainscore_ceiled(rows["r_full"], rows["ceiling_brainscore"])
    return rows


def test_brainscore_ceiling_reproduces_its_internal_consistency(simulate):
    assembly, _ = simulate(n_animals=1, units_per_animal=40, n_trials=10, seed=1)
    expected, r_half = _trial_halves_brainscore_style(assembly.values, 10, np.random.default_rng(0))
    row = median_over_units(_table(r_half, np.zeros(40))).iloc[0]
    assert row["brainscore_ceiling"] == pytest.approx(expected, abs=1e-12)


def test_brainscore_neuroid_ceiling_is_spearman_brown_keeping_negative_r():
    np.testing.assert_allclose(brainscore_neuroid_ceiling([0.5, 0.0, -0.2]), [2 / 3, 0.0, -0.4 / 0.8])


def test_brainscore_conventions():
    raw, ceiling = np.array([0.4, -0.4]), 0.8
    np.testing.assert_allclose(brainscore_ceiled(raw, ceiling), [0.2, 0.2])
    np.testing.assert_allclose(brainscore_ceiled(raw, ceiling, convention="ratio"), [0.5, -0.5])
    with pytest.raises(ValueError, match="convention must be one of"):
        brainscore_ceiled(raw, ceiling, convention="r2")


def test_a_noise_free_model_scores_one_under_brainscores_current_convention(simulate):
    # Virtual neurons with known rates: SB(split-half r) estimates the full-trial reliability,
    # and the noise-free rates correlate with the trial mean at r² ≈ that reliability, so
    # r² / ceiling ≈ 1 (vision#2169), while the older (r / ceiling)² ≈ 1 / ceiling > 1.
    assembly, rates = simulate(n_animals=1, units_per_animal=200, n_trials=8, noise_sd=2.0, seed=3)
    trials = assembly.values
    _, r_half = _trial_halves_brainscore_style(trials, 5, np.random.default_rng(4))
    mean = trials.mean(1)
    r_full = np.array([pearsonr(rates[:, n], mean[:, n])[0] for n in range(rates.shape[1])])
    row = median_over_units(_table(r_half, r_full)).iloc[0]
    raw, ceiling = row["brainscore_raw"], row["brainscore_ceiling"]
    signal = rates.var(0, ddof=1)
    true_reliability = signal / (signal + 2.0**2 / trials.shape[1])
    assert ceiling == pytest.approx(np.median(true_reliability), abs=0.03)
    assert row["brainscore_score"] == pytest.approx(1.0, abs=0.05)
    assert (raw / ceiling) ** 2 == pytest.approx(1 / ceiling, rel=0.05)
    assert ceiling < 0.9                                    # the two conventions really differ here
