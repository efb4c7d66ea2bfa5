"""RSA against rsatoolbox and scipy peers, and axioms of RDMs and their comparisons."""

import warnings

import numpy as np
import pytest
from rsatoolbox.data import Dataset
from rsatoolbox.inference import boot_noise_ceiling
from rsatoolbox.rdm import RDMs, calc_rdm, compare
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr, rankdata, spearmanr

from pipeline.compare.rsa import compare_rdms, rdm, rdm_from_gram, rsa_noise_ceiling, upper_tri

# our method name -> rsatoolbox's
PEER_METHODS = {"pearson": "corr", "spearman": "spearman", "kendall_tau_a": "tau-a", "cosine": "cosine"}


@pytest.mark.parametrize("metric,scipy_metric", [("correlation", "correlation"), ("cosine", "cosine"),
                                                 ("euclidean", "euclidean")])
def test_rdm_matches_scipy_pdist(metric, scipy_metric):
    X = np.random.default_rng(6).standard_normal((30, 12)) + 5.0
    expected = pdist(X, metric=scipy_metric)
    np.testing.assert_allclose(rdm(X, metric, condensed=True), expected, atol=1e-10)
    np.testing.assert_allclose(rdm(X, metric), squareform(expected), atol=1e-10)


def test_spearman_rdm_is_the_correlation_rdm_of_ranked_patterns():
    X = np.random.default_rng(9).integers(0, 4, (20, 15)).astype(float)   # ties within patterns
    expected = pdist(rankdata(X, axis=1), metric="correlation")
    np.testing.assert_allclose(rdm(X, "spearman", condensed=True), expected, atol=1e-12)
    np.testing.assert_allclose(rdm(X, "spearman", condensed=True)[:5],
                               [1 - spearmanr(X[0], X[j])[0] for j in range(1, 6)], atol=1e-12)


def test_rdm_matches_rsatoolbox_correlation_rdm():
    X = np.random.default_rng(10).standard_normal((25, 40))
    theirs = calc_rdm(Dataset(X), method="correlation").get_vectors()[0]
    np.testing.assert_allclose(rdm(X, condensed=True), theirs, atol=1e-12)


def test_rdms_are_batched_over_populations():
    X = np.random.default_rng(11).standard_normal((3, 2, 15, 9))
    batched = rdm(X, "cosine", condensed=True)
    assert batched.shape == (3, 2, 105)
    np.testing.assert_allclose(batched[2, 1], pdist(X[2, 1], "cosine"), atol=1e-12)


def test_rdm_from_gram_of_a_pooled_population_equals_rdm_of_the_concatenation():
    rng = np.random.default_rng(7)
    parts = [rng.standard_normal((20, k)) for k in (5, 9, 3)]
    G = sum(P @ P.T for P in parts)
    s = sum(P.sum(1) for P in parts)
    pooled = np.concatenate(parts, axis=1)
    np.testing.assert_allclose(rdm_from_gram(G, s, 17), rdm(pooled), atol=1e-12)
    np.testing.assert_allclose(rdm_from_gram(G, s, 17, condensed=True), pdist(pooled, "correlation"), atol=1e-12)


def test_upper_tri_is_scipy_squareform_order():
    D = squareform(np.arange(1.0, 11.0))
    np.testing.assert_array_equal(upper_tri(D), np.arange(1.0, 11.0))
    with pytest.raises(ValueError, match="square RDMs"):
        upper_tri(np.ones((3, 4)))


@pytest.mark.parametrize("method", sorted(PEER_METHODS))
def test_compare_rdms_matches_rsatoolbox(method):
    rng = np.random.default_rng(12)
    a = rdm(rng.standard_normal((3, 30, 10)), condensed=True)
    b = rdm(rng.standard_normal((4, 30, 10)), condensed=True)
    theirs = compare(RDMs(a), RDMs(b), method=PEER_METHODS[method])             # (3, 4): all pairs
    ours = compare_rdms(a[:, None], b[None], method, condensed=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


@pytest.mark.parametrize("method,peer", [("pearson", pearsonr), ("spearman", spearmanr)])
def test_compare_rdms_matches_scipy_on_upper_triangles(method, peer):
    rng = np.random.default_rng(8)
    a, b = rdm(rng.standard_normal((25, 10))), rdm(rng.standard_normal((25, 10)))
    iu = np.triu_indices(25, k=1)
    assert compare_rdms(a, b, method) == pytest.approx(peer(a[iu], b[iu])[0], abs=1e-12)


def test_dot_is_the_inner_product_of_the_upper_triangles():
    rng = np.random.default_rng(13)
    a, b = rdm(rng.standard_normal((12, 4))), rdm(rng.standard_normal((12, 4)))
    iu = np.triu_indices(12, k=1)
    assert compare_rdms(a, b, "dot") == pytest.approx(a[iu] @ b[iu], rel=1e-12)


def _tau_a_by_definition(x, y):
    """Σ_{i<j} sign(x_i - x_j) sign(y_i - y_j) / (m(m-1)/2): ties count as neither."""
    iu = np.triu_indices(len(x), k=1)
    return (np.sign(np.subtract.outer(x, x))[iu] * np.sign(np.subtract.outer(y, y))[iu]).sum() / len(iu[0])


@pytest.mark.parametrize("m", [2, 3, 10, 33, 64, 65, 300])
def test_kendall_tau_a_counts_pairs_by_definition_with_ties(m):
    rng = np.random.default_rng(m)
    a = rng.integers(0, 5, (4, m)).astype(float)           # heavy ties in both
    b = rng.integers(0, 3, (4, m)).astype(float)
    b[0] = a[0]                                            # identical: 1 - ties / pairs, not 1
    b[1] = -a[1]
    ours = compare_rdms(a, b, "kendall_tau_a", condensed=True)
    np.testing.assert_allclose(ours, [_tau_a_by_definition(x, y) for x, y in zip(a, b)], atol=1e-14)


def test_kendall_tau_a_of_a_118_stimulus_rdm_matches_rsatoolbox():
    rng = np.random.default_rng(14)
    X = rng.standard_normal((2, 118, 30))
    a, b = rdm(X, condensed=True)                          # 6903 pairs, the Allen natural-scene size
    theirs = compare(RDMs(a[None]), RDMs(b[None]), method="tau-a")[0, 0]
    assert compare_rdms(a, b, "kendall_tau_a", condensed=True) == pytest.approx(theirs, abs=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall_tau_a", "cosine"])
def test_rsa_is_invariant_to_reordering_stimuli_and_units(seed, method):
    # Re-sorting conditions must leave the comparison unchanged (catches index mix-ups).
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((30, 8)), rng.standard_normal((30, 11))
    order, units = rng.permutation(30), rng.permutation(11)
    expected = compare_rdms(rdm(X), rdm(Y), method)
    assert compare_rdms(rdm(X[order]), rdm(Y[order][:, units]), method) == pytest.approx(expected, abs=1e-12)
    assert compare_rdms(rdm(X), rdm(X), method) == pytest.approx(1.0, abs=1e-12)


def test_compare_rdms_rejects_unknown_methods_and_mismatched_rdms():
    with pytest.raises(ValueError, match="method must be one of"):
        compare_rdms(np.eye(3), np.eye(3), "kendall")
    with pytest.raises(ValueError, match="same stimuli"):
        compare_rdms(np.ones(3), np.ones(6), condensed=True)


def _subject_rdms(n_subjects=6, n_stimuli=20, noise=1.0, seed=0):
    """Per-subject RDMs of one shared latent structure plus subject-specific noise."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n_stimuli, 5))
    patterns = Z @ rng.standard_normal((5, 15)) + noise * rng.standard_normal((n_subjects, n_stimuli, 15))
    return rdm(patterns, condensed=True)


@pytest.mark.parametrize("method", sorted(PEER_METHODS))
def test_noise_ceiling_matches_rsatoolbox_boot_noise_ceiling(method):
    rdms = _subject_rdms()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Noise ceiling for tau based on averaged ranks")
        lower, upper = boot_noise_ceiling(RDMs(rdms), method=PEER_METHODS[method])
    ours = rsa_noise_ceiling(rdms, method)
    np.testing.assert_allclose(ours, (lower, upper), atol=1e-12)
    assert lower < upper


def test_noise_ceiling_is_batched_and_per_subject_values_average_to_it():
    rdms = np.stack([_subject_rdms(seed=s) for s in range(3)])          # (area, subject, pair)
    lower, upper = rsa_noise_ceiling(rdms, "pearson")
    lower_s, upper_s = rsa_noise_ceiling(rdms, "pearson", per_subject=True)
    assert lower.shape == (3,) and lower_s.shape == (3, 6)
    np.testing.assert_allclose((lower_s.mean(-1), upper_s.mean(-1)), (lower, upper), atol=1e-15)
    np.testing.assert_allclose(rsa_noise_ceiling(rdms[1], "pearson"), (lower[1], upper[1]), atol=1e-15)
    # The lower bound by definition: each subject against the plain mean of the others' z-scores.
    z = (rdms[0] - rdms[0].mean(-1, keepdims=True)) / rdms[0].std(-1, keepdims=True)
    others = (z.sum(0) - z[2]) / 5
    assert lower_s[0, 2] == pytest.approx(pearsonr(others, rdms[0, 2])[0], abs=1e-12)


def test_noise_ceiling_of_noiseless_subjects_is_one_and_falls_with_noise():
    lower, upper = rsa_noise_ceiling(_subject_rdms(noise=0.0), "pearson")
    assert (lower, upper) == (pytest.approx(1.0, abs=1e-12), pytest.approx(1.0, abs=1e-12))
    ceilings = [rsa_noise_ceiling(_subject_rdms(noise=noise), "pearson")[0] for noise in (0.5, 1.0, 2.0)]
    assert ceilings[0] > ceilings[1] > ceilings[2]


def test_noise_ceiling_needs_two_subjects_and_a_known_method():
    with pytest.raises(ValueError, match="at least 2 subjects"):
        rsa_noise_ceiling(np.ones((1, 10)))
    with pytest.raises(ValueError, match="method must be one of"):
        rsa_noise_ceiling(np.ones((3, 10)), "corr")
