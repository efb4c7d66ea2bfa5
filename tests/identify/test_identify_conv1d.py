"""The Conv1D classifier: a scikit-learn estimator that reads (statistic, time) trajectories."""

import numpy as np
import pytest
from sklearn.base import clone

from pipeline.identify.conv1d import Conv1DClassifier

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def trajectories(n, n_statistics=3, n_times=8, seed=0):
    """Class 1 has a rising, class 0 a falling statistic 0; the rest is noise; one-hot of 3."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    series = rng.normal(0, 1, (n, n_statistics, n_times))
    series[:, 0, :] = np.where(y[:, None] == 1, 1, -1) * np.linspace(0, 2, n_times) + rng.normal(0, 0.1, (n, n_times))
    position = np.eye(3)[rng.integers(0, 3, n)]
    return np.hstack([series.reshape(n, -1), position]), np.array(["down", "up"])[y]


@pytest.mark.parametrize("pooling", ["none", "max", "avg"])
def test_learns_a_trend_direction(pooling):
    X, y = trajectories(120)
    X_test, y_test = trajectories(60, seed=1)
    model = Conv1DClassifier(n_statistics=3, n_times=8, filters=6, kernel_fraction=0.5, pooling=pooling,
                             lr=0.01, batch_size=32, epochs=40).fit(X, y)
    assert model.score(X_test, y_test) >= 0.95
    proba = model.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert list(model.classes_) == ["down", "up"]


def test_same_seed_same_model_and_clone_keeps_parameters():
    X, y = trajectories(40)
    a = Conv1DClassifier(n_statistics=3, n_times=8, epochs=5, random_state=3).fit(X, y)
    b = clone(a).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert clone(a).get_params() == a.get_params()


def test_bad_settings_and_shapes_are_refused():
    X, y = trajectories(10)
    with pytest.raises(ValueError, match="pooling must be one of"):
        Conv1DClassifier(n_statistics=3, n_times=8, pooling="median").fit(X, y)
    with pytest.raises(ValueError, match="fewer than"):
        Conv1DClassifier(n_statistics=5, n_times=8).fit(X, y)
