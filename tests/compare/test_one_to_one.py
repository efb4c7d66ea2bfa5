"""One-to-one mapping against a brute-force loop over targets with np.corrcoef and np.polyfit."""

import numpy as np
import pytest

from pipeline.compare.one_to_one import OneToOneMap, choose_sources, one_to_one_predict


def _brute_force(X_train, X_test, Y_train):
    """Per target: corrcoef with every non-constant source unit, argmax, least-squares line."""
    predictions, chosen = [], []
    for y in Y_train.T:
        r = np.full(X_train.shape[1], -np.inf)
        for j, x in enumerate(X_train.T):
            if np.ptp(x) > 0:
                r[j] = np.corrcoef(x, y)[0, 1]
        j = int(np.argmax(r))
        slope, intercept = np.polyfit(X_train[:, j], y, 1)
        predictions.append(intercept + slope * X_test[:, j])
        chosen.append(j)
    return np.array(predictions).T, np.array(chosen)


def _problem(n_train=40, n_test=30, n_sources=300, n_targets=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train + n_test, n_sources)) * rng.uniform(0.5, 3.0, n_sources) + 2.0
    X[:, 7] = 4.0                                   # constant units are never chosen
    X[:, 100] = 0.1
    sources = rng.choice(np.arange(10, n_sources), n_targets)
    Y = 3.0 * X[:, sources] + rng.standard_normal((n_train + n_test, n_targets)) * 2.0 - 1.0
    return X[:n_train], X[n_train:], Y[:n_train], sources


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_to_one_matches_a_brute_force_loop(seed):
    X_train, X_test, Y_train, _ = _problem(seed=seed)
    predictions, index = one_to_one_predict(X_train, X_test, Y_train)
    expected_predictions, expected_index = _brute_force(X_train, X_test, Y_train)
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_allclose(predictions, expected_predictions, atol=1e-9)


def test_one_to_one_recovers_the_generating_unit():
    X_train, X_test, Y_train, sources = _problem(n_train=100, seed=3)
    np.testing.assert_array_equal(one_to_one_predict(X_train, X_test, Y_train)[1], sources)


def test_test_correlation_is_that_of_the_chosen_unit():
    # A positive rescaling keeps the chosen unit's own test correlation (spec §1.5, identity map).
    X_train, X_test, Y_train, _ = _problem(seed=4)
    Y_test = np.random.default_rng(0).standard_normal((len(X_test), Y_train.shape[1]))
    predictions, index = one_to_one_predict(X_train, X_test, Y_train)
    for t, j in enumerate(index):
        assert np.corrcoef(predictions[:, t], Y_test[:, t])[0, 1] == pytest.approx(
            np.corrcoef(X_test[:, j], Y_test[:, t])[0, 1], abs=1e-12)


def test_chunks_leave_the_result_unchanged_and_ties_go_to_the_lowest_index():
    X_train, X_test, Y_train, _ = _problem(seed=5)
    X_train = np.concatenate([X_train, X_train], axis=1)      # every unit has an exact twin
    X_test = np.concatenate([X_test, X_test], axis=1)
    whole = one_to_one_predict(X_train, X_test, Y_train, max_elements=10**9)
    for max_elements in (1, 40 * 7):                           # one unit per chunk; 7 units per chunk
        chunked = one_to_one_predict(X_train, X_test, Y_train, max_elements=max_elements)
        np.testing.assert_array_equal(chunked[1], whole[1])
        np.testing.assert_allclose(chunked[0], whole[0], atol=1e-12)
    assert (whole[1] < 300).all()                              # the first of each twin


def test_batched_fits_equal_separate_fits_and_broadcast_a_shared_source():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((2, 50, 80)).astype(np.float32)   # float32 activations, as stored
    Y = rng.standard_normal((3, 2, 50, 4))                    # (half, split) targets
    train, test = np.arange(30), np.arange(30, 50)
    predictions, index = one_to_one_predict(X[:, train], X[:, test], Y[:, :, train])
    assert predictions.shape == (3, 2, 20, 4) and index.shape == (3, 2, 4)
    shared, shared_index = one_to_one_predict(X[0, train], X[0, test], Y[:, 0, train])
    for h in range(3):
        for s in range(2):
            expected, expected_index = _brute_force(X[s, train].astype(float), X[s, test].astype(float),
                                                    Y[h, s, train])
            np.testing.assert_array_equal(index[h, s], expected_index)
            np.testing.assert_allclose(predictions[h, s], expected, atol=1e-9)
        np.testing.assert_array_equal(shared_index[h], index[h, 0])
        np.testing.assert_allclose(shared[h], predictions[h, 0], atol=1e-12)


def test_one_to_one_map_estimator_matches_the_function():
    X_train, X_test, Y_train, _ = _problem(seed=7)
    model = OneToOneMap().fit(X_train, Y_train)
    predictions, index = one_to_one_predict(X_train, X_test, Y_train)
    np.testing.assert_array_equal(model.source_index_, index)
    np.testing.assert_allclose(model.predict(X_test), predictions, atol=1e-12)
    np.testing.assert_allclose(model.train_r_, [np.corrcoef(X_train[:, j], y)[0, 1]
                                                for j, y in zip(index, Y_train.T)], atol=1e-12)


def test_constant_targets_and_dead_sources():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((20, 5))
    X[:, 0] = 1.0
    Y = np.column_stack([rng.standard_normal(20), np.full(20, 3.0)])
    index, r = choose_sources(X, Y)
    assert index[1] == 1 and np.isnan(r[1])                   # first non-constant source, r undefined
    predictions, _ = one_to_one_predict(X, X, Y)
    np.testing.assert_allclose(predictions[:, 1], 3.0)
    dead = np.ones((20, 4))
    predictions, index = one_to_one_predict(dead, dead, Y)
    assert (index == -1).all() and np.isnan(predictions).all()


def test_one_to_one_rejects_bad_input():
    with pytest.raises(ValueError, match="same training stimuli"):
        choose_sources(np.ones((5, 3)), np.ones((4, 1)))
    with pytest.raises(ValueError, match="NaN or inf"):
        one_to_one_predict(np.full((5, 3), np.nan), np.ones((2, 3)), np.ones((5, 1)))
    with pytest.raises(ValueError, match="same sources"):
        one_to_one_predict(np.ones((5, 3)), np.ones((2, 4)), np.ones((5, 1)))
