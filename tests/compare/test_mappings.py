"""Mappings against scikit-learn peers: ridge, ridge with leave-one-out alpha, PLS, and the registries."""

import logging

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge, RidgeCV

from pipeline.compare import one_to_one
from pipeline.compare.mappings import (
    FEATURE_MAPPINGS,
    MAPPINGS,
    RIDGE_CV_ALPHAS,
    PLSMap,
    RidgeCVMap,
    RidgeMap,
    center_kernel,
    pls_predict_features,
    pls_predict_kernel,
    ridge_cv_predict_kernel,
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


@pytest.mark.parametrize("name", sorted(FEATURE_MAPPINGS))
def test_batched_feature_predictions_equal_separate_fits(name):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((3, 80, 200))
    Y = X[..., :6] @ rng.standard_normal((6, 5)) + rng.standard_normal((3, 80, 5))
    train, test = np.arange(40), np.arange(40, 80)
    mapping = FEATURE_MAPPINGS[name]()
    batched = mapping.predict_from_features(X[:, train], X[:, test], Y[:, train])
    for b in range(3):
        separate = clone(mapping).fit(X[b, train], Y[b, train]).predict(X[b, test])
        np.testing.assert_allclose(batched[b], separate, atol=1e-8)


def test_registries_are_disjoint_and_expose_their_interface():
    # Like sklearn's test_common registry: a mapping added to one registry must have its method.
    assert not set(MAPPINGS) & set(FEATURE_MAPPINGS)
    assert {"ridge", "ridge_cv", "pls"} <= set(MAPPINGS) and "one_to_one" in FEATURE_MAPPINGS
    assert all(hasattr(cls, "predict_from_kernel") for cls in MAPPINGS.values())
    assert all(hasattr(cls, "predict_from_features") for cls in FEATURE_MAPPINGS.values())
    assert FEATURE_MAPPINGS["one_to_one"] is one_to_one.OneToOneMap


def test_kernel_cores_broadcast_a_shared_kernel():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 300))
    Y = rng.standard_normal((4, 50, 3))
    train, test = np.arange(25), np.arange(25, 50)
    K_train, K_test = center_kernel(X @ X.T, train, test)
    for predict in (lambda Kt, Kx, Yt: ridge_predict_kernel(Kt, Kx, Yt, 1.0),
                    lambda Kt, Kx, Yt: pls_predict_kernel(Kt, Kx, Yt, 5),
                    lambda Kt, Kx, Yt: ridge_cv_predict_kernel(Kt, Kx, Yt, RIDGE_CV_ALPHAS)[0]):
        shared = predict(K_train, K_test, Y[:, train])
        tiled = predict(np.broadcast_to(K_train, (4,) + K_train.shape),
                        np.broadcast_to(K_test, (4,) + K_test.shape), Y[:, train])
        np.testing.assert_allclose(shared, tiled, atol=1e-10)


ALPHAS = np.logspace(-3, 5, 17)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_ridge_cv_map_matches_sklearn_ridgecv(shape, seed):
    # Targets of different noise levels want different alphas: alpha_per_target matters.
    X, Y, X_test = _problem(*shape, seed=seed)
    Y = Y * np.linspace(0.2, 5.0, shape[2]) + np.random.default_rng(seed).standard_normal(Y.shape) * np.linspace(
        0.1, 3.0, shape[2])
    ours = RidgeCVMap(alphas=ALPHAS).fit(X, Y)
    theirs = RidgeCV(alphas=ALPHAS, alpha_per_target=True, fit_intercept=True).fit(X, Y)
    np.testing.assert_array_equal(ours.alpha_, np.atleast_1d(theirs.alpha_))
    np.testing.assert_allclose(ours.predict(X_test), theirs.predict(X_test).reshape(-1, shape[2]), atol=1e-5)
    np.testing.assert_allclose(ours.coef_, theirs.coef_.reshape(shape[2], -1), atol=1e-5)
    if shape[2] > 2:
        assert np.unique(ours.alpha_).size > 1           # the test exercises per-target choice


def test_ridge_cv_kernel_batch_matches_sklearn_per_fit():
    # Three fits (split-halves) with their own kernels and targets, features >> stimuli, one call.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3, 70, 1500)) + 2.0
    Y = X[..., :8] @ rng.standard_normal((8, 6)) + rng.standard_normal((3, 70, 6)) * np.linspace(0.1, 4.0, 6)
    train, test = np.arange(45), np.arange(45, 70)
    K_train, K_test = center_kernel(X @ np.swapaxes(X, 1, 2), train, test)
    predictions, alphas = ridge_cv_predict_kernel(K_train, K_test, Y[:, train], ALPHAS)
    assert predictions.shape == (3, 25, 6) and alphas.shape == (3, 6)
    for b in range(3):
        theirs = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X[b, train], Y[b, train])
        np.testing.assert_array_equal(alphas[b], theirs.alpha_)
        np.testing.assert_allclose(predictions[b], theirs.predict(X[b, test]), atol=1e-5)


def test_ridge_cv_with_one_alpha_is_ridge():
    X, Y, X_test = _problem(40, 300, 5, seed=6)
    ours = RidgeCVMap(alphas=[7.0]).fit(X, Y)
    np.testing.assert_allclose(ours.predict(X_test), RidgeMap(7.0).fit(X, Y).predict(X_test), atol=1e-8)
    np.testing.assert_array_equal(ours.alpha_, 7.0)


def test_ridge_cv_alpha_depends_on_training_stimuli_only():
    # The test stimuli's responses never reach the kernel core; their features change only
    # K_cross, so the chosen alphas stay put when the test features change.
    X, Y, X_test = _problem(40, 300, 5, seed=7)
    train, test = np.arange(40), np.arange(40, 40 + len(X_test))
    for X_other in (X_test, 10.0 * X_test[::-1]):
        Z = np.concatenate([X, X_other])
        K_train, K_test = center_kernel(Z @ Z.T, train, test)
        alphas = ridge_cv_predict_kernel(K_train, K_test, Y, ALPHAS)[1]
        np.testing.assert_array_equal(alphas, RidgeCVMap(ALPHAS).fit(X, Y).alpha_)


@pytest.mark.parametrize("alphas", [[], [1.0, 0.0], [np.inf], [[1.0, 2.0]]])
def test_ridge_cv_rejects_bad_alphas(alphas):
    with pytest.raises(ValueError, match="'alphas' parameter of RidgeCVMap must be a non-empty 1-D"):
        RidgeCVMap(alphas=alphas).fit(np.ones((5, 2)), np.ones((5, 1)))


def test_ridge_map_rejects_a_non_positive_alpha():
    with pytest.raises(ValueError, match="'alpha' parameter of RidgeMap must be > 0"):
        RidgeMap(alpha=0.0).fit(np.ones((5, 2)), np.ones((5, 1)))


def test_maps_reject_mismatched_stimuli():
    with pytest.raises(ValueError, match="same number of stimuli"):
        PLSMap(2).fit(np.ones((5, 3)), np.ones((4, 1)))


@pytest.mark.parametrize("max_iter", [2, 17, 500])
@pytest.mark.filterwarnings("ignore:Maximum number of iterations reached")
def test_batched_pls_stops_each_fit_where_sklearn_stops(max_iter):
    """30 fits in one call: their power iterations stop at different iterations (checked in
    blocks, the batch compacted as fits finish) or at max_iter, each with sklearn's weights."""
    rng = np.random.default_rng(max_iter)
    X = rng.standard_normal((30, 60, 200))
    Y = X[..., :6] @ rng.standard_normal((6, 12)) + 3.0 * rng.standard_normal((30, 60, 12))
    train, test = np.arange(40), np.arange(40, 60)
    K_train, K_cross = center_kernel(X @ np.swapaxes(X, 1, 2), train, test)
    ours = pls_predict_kernel(K_train, K_cross, Y[:, train], 5, max_iter=max_iter)
    for b in range(30):
        theirs = PLSRegression(5, scale=False, max_iter=max_iter).fit(X[b, train], Y[b, train])
        np.testing.assert_allclose(ours[b], theirs.predict(X[b, test]), atol=1e-6)


@pytest.mark.parametrize("max_iter", [2, 500])
@pytest.mark.filterwarnings("ignore:Maximum number of iterations reached", "ignore:y residual is constant")
def test_pls_through_shared_features_matches_sklearn_and_the_kernel_form(max_iter):
    """3 groups of 50 fits sharing their group's features (more than one chunk of fits); one
    fit's targets are constant, so sklearn stops it after its first component."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((3, 60, 20)) + 2.0
    Y = (X[:, None, :, :6] @ rng.standard_normal((6, 9)) + 3.0 * rng.standard_normal((3, 50, 60, 9)))
    Y[1, 7] = 4.0
    train, test = np.arange(45), np.arange(45, 60)
    ours = pls_predict_features(X[:, train], X[:, test], Y[:, :, train], 6, max_iter=max_iter)
    K_train, K_cross = center_kernel(X @ np.swapaxes(X, 1, 2), train, test)
    kernel = pls_predict_kernel(K_train[:, None], K_cross[:, None], Y[:, :, train], 6, max_iter=max_iter)
    np.testing.assert_allclose(ours, kernel, atol=1e-10)
    for g, f in [(0, 0), (1, 7), (2, 49)]:
        theirs = PLSRegression(6, scale=False, max_iter=max_iter).fit(X[g, train], Y[g, f, train])
        np.testing.assert_allclose(ours[g, f], theirs.predict(X[g, test]), atol=1e-6)
    assert np.allclose(ours[1, 7], 4.0)
