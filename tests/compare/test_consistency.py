"""The noise-corrected consistency estimator: ground truth, closed forms and conventions."""

import numpy as np
import pandas as pd
import pytest
from distributed import LocalCluster
from scipy.spatial.distance import pdist, squareform
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge

from pipeline.compare.aggregate import summarize
from pipeline.compare.consistency import interanimal, predictivity, spearman_brown
from pipeline.compare.mappings import PLSMap, RidgeMap, pearson
from pipeline.compare.splits import stimulus_splits, trial_halves


def _target(assembly, rates, animal):
    mask = assembly["animal"].values == animal
    return assembly.isel(neuroid=mask), rates[:, mask]


def _summary(scores, mapping):
    return summarize(scores).set_index("mapping").loc[mapping]


@pytest.mark.parametrize("poisson", [False, True])
def test_a_noise_free_linear_copy_of_the_target_scores_one(poisson, simulate, to_activations):
    assembly, rates = simulate(n_animals=1, units_per_animal=30, n_trials=20,
                                       noise_sd=2.0, poisson=poisson, seed=1)
    features = rates @ np.random.default_rng(2).standard_normal((30, 60))
    activations = to_activations(features, assembly["stimulus_id"].values)
    # 25 PLS components span the target's rates, so the noise-free map is exact.
    scores = predictivity(activations, assembly, mappings=("ridge", "pls"), n_halves=6, n_splits=4)
    for mapping in ("ridge", "pls"):
        summary = _summary(scores, mapping)
        assert summary["score"] == pytest.approx(1.0, abs=0.03)
        assert summary["score_full"] == pytest.approx(1.0, abs=0.03)


def _true_consistency(assembly, rates, mapping, splits):
    """Corr(F(A_true -> B_true)(A_true_test), B_true_test) per unit, averaged over splits."""
    animal = assembly["animal"].values
    values = []
    for target in np.unique(animal):
        A, B = rates[:, animal != target], rates[:, animal == target]
        per_split = [pearson(mapping.fit(A[tr], B[tr]).predict(A[te]), B[te], axis=0) for tr, te in splits]
        values.append(np.mean(per_split, axis=0))
    return np.concatenate(values)


@pytest.mark.parametrize("name,mapping", [("ridge", RidgeMap(1.0)), ("pls", PLSMap(10))])
def test_interanimal_recovers_the_noise_free_consistency(name, mapping, simulate):
    assembly, rates = simulate(n_animals=4, units_per_animal=30, n_trials=20,
                                       latent_dim=8, noise_sd=1.5, seed=0)
    scores = interanimal(assembly, mappings=(name,), n_halves=8, n_splits=4, n_components=10)
    truth = np.median(_true_consistency(assembly, rates, mapping, stimulus_splits(118, 4, 0.5, 0)))
    summary = _summary(scores, name)
    assert summary["score"] == pytest.approx(truth, abs=0.03)
    assert summary["score_full"] == pytest.approx(truth, abs=0.03)
    # score_thesis reads low by the attenuation its SB-lifted denominator predicts.
    rm, rt = scores["r_mapping"], scores["r_target"]
    attenuation = np.sqrt(rm * rt / (spearman_brown(rm) * spearman_brown(rt)))
    factor = attenuation.groupby([scores["animal"], scores["neuroid_id"]]).mean().median()
    assert summary["score_thesis"] == pytest.approx(truth * factor, abs=0.03)
    assert summary["score_thesis"] < truth - 0.03


def test_one_unit_matches_a_direct_implementation_of_the_formula(simulate):
    """SB enters only the denominators; the pooled kernel equals concatenating the sources."""
    assembly, _ = simulate(n_animals=3, units_per_animal=8, n_trials=10, noise_sd=1.0, seed=3)
    scores = interanimal(assembly, n_halves=1, n_splits=1, n_components=4)
    first, second = trial_halves(10, 1, seed=0)[0]
    train, test = stimulus_splits(118, 1, 0.5, seed=0)[0]
    R = assembly.values
    is_target = assembly["animal"].values == "m01"
    halves = [R[:, t][:, :, ~is_target].mean(1) for t in (first, second)] + [R[:, :, ~is_target].mean(1)]
    targets = [R[:, t][:, :, is_target].mean(1) for t in (first, second)] + [R[:, :, is_target].mean(1)]

    def sb(r):
        return 2 * r / (1 + r)

    for name, model in (("ridge", Ridge(1.0)), ("pls", PLSRegression(4, scale=False))):
        p1, p2, pbar = (model.fit(A[train], B[train]).predict(A[test]) for A, B in zip(halves, targets))
        B1, B2, Bbar = (B[test] for B in targets)
        unit = 5
        r = np.corrcoef(p1[:, unit], B2[:, unit])[0, 1]
        rm = np.corrcoef(p1[:, unit], p2[:, unit])[0, 1]
        rt = np.corrcoef(B1[:, unit], B2[:, unit])[0, 1]
        r_full = np.corrcoef(pbar[:, unit], Bbar[:, unit])[0, 1]
        row = scores[(scores["mapping"] == name) & (scores["neuroid_id"] == "VISp-m1-u5")].iloc[0]
        assert row["r"] == pytest.approx(r, abs=1e-8)
        assert row["r_mapping"] == pytest.approx(rm, abs=1e-8)
        assert row["r_target"] == pytest.approx(rt, abs=1e-8)
        assert row["score"] == pytest.approx(r / np.sqrt(rm * rt), abs=1e-8)
        assert row["score_thesis"] == pytest.approx(r / np.sqrt(sb(rm) * sb(rt)), abs=1e-8)
        assert row["score_full"] == pytest.approx(r_full / np.sqrt(sb(rm) * sb(rt)), abs=1e-8)

    def rdm(X):
        return squareform(pdist(X, metric="correlation"))

    def compare(a, b):
        iu = np.triu_indices(118, k=1)
        return np.corrcoef(a[iu], b[iu])[0, 1]

    row = scores[(scores["mapping"] == "rsa") & (scores["animal"] == "m01")].iloc[0]
    r = compare(rdm(halves[0]), rdm(targets[1]))
    rm = compare(rdm(halves[0]), rdm(halves[1]))
    rt = compare(rdm(targets[0]), rdm(targets[1]))
    assert (row["neuroid_id"], row["split"]) == ("", 0)
    assert row["score"] == pytest.approx(r / np.sqrt(rm * rt), abs=1e-8)
    assert row["score_full"] == pytest.approx(
        compare(rdm(halves[2]), rdm(targets[2])) / np.sqrt(sb(rm) * sb(rt)), abs=1e-8)


def test_rsa_mapping_term_is_one_for_a_model_source(simulate, to_activations):
    assembly, rates = simulate(n_animals=2, units_per_animal=20, n_trials=10, seed=4)
    target, target_rates = _target(assembly, rates, "m00")
    activations = to_activations(target_rates, assembly["stimulus_id"].values)
    rows = predictivity(activations, target, mappings=("rsa",), n_halves=4, n_splits=2)
    assert len(rows) == 1
    assert rows["r_mapping"].iloc[0] == pytest.approx(1.0, abs=1e-12)
    assert rows["score"].iloc[0] == pytest.approx(1.0, abs=0.05)


def test_negative_target_reliability_gives_nan_and_is_skipped_in_summaries(simulate):
    assembly, rates = simulate(n_animals=3, units_per_animal=10, n_trials=2, noise_sd=0.3, seed=5)
    values = assembly.values.copy()
    values[:, 1, 0] = -values[:, 0, 0]            # halves of unit 0 anti-correlate in every split
    assembly = assembly.copy(data=values)
    scores = interanimal(assembly, mappings=("ridge",), n_halves=2, n_splits=2)
    bad = scores[scores["neuroid_id"] == assembly["neuroid_id"].values[0]]
    assert (bad["r_target"] < 0).all()
    assert bad[["score", "score_full", "score_thesis"]].isna().all().all()
    summary = summarize(scores)
    assert summary["n_nan"].sum() == 1
    per_unit = scores.groupby(["animal", "neuroid_id"])["score"].mean()
    assert summary["score"].iloc[0] == pytest.approx(per_unit.dropna().median())


def test_scores_are_deterministic_and_independent_of_workers(simulate):
    assembly, _ = simulate(n_animals=3, units_per_animal=10, n_trials=10, areas=("VISp", "VISl"), seed=6)
    kwargs = dict(n_halves=3, n_splits=2, n_components=5, seed=7)
    one = interanimal(assembly, n_workers=1, **kwargs)
    again = interanimal(assembly, n_workers=1, **kwargs)
    two = interanimal(assembly, n_workers=2, **kwargs)
    pd.testing.assert_frame_equal(one, again)
    pd.testing.assert_frame_equal(one, two, rtol=1e-9)
    assert set(one["area"]) == {"VISp", "VISl"}
    assert len(one) == 2 * 2 * 60 + 2 * 3                 # ridge, pls per unit-split; rsa per animal


def test_missing_stimulus_ids_raise_a_clear_error(simulate, to_activations):
    assembly, rates = simulate(n_animals=2, units_per_animal=5, n_trials=4, seed=8)
    ids = assembly["stimulus_id"].values.astype(object)
    ids[[3, 7]] = ["other_a", "other_b"]
    with pytest.raises(ValueError, match=r"lack 2 of the assembly's 118 stimulus_id values.*'s003', 's007'"):
        predictivity(to_activations(rates, ids), assembly)


def test_unknown_mapping_names_are_rejected(simulate):
    assembly, _ = simulate(n_animals=2, units_per_animal=5, n_trials=4, seed=9)
    with pytest.raises(ValueError, match=r"unknown mappings \['lasso'\]"):
        interanimal(assembly, mappings=("lasso",))


def test_a_distributed_scheduler_gives_the_local_result(simulate):
    assembly, _ = simulate(n_animals=2, units_per_animal=6, n_trials=6, seed=11)
    kwargs = dict(mappings=("ridge", "rsa"), n_halves=2, n_splits=2)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        remote = interanimal(assembly, scheduler=cluster.scheduler_address, **kwargs)
    pd.testing.assert_frame_equal(remote, interanimal(assembly, **kwargs))
