"""Linear CKA against its defining formulas, written out plainly, and its invariances.

The engine calls `cka_from_grams` on the populations' uncentred kernels (``cka`` and
``cka_unbiased`` rows of `interanimal` and `predictivity`), so the tests do the same."""

import itertools

import numpy as np
import pytest

from pipeline.compare.cka import cka_from_grams
from pipeline.compare.consistency import interanimal


def _gram(X):
    """The uncentred linear kernel X Xᵀ over stimuli, as `pipeline.compare.sources` keeps it."""
    return X @ np.swapaxes(X, -1, -2)


def cka(X, Y, unbiased=False):
    """Linear CKA of two representations (..., stimulus, unit), from their uncentred kernels."""
    return cka_from_grams(_gram(X), _gram(Y), unbiased)


def _biased_cka_by_formula(X, Y):
    """tr(K H L H) / sqrt(tr(K H K H) tr(L H L H)), H = I - 11ᵀ/n (Kornblith et al. 2019, eq. 3)."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T
    return np.trace(K @ H @ L @ H) / np.sqrt(np.trace(K @ H @ K @ H) * np.trace(L @ H @ L @ H))


def _unbiased_hsic_as_u_statistic(K, L):
    """HSIC = E[k_ij l_ij] + E[k_ij l_qr] - 2 E[k_ij l_iq], each term averaged over distinct indices.

    This U-statistic is the estimator Song et al. (2012) write in closed form (their eq. 5).
    """
    n = len(K)
    first = np.mean([K[i, j] * L[i, j] for i, j in itertools.permutations(range(n), 2)])
    second = np.mean([K[i, j] * L[q, r] for i, j, q, r in itertools.permutations(range(n), 4)])
    third = np.mean([K[i, j] * L[i, q] for i, j, q in itertools.permutations(range(n), 3)])
    return first + second - 2 * third


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_biased_cka_equals_the_centred_gram_formula(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((25, 40)) + 1.0
    Y = X[:, :10] @ rng.standard_normal((10, 7)) + rng.standard_normal((25, 7))
    assert cka(X, Y) == pytest.approx(_biased_cka_by_formula(X, Y), abs=1e-12)


def test_biased_cka_equals_the_feature_space_formula():
    # ‖Y₀ᵀX₀‖²_F / (‖X₀ᵀX₀‖_F ‖Y₀ᵀY₀‖_F) with centred features (Kornblith et al. 2019, eq. 5).
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((50, 6)), rng.standard_normal((50, 4))
    X0, Y0 = X - X.mean(0), Y - Y.mean(0)
    expected = np.linalg.norm(Y0.T @ X0) ** 2 / (
        np.linalg.norm(X0.T @ X0) * np.linalg.norm(Y0.T @ Y0))
    assert cka(X, Y) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_unbiased_cka_equals_the_u_statistic(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((8, 5)) + 2.0
    Y = X[:, :2] @ rng.standard_normal((2, 3)) + 0.5 * rng.standard_normal((8, 3))
    K, L = X @ X.T, Y @ Y.T
    expected = _unbiased_hsic_as_u_statistic(K, L) / np.sqrt(
        _unbiased_hsic_as_u_statistic(K, K) * _unbiased_hsic_as_u_statistic(L, L))
    assert cka_from_grams(K, L, unbiased=True) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cka_is_invariant_to_rotation_scale_and_shift(seed, unbiased):
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((60, 20)), rng.standard_normal((60, 9))
    Q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    expected = cka(X, Y, unbiased)
    assert cka(3.0 * X @ Q + 7.0, Y, unbiased) == pytest.approx(expected, abs=1e-12)
    assert cka(Y, X, unbiased) == pytest.approx(expected, abs=1e-12)
    assert cka(X, 3.0 * X @ Q, unbiased) == pytest.approx(1.0, abs=1e-12)
    assert cka(X, X, unbiased) == pytest.approx(1.0, abs=1e-12)


def test_unbiased_cka_of_independent_representations_is_near_zero_where_biased_is_not():
    # The reason for the unbiased estimator: with few stimuli and many units the biased one is
    # far from 0 for independent representations (Nguyen et al. 2021).
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((200, 20, 500)), rng.standard_normal((200, 20, 500))
    assert np.mean(cka(X, Y, unbiased=True)) == pytest.approx(0.0, abs=0.01)
    assert np.mean(cka(X, Y)) > 0.5


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_is_batched_and_pooled_grams_equal_the_concatenation(unbiased):
    rng = np.random.default_rng(5)
    parts = rng.standard_normal((3, 30, 8))                   # three animals of one area
    Y = rng.standard_normal((4, 30, 6))                       # four model layers
    batched = cka_from_grams(_gram(parts).sum(0), _gram(Y), unbiased)
    pooled = np.concatenate(list(parts), axis=1)
    np.testing.assert_allclose(batched, [cka(pooled, y, unbiased) for y in Y], atol=1e-12)


def test_interanimal_cka_rows_are_the_cka_of_the_pooled_and_target_means(simulate):
    # The engine's pooled kernel is the area's kernel less the target's own; its CKA rows must
    # equal the defining formula on the concatenated means of the other animals.
    assembly, _ = simulate(n_animals=3, units_per_animal=10, n_stimuli=30, n_trials=6, seed=6)
    rows = interanimal(assembly, mappings=("cka",), n_halves=2, n_splits=1)
    means = assembly.values.mean(1)
    animal = assembly["animal"].values
    for target in ("m00", "m01", "m02"):
        row = rows[rows["animal"] == target].iloc[0]
        expected = _biased_cka_by_formula(means[:, animal != target], means[:, animal == target])
        assert row["r_full"] == pytest.approx(expected, abs=1e-10)


def test_cka_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 4 stimuli"):
        cka_from_grams(np.ones((3, 3)), np.ones((3, 3)), unbiased=True)
    with pytest.raises(ValueError, match="same stimuli"):
        cka_from_grams(np.eye(5), np.eye(4))
    with pytest.raises(ValueError, match="same stimuli"):
        cka_from_grams(np.ones((5, 4)), np.ones((5, 4)))
