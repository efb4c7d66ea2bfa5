"""The noise-corrected consistency estimator: ground truth, closed forms and conventions."""

import numpy as np
import pandas as pd
import pytest
from distributed import LocalCluster
from scipy.spatial.distance import pdist, squareform
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge

from pipeline.compare.aggregate import median_over_units
from pipeline.compare.ceilings import spearman_brown
from pipeline.compare.consistency import interanimal, predictivity
from pipeline.compare.mappings import PLSMap, RidgeMap, pearson
from pipeline.compare.scoring import QUANTITIES
from pipeline.compare.splits import stimulus_splits
from pipeline.data.reliability import trial_halves


def _target(assembly, rates, animal):
    mask = assembly["animal"].values == animal
    return assembly.isel(neuroid=mask), rates[:, mask]


def _summary(scores, mapping):
    return median_over_units(scores).set_index("mapping").loc[mapping]


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
    summary = median_over_units(scores)
    assert summary["n_nan"].sum() == 1
    per_unit = scores.groupby(["animal", "neuroid_id"])["score"].mean()
    assert summary["score"].iloc[0] == pytest.approx(per_unit.dropna().median())


def test_scores_are_deterministic_and_independent_of_workers(simulate):
    assembly, _ = simulate(n_animals=3, units_per_animal=10, n_trials=10, areas=("VISp", "VISl"), seed=6)
    kwargs = dict(n_halves=3, n_splits=2, n_components=5, seed=7)
    one = interanimal(assembly, n_workers=1, **kwargs)
    again = interanimal(assembly, n_workers=1, **kwargs)
    two = interanimal(assembly, n_workers=2, scheduler="processes", **kwargs)
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


# ---------------------------------------------------------------- engine machinery against peers

def _half_means(assembly, trials, mask):
    return assembly.values[:, trials][:, :, mask].mean(1)


def _one_to_one(A_train, A_test, B_train):
    """Reference one-to-one: the source unit with the highest training r, raw response."""
    r = np.corrcoef(A_train.T, B_train.T)[:A_train.shape[1], A_train.shape[1]:]
    return A_test[:, np.nanargmax(r, axis=0)]


def test_one_split_half_reproduces_sklearn_fits_on_the_same_indices(simulate):
    """Rows of one (split, half) equal scikit-learn fits on that half's trials and split's stimuli."""
    from sklearn.linear_model import RidgeCV

    from pipeline.compare.mappings import RIDGE_CV_ALPHAS

    assembly, _ = simulate(n_animals=3, units_per_animal=8, n_trials=12, noise_sd=1.0, seed=13)
    scores = interanimal(assembly, mappings=("ridge", "ridge_cv", "pls", "one_to_one"), n_halves=3,
                         n_splits=2, n_components=6, seed=4, per_half=True)
    first, second = trial_halves(12, 3, seed=4)[2]
    train, test = stimulus_splits(118, 2, 0.5, seed=4)[1]
    target = assembly["animal"].values == "m02"
    A1, A2 = (_half_means(assembly, t, ~target) for t in (first, second))
    B1, B2 = (_half_means(assembly, t, target) for t in (first, second))
    Abar, Bbar = assembly.values[:, :, ~target].mean(1), assembly.values[:, :, target].mean(1)
    peers = {"ridge": lambda: Ridge(1.0), "pls": lambda: PLSRegression(6, scale=False),
             "ridge_cv": lambda: RidgeCV(alphas=RIDGE_CV_ALPHAS, alpha_per_target=True)}
    for name in ("ridge", "ridge_cv", "pls", "one_to_one"):
        if name == "one_to_one":
            p1, p2, pbar = (_one_to_one(A[train], A[test], B[train]) for A, B in ((A1, B1), (A2, B2), (Abar, Bbar)))
        else:
            p1, p2, pbar = (peers[name]().fit(A[train], B[train]).predict(A[test]).reshape(len(test), -1)
                            for A, B in ((A1, B1), (A2, B2), (Abar, Bbar)))
        rows = scores[(scores["mapping"] == name) & (scores["animal"] == "m02") & (scores["split"] == 1)
                      & (scores["half"] == 2)].set_index("neuroid_id").loc[assembly["neuroid_id"].values[target]]
        np.testing.assert_allclose(rows["r"], pearson(p1, B2[test], axis=0), atol=1e-5, err_msg=name)
        np.testing.assert_allclose(rows["r_mapping"], pearson(p1, p2, axis=0), atol=1e-5, err_msg=name)
        np.testing.assert_allclose(rows["r_target"], pearson(B1[test], B2[test], axis=0), atol=1e-5)
        np.testing.assert_allclose(rows["r_full"], pearson(pbar, Bbar[test], axis=0), atol=1e-5, err_msg=name)


def test_half_rows_nan_average_to_the_default_rows(simulate):
    assembly, _ = simulate(n_animals=3, units_per_animal=6, n_trials=8, seed=14)
    kwargs = dict(mappings=("ridge", "rsa"), n_halves=4, n_splits=2)
    halves = interanimal(assembly, per_half=True, **kwargs)
    mean = interanimal(assembly, **kwargs).set_index(["animal", "neuroid_id", "mapping", "split"])
    linear = [q for q in QUANTITIES if q != "score_brainscore"]        # r_full² / mean ceiling is not
    averaged = halves.groupby(["animal", "neuroid_id", "mapping", "split"])[linear].mean()
    pd.testing.assert_frame_equal(averaged, mean.loc[averaged.index, linear], rtol=1e-12)
    assert set(halves["half"]) == {0, 1, 2, 3}


def test_sb_terms_and_brainscore_columns_follow_their_definitions(simulate):
    assembly, _ = simulate(n_animals=3, units_per_animal=6, n_trials=6, noise_sd=2.0, seed=15)
    rows = interanimal(assembly, mappings=("ridge",), n_halves=5, n_splits=2, per_half=True)
    rm, rt = rows["r_mapping"], rows["r_target"]
    np.testing.assert_allclose(rows["r_mapping_sb"], np.where(rm > 0, spearman_brown(rm), np.nan))
    np.testing.assert_allclose(rows["r_target_sb"], np.where(rt > 0, spearman_brown(rt), np.nan))
    np.testing.assert_allclose(rows["ceiling_brainscore"], spearman_brown(rt))       # negatives kept
    mean = interanimal(assembly, mappings=("ridge",), n_halves=5, n_splits=2)
    np.testing.assert_allclose(mean["score_brainscore"], mean["r_full"] ** 2 / mean["ceiling_brainscore"])


def test_pairwise_rows_equal_a_pooled_source_of_one_animal(simulate):
    assembly, _ = simulate(n_animals=3, units_per_animal=7, n_trials=8, seed=16)
    kwargs = dict(mappings=("ridge", "pls", "rsa"), n_halves=2, n_splits=2, n_components=4)
    pairwise = interanimal(assembly, mode="pairwise", **kwargs)
    assert set(pairwise["mode"]) == {"pairwise"}
    assert len(pairwise) == 6 * (2 * 2 * 7 + 1)                 # ordered pairs x (2 maps x splits x units + rsa)
    two = assembly.isel(neuroid=assembly["animal"].values != "m02")
    pooled = interanimal(two, **kwargs)
    ours = pairwise[(pairwise["animal"] == "m01") & (pairwise["source"] == "m00")].reset_index(drop=True)
    theirs = pooled[pooled["animal"] == "m01"].reset_index(drop=True)
    cols = list(QUANTITIES)
    pd.testing.assert_frame_equal(ours[cols], theirs[cols], rtol=1e-9)


def test_equalised_sources_use_a_seeded_subsample_of_the_units(simulate, caplog):
    assembly, _ = simulate(n_animals=4, units_per_animal=9, n_trials=6, seed=17)
    kwargs = dict(mappings=("ridge",), n_halves=2, n_splits=2)
    one = interanimal(assembly, equalize_sources=10, **kwargs)
    assert set(one["n_source_units"]) == {10}
    pd.testing.assert_frame_equal(one, interanimal(assembly, equalize_sources=10, **kwargs))
    full = interanimal(assembly, **kwargs)
    assert set(full["n_source_units"]) == {27}
    assert not np.allclose(one["r"], full["r"])
    pairwise = interanimal(assembly, equalize_sources="min", mode="pairwise", **kwargs)
    assert set(pairwise["n_source_units"]) == {9}


def test_single_trial_data_give_raw_r_only(simulate, to_activations):
    assembly, rates = simulate(n_animals=2, units_per_animal=6, n_trials=5, seed=18)
    means = assembly.mean("trial").expand_dims(trial=1).transpose("stimulus", "trial", "neuroid")
    activations = to_activations(rates[:, :6] + 0.1, assembly["stimulus_id"].values)
    rows = predictivity(activations, means, mappings=("ridge", "rsa"), n_halves=3, n_splits=2)
    assert not rows["noise_corrected"].any()
    assert rows[[q for q in QUANTITIES if q != "r_full"]].isna().all().all()
    train, test = stimulus_splits(118, 2, 0.5, seed=0)[1]
    X, Y = rates[:, :6] + 0.1, means.values[:, 0]
    expected = pearson(Ridge(1.0).fit(X[train], Y[train]).predict(X[test]), Y[test], axis=0)
    got = rows[(rows["mapping"] == "ridge") & (rows["split"] == 1) & (rows["stage"] == "test")]
    np.testing.assert_allclose(got["r_full"], expected, atol=1e-5)
    off = interanimal(assembly, mappings=("ridge",), n_halves=3, n_splits=2, noise_correction=False)
    assert not off["noise_corrected"].any() and off["r"].isna().all() and off["r_full"].notna().all()


def test_population_mappings_of_a_model_copy_have_unit_mapping_terms(simulate, to_activations):
    from pipeline.compare.cka import cka_from_grams
    from pipeline.compare.rsa import rdm, rsa_noise_ceiling

    assembly, rates = simulate(n_animals=3, units_per_animal=12, n_trials=10, seed=19)
    activations = to_activations(rates, assembly["stimulus_id"].values)
    rows = predictivity(activations, assembly, mappings=("rsa", "cka", "cka_unbiased"), n_halves=3,
                        n_splits=2, rsa_compare="spearman")
    assert len(rows) == 3 * 3 and (rows["neuroid_id"] == "").all()
    np.testing.assert_allclose(rows["r_mapping"], 1.0, atol=1e-12)
    # r_full of CKA is the CKA of the features with the target's all-trial means.
    target = assembly["animal"].values == "m01"
    B = assembly.values[:, :, target].mean(1)
    row = rows[(rows["mapping"] == "cka_unbiased") & (rows["animal"] == "m01")].iloc[0]
    X = activations["layer1"].values[0].astype(np.float64)                # stored as float32
    assert row["r_full"] == pytest.approx(cka_from_grams(X @ X.T, B @ B.T, unbiased=True), abs=1e-10)
    # rsatoolbox-style ceiling terms of each animal, from the animals' all-trial RDMs.
    animals = ["m00", "m01", "m02"]
    rdms = np.stack([squareform(rdm(assembly.values[:, :, assembly["animal"].values == a].mean(1)),
                                checks=False) for a in animals])
    lower, upper = rsa_noise_ceiling(rdms, "spearman", per_subject=True)
    rsa = rows[rows["mapping"] == "rsa"].set_index("animal").loc[animals]
    np.testing.assert_allclose(rsa["nc_lower"], lower, atol=1e-10)
    np.testing.assert_allclose(rsa["nc_upper"], upper, atol=1e-10)
    assert rows.loc[rows["mapping"] != "rsa", "nc_lower"].isna().all()


def test_predictivity_scores_every_layer_on_validation_splits_too(simulate, to_activations):
    from pipeline.compare.splits import inner_splits

    assembly, rates = simulate(n_animals=2, units_per_animal=5, n_trials=6, seed=20)
    activations = to_activations(rates, assembly["stimulus_id"].values)
    rows = predictivity(activations, assembly, mappings=("ridge", "rsa"), n_halves=2, n_splits=3)
    counts = rows.groupby(["mapping", "stage"]).size()
    assert counts["ridge", "select"] == counts["ridge", "test"] == 3 * 10
    assert counts["rsa", "test"] == 2 and ("rsa", "select") not in counts.index
    # A validation row is the estimator on the inner split of that split's training stimuli.
    inner = inner_splits(stimulus_splits(118, 3, 0.5, 0), 0.5, 0)
    direct = predictivity(activations, assembly, mappings=("ridge",), n_halves=2, n_splits=3,
                          select_layers=False)
    assert set(direct["stage"]) == {"test"}
    from pipeline.compare.scoring import score_fitted
    from pipeline.compare.sources import layer_sources, population
    from pipeline.compare.mappings import RidgeMap

    target = assembly["animal"].values == "m00"
    pop = population(assembly.values[:, :, target], trial_halves(6, 2, 0), "m00")
    source = layer_sources(activations["layer1"], np.arange(118))[0]
    values = score_fitted({"ridge": RidgeMap(1.0)}, source, pop, inner)["ridge"]
    got = rows[(rows["stage"] == "select") & (rows["animal"] == "m00") & (rows["mapping"] == "ridge")]
    np.testing.assert_allclose(got["score"], values["score"].ravel(), rtol=1e-10)


def test_pls_of_a_narrow_model_source_through_its_features_equals_the_kernel_form(simulate, to_activations,
                                                                                  monkeypatch):
    import dataclasses

    from pipeline.compare import mappings
    from pipeline.compare.mappings import PLSMap, pls_predict_features
    from pipeline.compare.scoring import score_fitted
    from pipeline.compare.sources import layer_sources, population
    from pipeline.compare.splits import stimulus_splits

    assembly, rates = simulate(n_animals=2, units_per_animal=5, n_trials=6, seed=23)
    n = assembly.sizes["stimulus"]
    activations = to_activations(rates @ np.random.default_rng(1).standard_normal((10, 12)),
                                 assembly["stimulus_id"].values)
    source = layer_sources(activations["layer1"], np.arange(n))[0]
    assert source.narrow is not None
    target = population(assembly.values[:, :, assembly["animal"].values == "m00"], trial_halves(6, 3, 0), "m00")
    splits = stimulus_splits(n, 4, 0.75, 0)
    maps = {"pls": PLSMap(5)}
    calls = []
    monkeypatch.setattr(mappings, "pls_predict_features",
                        lambda *args, **kw: calls.append(1) or pls_predict_features(*args, **kw))
    through_features = score_fitted(maps, source, target, splits, keep_halves=True)["pls"]
    assert calls == [1]                            # every half and all-trial fit in one call
    through_kernel = score_fitted(maps, dataclasses.replace(source, narrow=None), target, splits,
                                  keep_halves=True)["pls"]
    for q in ("r", "r_mapping", "r_full", "score"):
        np.testing.assert_allclose(through_features[q], through_kernel[q], rtol=1e-10, atol=1e-12, err_msg=q)


def test_split_chunks_and_workers_do_not_change_the_rows(simulate, to_activations):
    # Equal to rounding, not bit for bit: the split kernels of a chunk are one BLAS product.
    assembly, rates = simulate(n_animals=2, units_per_animal=5, n_trials=6, seed=21)
    kwargs = dict(mappings=("ridge", "pls", "rsa"), n_halves=2, n_splits=3, n_components=3)
    whole = interanimal(assembly, **kwargs)
    pd.testing.assert_frame_equal(interanimal(assembly, splits_per_task=1, **kwargs)
                                  .sort_values(["animal", "mapping", "split", "neuroid_id"]).reset_index(drop=True),
                                  whole.sort_values(["animal", "mapping", "split", "neuroid_id"]).reset_index(drop=True))


def test_lazy_zarr_activations_read_in_worker_processes_give_the_in_memory_scores(simulate, to_activations,
                                                                                     tmp_path):
    from pipeline.io import read_zarr, write_zarr

    assembly, rates = simulate(n_animals=2, units_per_animal=5, n_trials=6, seed=22)
    activations = to_activations(rates @ np.random.default_rng(0).standard_normal((10, 40)),
                                 assembly["stimulus_id"].values, epochs=(0, 3))
    write_zarr(activations, tmp_path / "acts.zarr")
    kwargs = dict(mappings=("ridge", "one_to_one", "cka"), n_halves=2, n_splits=2)
    lazy = predictivity(read_zarr(tmp_path / "acts.zarr"), assembly, n_workers=2, scheduler="processes", **kwargs)
    pd.testing.assert_frame_equal(lazy, predictivity(activations, assembly, **kwargs), rtol=1e-6)
    assert set(lazy["epoch"]) == {0, 3}


def test_interanimal_curve_scores_random_stimulus_subsets(simulate):
    from pipeline.compare.curves import interanimal_curve

    assembly, _ = simulate(n_animals=3, units_per_animal=6, n_trials=6, seed=23)
    kwargs = dict(mappings=("ridge", "rsa"), n_halves=2, n_splits=2)
    curve = interanimal_curve(assembly, sizes=(20, 60, None), **kwargs)
    assert sorted(set(curve["n_stimuli"])) == [20, 60, 118]
    full = curve[curve["n_stimuli"] == 118].drop(columns="n_stimuli").reset_index(drop=True)
    pd.testing.assert_frame_equal(full, interanimal(assembly, **kwargs), rtol=1e-12)
    assert curve.loc[curve["mapping"] == "rsa", "nc_lower"].notna().all()


def test_bad_settings_are_rejected(simulate):
    assembly, _ = simulate(n_animals=2, units_per_animal=3, n_trials=4, seed=24)
    with pytest.raises(ValueError, match="mode must be one of"):
        interanimal(assembly, mode="holdout")
    with pytest.raises(ValueError, match="rsa_compare must be one of"):
        interanimal(assembly, rsa_compare="kendall")
    with pytest.raises(ValueError, match="equalize_sources"):
        interanimal(assembly, equalize_sources=0)


@pytest.mark.parametrize("epochs, expected", [("all", [0, 2, 5]), ("final", [5]), ("ends", [0, 5]),
                                              ([5, 2], [2, 5])])
def test_select_epochs_keeps_the_requested_checkpoints(to_activations, epochs, expected):
    from pipeline.compare.consistency import select_epochs

    store = to_activations(np.zeros((4, 3)), ["a", "b", "c", "d"], epochs=(0, 2, 5))
    assert select_epochs(store, epochs)["epoch"].values.tolist() == expected


def test_select_epochs_names_what_is_missing(to_activations):
    from pipeline.compare.consistency import select_epochs

    store = to_activations(np.zeros((4, 3)), ["a", "b", "c", "d"], epochs=(0, 2))
    with pytest.raises(ValueError, match=r"\[7\] are not in the activations \(stored: \[0, 2\]\)"):
        select_epochs(store, [2, 7])
    with pytest.raises(ValueError, match="'first'"):
        select_epochs(store, "first")
