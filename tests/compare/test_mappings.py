"""Mappings against scikit-learn and scipy peers, and RSA axioms."""

import logging

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr, spearmanr
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge

from pipeline.compare.mappings import (
    MAPPINGS,
    PLSMap,
    RidgeMap,
    center_kernel,
    compare_rdms,
    pls_predict_kernel,
    rdm,
    rdm_from_gram,
    ridge_predict_kernel,
)

SHAPES = [(59, 30, 12), (59, 2000, 40), (40, 500, 1), (59, 59, 7)]   # (n_train, n_features, n_targets)


def _problem(n_train, n_features, n_targets, seed, n_test=59):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train + n_test, n_features)) + 3.0
    W = rng.standard_normal((n_features, n_targets)) / np.sqrt(n_features)
    Y = X @ W + 0.5 * rng.standard_normal((n_train + n_test, n_targets)) + 1.0
    return X[:n_train], Y[:n_train], X[n_train:]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", [1.0, 100.0])
def test_ridge_map_matches_sklearn(shape, alpha):
    X, Y, X_test = _problem(*shape, seed=0)
    ours = RidgeMap(alpha=alpha).fit(X, Y)
    theirs = Ridge(alpha=alpha).fit(X, Y)
    np.testing.assert_allclose(ours.predict(X_test), theirs.predict(X_test).reshape(-1, shape[2]), atol=1e-5)
    np.testing.assert_allclose(ours.coef_, theirs.coef_.reshape(shape[2], -1), atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.filterwarnings("ignore:y residual is constant")   # one target runs out before 25
def test_pls_map_matches_sklearn(shape, seed):
    X, Y, X_test = _problem(*shape, seed=seed)
    n_components = min(25, shape[1])
    ours = PLSMap(n_components).fit(X, Y).predict(X_test)
    theirs = PLSRegression(n_components, scale=False).fit(X, Y).predict(X_test)
    np.testing.assert_allclose(ours, theirs.reshape(ours.shape), atol=1e-5)


def test_pls_components_are_clipped_and_logged(caplog):
    X, Y, X_test = _problem(10, 50, 4, seed=2)
    with caplog.at_level(logging.INFO, logger="pipeline.compare.mappings"):
        model = PLSMap(25).fit(X, Y)
    assert model.n_components_ == 9                      # n_train - 1
    assert "25 components requested, 9 used" in caplog.text
    X, Y, X_test = _problem(59, 5, 4, seed=2)
    model = PLSMap(25).fit(X, Y)
    assert model.n_components_ == 5                      # n_features
    theirs = PLSRegression(5, scale=False).fit(X, Y).predict(X_test)
    np.testing.assert_allclose(model.predict(X_test), theirs, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MAPPINGS))
def test_batched_kernel_predictions_equal_separate_fits(name):
    # Several split-halves (targets) and splits share nothing but their shapes: one call.
    rng = np.random.default_rng(4)
    X = rng.standard_normal((3, 80, 200))
    Y = X[..., :6] @ rng.standard_normal((6, 5)) + rng.standard_normal((3, 80, 5))
    train, test = np.arange(40), np.arange(40, 80)
    mapping = MAPPINGS[name]()
    K_train, K_test = center_kernel(X @ np.swapaxes(X, 1, 2), train, test)
    batched = mapping.predict_from_kernel(K_train, K_test, Y[:, train], X.shape[2])
    for b in range(3):
        separate = clone(mapping).fit(X[b, train], Y[b, train]).predict(X[b, test])
        np.testing.assert_allclose(batched[b], separate, atol=1e-8)


def test_kernel_cores_broadcast_a_shared_kernel():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 300))
    Y = rng.standard_normal((4, 50, 3))
    train, test = np.arange(25), np.arange(25, 50)
    K_train, K_test = center_kernel(X @ X.T, train, test)
    for predict in (lambda Kt, Kx, Yt: ridge_predict_kernel(Kt, Kx, Yt, 1.0),
                    lambda Kt, Kx, Yt: pls_predict_kernel(Kt, Kx, Yt, 5)):
        shared = predict(K_train, K_test, Y[:, train])
        tiled = predict(np.broadcast_to(K_train, (4,) + K_train.shape),
                        np.broadcast_to(K_test, (4,) + K_test.shape), Y[:, train])
        np.testing.assert_allclose(shared, tiled, atol=1e-10)


def test_ridge_map_rejects_a_non_positive_alpha():
    with pytest.raises(ValueError, match="'alpha' parameter of RidgeMap must be > 0"):
        RidgeMap(alpha=0.0).fit(np.ones((5, 2)), np.ones((5, 1)))


def test_maps_reject_mismatched_stimuli():
    with pytest.raises(ValueError, match="same number of stimuli"):
        PLSMap(2).fit(np.ones((5, 3)), np.ones((4, 1)))


def test_rdm_matches_scipy_correlation_distance():
    X = np.random.default_rng(6).standard_normal((30, 12))
    np.testing.assert_allclose(rdm(X), squareform(pdist(X, metric="correlation")), atol=1e-12)


def test_rdm_from_gram_of_a_pooled_population_equals_rdm_of_the_concatenation():
    rng = np.random.default_rng(7)
    parts = [rng.standard_normal((20, k)) for k in (5, 9, 3)]
    G = sum(P @ P.T for P in parts)
    s = sum(P.sum(1) for P in parts)
    np.testing.assert_allclose(rdm_from_gram(G, s, 17), rdm(np.concatenate(parts, axis=1)), atol=1e-12)


@pytest.mark.parametrize("method,peer", [("pearson", pearsonr), ("spearman", spearmanr)])
def test_compare_rdms_matches_scipy_on_upper_triangles(method, peer):
    rng = np.random.default_rng(8)
    a, b = rdm(rng.standard_normal((25, 10))), rdm(rng.standard_normal((25, 10)))
    iu = np.triu_indices(25, k=1)
    assert compare_rdms(a, b, method) == pytest.approx(peer(a[iu], b[iu])[0], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rsa_is_invariant_to_reordering_stimuli_and_units(seed):
    # Re-sorting conditions must leave the comparison unchanged (catches index mix-ups).
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((30, 8)), rng.standard_normal((30, 11))
    order, units = rng.permutation(30), rng.permutation(11)
    expected = compare_rdms(rdm(X), rdm(Y))
    assert compare_rdms(rdm(X[order]), rdm(Y[order][:, units])) == pytest.approx(expected, abs=1e-12)
    assert compare_rdms(rdm(X), rdm(X)) == pytest.approx(1.0, abs=1e-12)


def test_compare_rdms_rejects_unknown_methods():
    with pytest.raises(ValueError, match="'pearson' or 'spearman'"):
        compare_rdms(np.eye(3), np.eye(3), "kendall")


@pytest.mark.parametrize("n_direct", [1, 2, 16])
def test_pls_power_iteration_in_closed_form_equals_iterating(n_direct):
    """Fits finished from the eigendecomposition stop where plain iteration stops, with the same weights."""
    from pipeline.compare.mappings import _first_direction

    rng = np.random.default_rng(n_direct)
    X = rng.standard_normal((30, 40, 200))
    X -= X.mean(1, keepdims=True)
    K = X @ np.swapaxes(X, 1, 2)
    Y = X[..., :6] @ rng.standard_normal((6, 12)) + 3.0 * rng.standard_normal((30, 40, 12))
    start, alive = np.zeros(30, int), np.ones(30, bool)
    iterated, _ = _first_direction(K, Y, start, alive, 500, 1e-6, n_direct=500)
    closed, _ = _first_direction(K, Y, start, alive, 500, 1e-6, n_direct=n_direct)
    np.testing.assert_allclose(closed, iterated, atol=1e-8)
